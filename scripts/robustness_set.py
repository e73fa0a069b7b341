"""Digit pictures that do not come from MNIST, with labels: a robustness set for `predict`.

    python scripts/robustness_set.py --output robustness [--per_digit 40] [--seed 0]

Up to seven sources, each a folder of pictures, and one labels.csv (path, label, source, style,
condition):

- fonts: digits typed in handwriting-style fonts from Debian's font packages (see
  FONT_PACKAGES; `apt-get install` them first), at random sizes, angles, stroke weights
  and ink colours, on slightly uneven paper, saved as PNG or JPEG.
- canvas: digits drawn like a mouse on a web canvas, black on a transparent background:
  strokes of each digit in several common ways of writing it (open and closed 4s,
  crossed 7s, flagged 1s, ...), with slant, aspect, wobble and pen width drawn at random.
- scans: other people's handwriting, scanned: UCI's optical digits (43 writers, 8x8
  pixels in 17 grey levels), which scikit-learn ships; printed dark on light and
  enlarged as a coarse scan would be. Skipped, saying so, without scikit-learn.
- photos, ruled, squared, forms: the canvas strokes written in pen on plain, ruled or squared
  paper or into a printed form's boxes, and photographed with a phone (scripts/paper_photos.py):
  the paper turned a little, in even light, uneven light, a shadow, or with a finger, a pen or
  the table at the frame's edge (the `condition` column, a quarter each); JPEG as phones save.

Nothing here reads MNIST; evaluate checkpoints on the set with scripts/robustness.py.
"""

from __future__ import annotations

import argparse
import csv
import math
import subprocess
from pathlib import Path

import numpy as np
from paper_photos import CONDITIONS, photographed
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_PACKAGES = (
    "fonts-dkg-handwriting fonts-breip fonts-bwht fonts-dancingscript fonts-humor-sans fonts-kaushanscript "
    "fonts-klee fonts-kristi fonts-comic-neue"
)
# Families whose digits look handwritten (fc-list's family names); not femkeklaver, whose digits are hollow outlines.
FONT_FAMILIES = (
    "dkg",
    "Breip",
    "BecauseWe",
    "Dancing Script",
    "Humor Sans",
    "Kaushan Script",
    "Klee One",
    "Kristi",
    "Comic Neue",
)

Stroke = list[tuple[float, float]]


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 24) -> Stroke:
    """Points on an ellipse from angle `start` to `end` (degrees; 0 is right, 90 is down)."""
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a))) for a in np.linspace(start, end, n)
    ]


