"""People's pictures become MNIST-style digits: white on black, 20 px box, centred by mass."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from mnist_lightning.preprocess import mnist_style


def zero(size: tuple[int, int], box: tuple[float, float, float, float], ink: int, paper: int, mode: str = "L"):
    """A thick '0' in the given fraction box of a canvas: balanced, so centring by mass centres its box."""
    image = Image.new("L", size, paper)
    w, h = size
    pen = max(2, int(min(w, h) * 0.04))
    ImageDraw.Draw(image).ellipse([box[0] * w, box[1] * h, box[2] * w, box[3] * h], outline=ink, width=pen)
    return image.convert(mode)


def check_mnist_like(digit: np.ndarray) -> None:
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    assert digit[[0, -1]].max() == 0 and digit[:, [0, -1]].max() == 0  # black border
    assert digit.max() > 200  # bright ink
    ys, xs = np.nonzero(digit > 0)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 in (20, 21, 22)  # 20 px box, +resampling blur
    cy, cx = (np.indices(digit.shape) * digit).reshape(2, -1).sum(1) / digit.sum()
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1


def similar(a: np.ndarray, b: np.ndarray) -> float:
    """Best correlation over shifts of up to one pixel (centring by mass rounds to whole pixels)."""
    return max(
        np.corrcoef(np.roll(a, (dy, dx), axis=(0, 1)).ravel(), b.ravel())[0, 1]
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )


@pytest.mark.parametrize("size", [(28, 28), (64, 48), (300, 300), (1000, 400), (120, 900)])
@pytest.mark.parametrize("light_paper", [True, False])
def test_any_size_and_background_becomes_an_mnist_digit(size, light_paper):
    ink, paper = (20, 235) if light_paper else (235, 20)
    check_mnist_like(mnist_style(zero(size, (0.3, 0.3, 0.6, 0.7), ink, paper)))


@pytest.mark.parametrize("mode", ["L", "RGB", "P", "I;16", "1"])
def test_every_image_mode(mode):
    check_mnist_like(mnist_style(zero((200, 160), (0.2, 0.2, 0.7, 0.8), 0, 255, mode)))


def test_rgba_with_transparent_paper():
    image = Image.new("RGBA", (150, 150), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse([40, 30, 100, 120], outline=(10, 10, 200, 255), width=8)
    check_mnist_like(mnist_style(image))


def test_off_centre_digit_is_centred_and_light_and_dark_agree():
    corner = mnist_style(zero((400, 300), (0.02, 0.05, 0.25, 0.4), 30, 240))
    check_mnist_like(corner)
    inverse = mnist_style(zero((400, 300), (0.02, 0.05, 0.25, 0.4), 240, 30))
    assert similar(corner, inverse) > 0.95


def test_noisy_jpeg_photo_of_a_digit():
    rng = np.random.default_rng(0)
    clean = np.asarray(zero((240, 240), (0.35, 0.25, 0.7, 0.75), 40, 215), dtype=np.float32)
    noisy = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).convert("RGB").save(buffer, "JPEG", quality=70)
    digit = mnist_style(Image.open(buffer))
    check_mnist_like(digit)
    reference = mnist_style(Image.fromarray(clean.astype(np.uint8)))
    assert similar(digit, reference) > 0.9


@pytest.mark.parametrize("value", [0, 128, 255])
def test_blank_picture_is_refused(value):
    with pytest.raises(ValueError, match="no digit found"):
        mnist_style(Image.new("L", (50, 50), value))


def test_white_ink_on_transparent_paper_is_a_digit():
    """A canvas drawn in white on a transparent background: the paper is taken as black, not white."""
    alpha = zero((150, 150), (0.25, 0.2, 0.7, 0.8), 255, 0)  # opaque only where the ink is
    white = Image.merge("RGBA", (*[Image.new("L", (150, 150), 255)] * 3, alpha))
    black = Image.merge("RGBA", (*[Image.new("L", (150, 150), 0)] * 3, alpha))
    assert similar(mnist_style(white), mnist_style(black)) > 0.95
    check_mnist_like(mnist_style(white))


def seven_on_paper(size: int = 400, pen: int = 12) -> Image.Image:
    """A dark '7' written across the middle of light paper: the picture every phone photo below spoils."""
    image = Image.new("L", (size, size), 225)
    draw = ImageDraw.Draw(image)
    draw.line([(0.32 * size, 0.3 * size), (0.66 * size, 0.3 * size), (0.45 * size, 0.72 * size)], fill=30, width=pen)
    return image


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two digits' ink."""
    return float(((a > 64) & (b > 64)).sum() / ((a > 64) | (b > 64)).sum())


