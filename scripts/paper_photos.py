"""Digits written on paper and photographed with a phone, for the robustness set (scripts/robustness_set.py).

A picture is a scene: a sheet of plain, ruled or squared paper, or a printed form with a row
of boxes, with a digit written on it in pen; turned a little on the table; lit evenly,
unevenly (a gradient, a vignette, a colour cast) or with a shadow across part of it, or
with something at the frame's edge (a finger, a pen, the table beyond the paper's edge);
then the camera's blur and noise, saved as JPEG as phones do. The digit is never covered:
every picture is meant to be read by a person at a glance.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Stroke = list[tuple[float, float]]

KINDS = ("plain", "ruled", "squared", "form")
CONDITIONS = ("even light", "uneven light", "shadow", "object at the edge")
PEN_INKS = ((0.08, 0.08, 0.1), (0.1, 0.14, 0.45), (0.2, 0.2, 0.22))  # black, blue, pencil-grey
PRINT_INKS = {
    "ruled": ((0.55, 0.7, 0.9), (0.6, 0.6, 0.65)),  # light blue or grey rules
    "squared": ((0.6, 0.75, 0.9), (0.65, 0.65, 0.68), (0.5, 0.75, 0.6)),
    "form": ((0.15, 0.15, 0.15), (0.45, 0.45, 0.5), (0.3, 0.4, 0.75), (0.85, 0.4, 0.35)),  # incl. dropout red
}


def _write(
    draw: ImageDraw.ImageDraw,
    strokes: list[Stroke],
    box: tuple[float, float, float, float],
    width: int,
    rng: np.random.Generator,
) -> None:
    """The strokes (a unit box, x right, y down) as a pen writes them into box (left, top, w, h), slanted a little."""
    left, top, w, h = box
    slant = rng.uniform(-0.25, 0.2)
    for stroke in strokes:
        points = np.array(stroke, dtype=float)
        points += np.cumsum(rng.normal(0, 0.004, points.shape), axis=0)  # the hand's drift
        xy = [(left + w * (x - slant * (y - 0.5)), top + h * y) for x, y in points]
        draw.line(xy, fill=255, width=width, joint="curve")
        for px, py in (xy[0], xy[-1]):
            draw.ellipse((px - width / 2, py - width / 2, px + width / 2, py + width / 2), fill=255)


def _print_lines(
    draw: ImageDraw.ImageDraw, kind: str, size: int, digit: tuple[float, float, float, float], rng: np.random.Generator
) -> None:
    """Ruled lines, a grid, or a row of form boxes around the digit's box, in mask value 255."""
    left, top, w, h = digit
    width = max(1, round(size / rng.uniform(250, 500)))
    if kind == "ruled":
        spacing = h * rng.uniform(0.75, 1.15)
        base = top + h * rng.uniform(0.9, 1.05)  # the digit sits on a line, its top near or across the next
        for y in np.arange(base - spacing * 20, size, spacing):
            draw.line([(0, y), (size, y)], fill=255, width=width)
        if rng.random() < 0.4:  # a margin line
            x = left - rng.uniform(0.3, 1.5) * w
            draw.line([(x, 0), (x, size)], fill=255, width=width)
    elif kind == "squared":
        cell = h / rng.uniform(1.6, 3.0)
        x0, y0 = rng.uniform(0, cell, 2)
        for v in np.arange(-cell, size + cell, cell):
            draw.line([(v + x0, 0), (v + x0, size)], fill=255, width=width)
            draw.line([(0, v + y0), (size, v + y0)], fill=255, width=width)
    elif kind == "form":
        bw, bh = w * rng.uniform(1.15, 1.6), h * rng.uniform(1.05, 1.35)
        bx = left + w / 2 - bw / 2 + rng.uniform(-0.12, 0.12) * bw  # the digit touches or crosses a side at times
        by = top + h / 2 - bh / 2 + rng.uniform(-0.08, 0.08) * bh
        thick = max(width, round(size / rng.uniform(150, 400)))
        count = 1 if rng.random() < 0.4 else 7  # one box, or a row of them (a postcode, a date)
        first = -int(rng.integers(0, count))
        for i in range(first, first + count):
            draw.rectangle((bx + i * bw, by, bx + (i + 1) * bw, by + bh), outline=255, width=thick)