# Each digit in a few common hands, as pen strokes in a unit box (x right, y down).
# fmt: off
DIGITS: dict[int, dict[str, list[Stroke]]] = {
    0: {"oval": [arc(0.5, 0.5, 0.32, 0.45, -100, 265)], "slanted oval": [arc(0.5, 0.5, 0.28, 0.46, -80, 290)]},
    1: {"stick": [[(0.52, 0.05), (0.5, 0.95)]],
        "flagged": [[(0.3, 0.25), (0.55, 0.05), (0.52, 0.95)]],
        "flagged with base": [[(0.3, 0.22), (0.55, 0.05), (0.53, 0.95)], [(0.3, 0.95), (0.75, 0.95)]]},
    2: {"round": [arc(0.5, 0.3, 0.3, 0.25, 190, 380) + [(0.2, 0.95), (0.85, 0.95)]],
        "narrow": [arc(0.5, 0.28, 0.2, 0.23, 190, 385) + [(0.3, 0.95), (0.72, 0.93)]],
        "looped": [arc(0.5, 0.3, 0.3, 0.25, 190, 375) + [(0.25, 0.9)] + arc(0.3, 0.85, 0.08, 0.08, 270, 630)
                   + [(0.85, 0.92)]]},
    3: {"round": [arc(0.48, 0.28, 0.3, 0.23, 200, 450), arc(0.48, 0.72, 0.32, 0.24, 270, 520)],
        "flat top": [[(0.2, 0.05), (0.8, 0.05), (0.45, 0.42)] + arc(0.47, 0.7, 0.33, 0.26, 280, 520)]},
    4: {"open top": [[(0.25, 0.05), (0.15, 0.62), (0.88, 0.62)], [(0.68, 0.08), (0.66, 0.97)]],
        "closed": [[(0.68, 0.95), (0.68, 0.05), (0.12, 0.65), (0.9, 0.65)]]},
    5: {"classic": [[(0.8, 0.05), (0.3, 0.05), (0.25, 0.45)] + arc(0.5, 0.68, 0.32, 0.27, 240, 500)],
        "one stroke": [[(0.3, 0.05), (0.25, 0.45)] + arc(0.5, 0.68, 0.32, 0.27, 240, 500), [(0.3, 0.06), (0.82, 0.04)]]},
    6: {"loop": [[(0.7, 0.05)] + arc(0.5, 0.68, 0.3, 0.27, 200, 540)],
        "curved": [arc(0.75, 0.45, 0.5, 0.42, 250, 180) + arc(0.5, 0.7, 0.28, 0.25, 180, 540)]},
    7: {"plain": [[(0.15, 0.08), (0.85, 0.08), (0.42, 0.95)]],
        "crossed": [[(0.15, 0.08), (0.85, 0.08), (0.42, 0.95)], [(0.35, 0.52), (0.8, 0.5)]],
        "hooked": [[(0.15, 0.2), (0.2, 0.08), (0.85, 0.08), (0.42, 0.95)]]},
    8: {"two loops": [arc(0.5, 0.27, 0.24, 0.22, 90, 450), arc(0.5, 0.72, 0.3, 0.24, -90, 270)],
        "figure": [[(0.5 + 0.29 * math.sin(2 * t), 0.5 - 0.45 * math.cos(t)) for t in np.linspace(0, 2 * math.pi, 60)]]},
    9: {"straight tail": [arc(0.5, 0.3, 0.28, 0.25, 0, 370), [(0.78, 0.3), (0.72, 0.97)]],
        "curved tail": [arc(0.5, 0.3, 0.28, 0.25, 0, 370) + arc(0.35, 0.3, 0.43, 0.65, 0, 95)]},
}
# fmt: on


def handwriting_fonts() -> list[Path]:
    listing = subprocess.run(
        ["fc-list", "--format", "%{file}|%{family}\n"], capture_output=True, text=True, check=False
    ).stdout
    fonts = sorted(
        {
            Path(f)
            for f, _, family in (line.partition("|") for line in listing.splitlines())
            if any(name.lower() in family.lower() for name in FONT_FAMILIES)
        }
    )
    if not fonts:
        raise SystemExit(f"robustness_set: no handwriting fonts found; apt-get install {FONT_PACKAGES}")
    return fonts