def spoiled(change) -> tuple[np.ndarray, np.ndarray]:
    """The clean seven's digit, and the digit of the seven with change(picture as float array) applied."""
    clean = seven_on_paper()
    values = np.asarray(clean, np.float32)
    return mnist_style(clean), mnist_style(Image.fromarray(np.clip(change(values), 0, 255).astype(np.uint8)))


def test_a_shadow_across_the_digit_is_not_ink():
    def shadow(values):
        values[:, :230] *= 0.4  # the left part of the page, digit included, in shadow
        return values

    clean, shaded = spoiled(shadow)
    assert overlap(clean, shaded) > 0.8


def test_light_falling_off_across_the_page_is_not_ink():
    clean, lit = spoiled(lambda values: values * np.linspace(1.0, 0.35, values.shape[1])[None, :])
    assert overlap(clean, lit) > 0.8


@pytest.mark.parametrize("kind", ["ruled", "squared", "box"])
def test_printed_lines_through_the_digit_are_not_ink(kind):
    def lines(values):
        image = Image.fromarray(values.astype(np.uint8))
        draw = ImageDraw.Draw(image)
        if kind == "box":
            draw.rectangle((100, 95, 300, 310), outline=40, width=4)  # the seven touches the box's top
        else:
            for y in range(20, 400, 60):  # ruled lines every 60 px; squared adds columns
                draw.line([(0, y), (400, y + 8)], fill=110, width=3)
                if kind == "squared":
                    draw.line([(y + 8, 0), (y, 400)], fill=110, width=3)
        return np.asarray(image, np.float32)

    clean, lined = spoiled(lines)
    assert overlap(clean, lined) > 0.7


def test_writing_along_and_across_a_pale_printed_line_stays():
    def ruled(values):
        image = Image.fromarray(values.astype(np.uint8))
        for y in range(0, 400, 60):  # one rule runs under the seven's bar, the next crosses its stem
            ImageDraw.Draw(image).line([(0, y), (400, y)], fill=150, width=3)
        return np.asarray(image, np.float32)

    clean, lined = spoiled(ruled)
    assert overlap(clean, lined) > 0.8


def test_dark_printed_lines_are_not_kept_as_writing():
    def squared(values):  # as dark as the pen, thin, a little blurred and saved as JPEG
        image = Image.fromarray(values.astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for y in range(20, 400, 60):
            draw.line([(0, y), (400, y + 8)], fill=40, width=2)
            draw.line([(y + 8, 0), (y, 400)], fill=40, width=2)
        saved = io.BytesIO()
        image.filter(ImageFilter.GaussianBlur(0.8)).save(saved, "JPEG", quality=85)
        return np.asarray(Image.open(saved), np.float32)

    clean, lined = spoiled(squared)
    assert overlap(clean, lined) > 0.7


def test_a_thing_at_the_frame_s_edge_is_not_ink():
    def finger(values):
        values[300:, 330:] = 60  # a dark finger in the bottom-right corner
        values[:, :25] = 20  # the table beyond the paper's left edge
        return values

    clean, fingered = spoiled(finger)
    assert overlap(clean, fingered) > 0.8