def _object_at_edge(
    size: int, digit: tuple[float, float, float, float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A mask (0-1) of a finger, a pen or the table beyond the paper's edge, at the frame's edge
    away from the digit, and its colour."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    left, top, w, h = digit
    # the frame's side farthest from the digit
    gaps = {"left": left, "right": size - left - w, "top": top, "bottom": size - top - h}
    side = max(gaps, key=lambda k: gaps[k] * rng.uniform(0.7, 1.0))
    thing = rng.choice(["finger", "pen", "table"])
    depth = gaps[side] * rng.uniform(0.5, 0.9)  # how far it reaches in: never onto the digit
    along = rng.uniform(0.2, 0.8) * size
    if thing == "table":
        colour = rng.choice([(0.35, 0.22, 0.12), (0.2, 0.2, 0.22), (0.55, 0.45, 0.35), (0.05, 0.05, 0.06)])
        tilt = rng.uniform(-0.06, 0.06) * size
        poly = {
            "left": [(0, 0), (depth + tilt, 0), (depth - tilt, size), (0, size)],
            "right": [(size, 0), (size - depth - tilt, 0), (size - depth + tilt, size), (size, size)],
            "top": [(0, 0), (0, depth + tilt), (size, depth - tilt), (size, 0)],
            "bottom": [(0, size), (0, size - depth - tilt), (size, size - depth + tilt), (size, size)],
        }[side]
        draw.polygon(poly, fill=255)
    else:
        radius = size * (rng.uniform(0.07, 0.14) if thing == "finger" else rng.uniform(0.012, 0.025))
        colour = (
            (np.array([0.85, 0.62, 0.5]) * rng.uniform(0.7, 1.05))
            if thing == "finger"
            else rng.choice([(0.1, 0.1, 0.45), (0.05, 0.05, 0.05), (0.8, 0.15, 0.1)])
        )
        tip = {
            "left": (depth, along),
            "right": (size - depth, along),
            "top": (along, depth),
            "bottom": (along, size - depth),
        }[side]
        base = {
            "left": (-size, along + rng.uniform(-0.3, 0.3) * size),
            "right": (2 * size, along),
            "top": (along + rng.uniform(-0.3, 0.3) * size, -size),
            "bottom": (along, 2 * size),
        }[side]
        draw.line([base, tip], fill=255, width=int(2 * radius))
        draw.ellipse((tip[0] - radius, tip[1] - radius, tip[0] + radius, tip[1] + radius), fill=255)
    blurred = mask.filter(ImageFilter.GaussianBlur(size / 400))
    return np.asarray(blurred, np.float32) / 255, np.asarray(colour, np.float32)


def _light(condition: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """The light falling on the scene, per pixel and channel (about 1 where even)."""
    yy, xx = (np.mgrid[0:size, 0:size] / size).astype(np.float32)
    light = np.full((size, size, 1), rng.uniform(0.85, 1.05), np.float32)
    if condition in ("uneven light", "shadow", "object at the edge"):
        angle = rng.uniform(0, 2 * math.pi)
        ramp = (xx - 0.5) * math.cos(angle) + (yy - 0.5) * math.sin(angle)
        strength = rng.uniform(0.3, 0.9) if condition == "uneven light" else rng.uniform(0.0, 0.4)
        light = light * (1 + strength * ramp)[..., None]
    if condition == "uneven light":
        vignette = 1 - rng.uniform(0.2, 0.45) * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 2
        cast = rng.choice([(1.0, 0.93, 0.75), (0.85, 0.92, 1.0), (1.0, 1.0, 1.0), (1.0, 0.85, 0.8)])
        light = light * vignette[..., None] * np.asarray(cast, np.float32)
    if condition == "shadow":  # a hand's or the phone's shadow: a soft-edged region from one side
        mask = Image.new("L", (size, size), 0)
        y1, y2 = rng.uniform(0.25, 0.75, 2) * size  # the shadow's edge crosses the frame
        ImageDraw.Draw(mask).polygon(
            [(0, 0), (size, 0), (size, y2), (size / 2, (y1 + y2) / 2 + rng.uniform(-0.1, 0.1) * size), (0, y1)],
            fill=255,
        )
        mask = mask.rotate(90 * int(rng.integers(4))).filter(ImageFilter.GaussianBlur(size * rng.uniform(0.002, 0.03)))
        depth = rng.uniform(0.35, 0.65)
        light = light * (1 - depth * np.asarray(mask, np.float32)[..., None] / 255)
    return light


def photographed(strokes: list[Stroke], kind: str, condition: str, rng: np.random.Generator) -> Image.Image:
    """A phone photo (RGB) of strokes written on paper of `kind`, taken in `condition`."""
    size = 800  # the scene is drawn square, then cropped to the camera's frame
    h = size * rng.uniform(0.28, 0.5)
    w = h * rng.uniform(0.6, 0.85)
    left = size / 2 - w / 2 + rng.uniform(-0.1, 0.1) * size
    top = size / 2 - h / 2 + rng.uniform(-0.1, 0.1) * size
    digit = (left, top, w, h)
    pen = max(2, round(h * rng.uniform(0.035, 0.11)))
    writing = Image.new("L", (size, size), 0)
    _write(ImageDraw.Draw(writing), strokes, digit, pen, rng)
    printed = Image.new("L", (size, size), 0)
    if kind != "plain":
        _print_lines(ImageDraw.Draw(printed), kind, size, digit, rng)
    angle = rng.uniform(-7, 7)  # the paper turned on the table
    writing = writing.rotate(angle, resample=Image.Resampling.BICUBIC, center=(size / 2, size / 2))
    printed = printed.rotate(angle, resample=Image.Resampling.BICUBIC, center=(size / 2, size / 2))

    paper = np.asarray(rng.uniform(0.86, 0.97) * rng.uniform(0.94, 1.0, 3), np.float32)
    scene = np.broadcast_to(paper, (size, size, 3)).copy()
    scene *= (1 + rng.normal(0, 0.012, (size, size, 1))).astype(np.float32)  # the paper's grain
    if kind != "plain":
        ink = np.asarray(PRINT_INKS[kind][rng.integers(len(PRINT_INKS[kind]))], np.float32)
        alpha = np.asarray(printed, np.float32)[..., None] / 255
        scene = scene * (1 - alpha) + scene * ink * alpha
    pen_ink = np.asarray(PEN_INKS[rng.integers(len(PEN_INKS))], np.float32)
    alpha = np.asarray(writing, np.float32)[..., None] / 255 * rng.uniform(0.85, 1.0)
    scene = scene * (1 - alpha) + pen_ink * alpha
    if condition == "object at the edge":
        mask, colour = _object_at_edge(size, digit, rng)
        scene = scene * (1 - mask[..., None]) + colour * mask[..., None]
    scene *= _light(condition, size, rng)

    # The camera: a frame around the digit, a little out of focus, sensor noise.
    aspect = rng.choice([1.0, 4 / 3, 3 / 4])
    frame_h = min(size, h * rng.uniform(1.6, 2.2) / max(1.0, aspect))
    frame_w = min(size, frame_h * aspect)
    cx = np.clip(left + w / 2 + rng.uniform(-0.12, 0.12) * frame_w, frame_w / 2, size - frame_w / 2)
    cy = np.clip(top + h / 2 + rng.uniform(-0.12, 0.12) * frame_h, frame_h / 2, size - frame_h / 2)
    box = (int(cx - frame_w / 2), int(cy - frame_h / 2), int(cx + frame_w / 2), int(cy + frame_h / 2))
    picture = Image.fromarray((np.clip(scene, 0, 1) * 255).astype(np.uint8), "RGB").crop(box)
    picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    noisy = np.asarray(picture, np.float32) + rng.normal(0, rng.uniform(1.5, 5), (picture.height, picture.width, 1))
    picture = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.04:  # now and then the full 12 MP of a phone's camera
        return picture.resize(
            (4032, 3024) if picture.width >= picture.height else (3024, 4032), Image.Resampling.BICUBIC
        )
    scale = rng.uniform(0.7, 1.6)
    return picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.Resampling.BICUBIC)