def paper(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Off-white paper with a gentle shading gradient and grain."""
    w, h = size
    base = rng.uniform(200, 250)
    gradient = np.linspace(0, rng.uniform(-25, 25), w)[None, :] + np.linspace(0, rng.uniform(-25, 25), h)[:, None]
    values = base + gradient + rng.normal(0, rng.uniform(1, 6), (h, w))
    tint = rng.uniform(0.92, 1.0, 3)
    rgb = np.clip(values[..., None] * tint, 0, 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def typed_digit(rng: np.random.Generator, digit: int, font_path: Path) -> Image.Image:
    size = int(rng.integers(40, 160))
    font = ImageFont.truetype(str(font_path), size)
    weight = int(rng.integers(0, max(1, size // 20) + 1))
    ink = tuple(int(v) for v in rng.uniform(0, 90, 3)) if rng.random() < 0.6 else (20, 30, int(rng.uniform(90, 160)))
    glyph = Image.new("LA", (size * 3, size * 3), (0, 0))
    ImageDraw.Draw(glyph).text(
        (size, size // 2), str(digit), font=font, fill=(255, 255), stroke_width=weight, stroke_fill=(255, 255)
    )
    glyph = glyph.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BICUBIC, expand=True)
    box = glyph.getbbox()
    if box is None:
        raise ValueError(f"{font_path.name} drew no {digit}")
    glyph = glyph.crop(box)
    margin = rng.uniform(0.2, 0.8, 4) * max(glyph.size)
    w, h = int(glyph.width + margin[0] + margin[1]), int(glyph.height + margin[2] + margin[3])
    sheet = paper(rng, (w, h))
    sheet.paste(Image.new("RGB", glyph.size, ink), (int(margin[0]), int(margin[2])), glyph.getchannel("A"))
    return sheet.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))


def drawn_digit(rng: np.random.Generator, strokes: list[Stroke]) -> Image.Image:
    """Strokes as a mouse draws them on a 280x280 canvas: slanted, squeezed, wobbly, black on transparent."""
    slant, angle = rng.uniform(-0.35, 0.25), math.radians(rng.uniform(-12, 12))
    sx, sy = rng.uniform(0.55, 1.1), rng.uniform(0.8, 1.05)
    cos, sin = math.cos(angle), math.sin(angle)
    width = int(rng.integers(7, 26))
    canvas = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    offset = rng.uniform(-30, 30, 2)
    for stroke in strokes:
        points = np.array(stroke, dtype=float) - 0.5
        points += np.cumsum(rng.normal(0, 0.006, points.shape), axis=0)  # the hand's drift along the stroke
        x, y = points[:, 0] * sx + slant * -points[:, 1], points[:, 1] * sy
        x, y = x * cos - y * sin, x * sin + y * cos
        xy = [(140 + offset[0] + 190 * a, 140 + offset[1] + 190 * b) for a, b in zip(x, y)]
        draw.line(xy, fill=(0, 0, 0, 255), width=width, joint="curve")
        for px, py in (xy[0], xy[-1]):  # round pen ends
            draw.ellipse((px - width / 2, py - width / 2, px + width / 2, py + width / 2), fill=(0, 0, 0, 255))
    return canvas


def scanned_digits(rng: np.random.Generator, per_digit: int) -> dict[int, list[Image.Image]]:
    """per_digit of UCI's optical digits for each digit, dark on light paper, enlarged 4x; {} without scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        print("robustness_set: no scikit-learn, so no scans (pip install scikit-learn adds them)")
        return {}
    bunch = load_digits()
    scans: dict[int, list[Image.Image]] = {}
    for digit in range(10):
        chosen = rng.choice(np.flatnonzero(bunch.target == digit), per_digit, replace=False)
        for index in chosen:
            ink = bunch.images[index] / 16.0
            gray = Image.fromarray((255 - ink * rng.uniform(170, 235)).astype(np.uint8), "L")
            scans.setdefault(digit, []).append(gray.resize((32, 32), Image.Resampling.BICUBIC))
    return scans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("robustness"))
    parser.add_argument("--per_digit", type=int, default=40, help="pictures of each digit from each source")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    fonts = handwriting_fonts()
    scans = scanned_digits(np.random.default_rng([args.seed, 1]), args.per_digit)  # the other sources alike without it
    rows = []
    photographs = {"photos": "plain", "ruled": "ruled", "squared": "squared", "forms": "form"}
    for source in [*(("fonts", "canvas", "scans") if scans else ("fonts", "canvas")), *photographs]:
        (args.output / source).mkdir(parents=True, exist_ok=True)
        for digit in range(10):
            for i in range(args.per_digit):
                condition = ""
                if source in photographs:
                    style, condition = list(DIGITS[digit])[i % len(DIGITS[digit])], CONDITIONS[i % len(CONDITIONS)]
                    picture = photographed(DIGITS[digit][style], photographs[source], condition, rng)
                    suffix = ".jpg"
                elif source == "scans":
                    picture, style, suffix = scans[digit][i], "uci", ".png"
                elif source == "fonts":
                    font = fonts[(digit + i) % len(fonts)]
                    picture, style = typed_digit(rng, digit, font), font.stem
                    suffix = ".jpg" if rng.random() < 0.5 else ".png"
                else:
                    style = list(DIGITS[digit])[i % len(DIGITS[digit])]
                    picture, suffix = drawn_digit(rng, DIGITS[digit][style]), ".png"
                path = args.output / source / f"{digit}_{i:03d}{suffix}"
                if suffix == ".jpg":  # phones save at 80-95
                    picture.save(
                        path, quality=int(rng.integers(80, 96) if source in photographs else rng.integers(60, 95))
                    )
                else:
                    picture.save(path)
                rows.append(
                    {
                        "path": str(path.relative_to(args.output)),
                        "label": digit,
                        "source": source,
                        "style": style,
                        "condition": condition,
                    }
                )
    with (args.output / "labels.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "source", "style", "condition"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} pictures ({len(fonts)} fonts) and labels.csv into {args.output}")


if __name__ == "__main__":
    main()
