"""Turning people's digit pictures into MNIST digits, the way MNIST itself was made.

MNIST's digits are white on black, size-normalized to fit a 20x20 box with their
aspect ratio kept, then placed in 28x28 with their centre of mass at the centre.
A photo or scan of dark ink on paper looks nothing like that until it is redone.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter, ImageOps


def to_grayscale(image: Image.Image) -> np.ndarray:
    """Any PIL mode to float grayscale in 0-255; transparency is laid on paper of the colour the ink is not.

    16- and 32-bit integer and floating-point images are stretched from their darkest to
    their brightest value: their range says nothing about where paper and ink lie, and
    PIL's convert("L") would clip them instead.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        low, high = float(values.min()), float(values.max())
        return ((values - low) * (255 / (high - low)) if high > low else np.zeros_like(values)).astype(np.float32)
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        # Transparent paper takes the colour the ink is not: dark ink on white, light ink on black.
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"))
        ink = np.asarray(rgba.convert("L"))[alpha > 127]
        paper = "black" if ink.size and ink.mean() > 127 else "white"
        image = Image.alpha_composite(Image.new("RGBA", image.size, paper), rgba)
    return np.asarray(image.convert("L"), dtype=np.float32)


class NoDigit(ValueError):
    """A picture in which no digit stands out from the background."""


def mnist_style(image: Image.Image) -> np.ndarray:
    """A 28x28 uint8 digit, white on black, or ValueError when no ink is found."""
    gray = to_grayscale(image)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    if background > 127:  # light paper: make the ink the bright part, as in MNIST
        gray, background = 255 - gray, 255 - background
    ink = np.clip(gray - background, 0, None)
    peak = float(np.percentile(ink, 99.9))
    if peak < 30:  # nothing stands out from the background by more than ~12%
        raise NoDigit("no digit found (the picture is blank or has no contrast)")
    ink = np.where(ink > 0.25 * peak, np.minimum(ink / peak, 1.0), 0.0)  # drop paper grain and noise
    # Find the digit's box on a blurred copy: strokes survive the blur, isolated
    # specks of sensor or JPEG noise fade below the threshold and cannot widen it.
    radius = max(1.0, min(ink.shape) / 100)
    smooth = np.asarray(_gray_image(ink).filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    ys, xs = np.nonzero(smooth > 0.3 * smooth.max())
    crop = ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]

    height, width = crop.shape
    scale = 20.0 / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    digit = np.asarray(_gray_image(crop).resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    digit *= 255 / digit.max()  # thin strokes shrunk a lot come out faint; MNIST's ink peaks at 255

    canvas = np.zeros((28, 28), dtype=np.float32)
    total = digit.sum()
    cy, cx = (np.indices(digit.shape) * digit).reshape(2, -1).sum(1) / total
    top = int(np.clip(round(14 - cy), 0, 28 - digit.shape[0]))
    left = int(np.clip(round(14 - cx), 0, 28 - digit.shape[1]))
    canvas[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return canvas.round().astype(np.uint8)


def _gray_image(values: np.ndarray) -> Image.Image:
    """An 8-bit PIL image of values in [0, 1] (PIL's filters and resizing want one)."""
    return Image.fromarray((values * 255).round().astype(np.uint8))
