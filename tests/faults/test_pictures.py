"""Fault table: pictures given to `predict` in odd formats, sizes, folders and patterns."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import QUIET
from helpers.faults import MEMORY_CAP_KB, Row, Scratch, check_refused, predict, warning_about
from helpers.mnist import synthetic_digits
from PIL import Image

from mnist_lightning.preprocess import mnist_style

GROUP = "pictures"
pytestmark = pytest.mark.slow


def _png16(a: np.ndarray, p: Path) -> None:
    Image.fromarray((a * 65535).astype(np.uint16)).save(f"{p}.png")


def _tif32(a: np.ndarray, p: Path) -> None:
    Image.fromarray((a * 2e9).astype(np.int32)).save(f"{p}.tif")


def _tiff(a: np.ndarray, p: Path) -> None:
    Image.fromarray(a.astype(np.float32)).save(f"{p}.tif")


def _paper16(a: np.ndarray, p: Path) -> None:
    Image.fromarray(((1 - a) * 60000).astype(np.uint16)).save(f"{p}.png")


@pytest.mark.parametrize(
    "save",
    [
        pytest.param(_png16, id="16-bit PNGs"),
        pytest.param(_tif32, id="32-bit integer TIFFs"),
        pytest.param(_tiff, id="32-bit float TIFFs (0-1)"),
        pytest.param(_paper16, id="dark ink on white paper, 16-bit"),
    ],
)
def test_a_picture_format(scratch: Scratch, record, save: Callable[[np.ndarray, Path], None]):
    # Each digit in the format under test and as an 8-bit PNG: both must become the same MNIST digit.
    name = save.__name__.strip("_")
    folder = scratch.folder(name)
    images, _ = synthetic_digits(6, seed=1)
    for i, image in enumerate(images):
        big = np.kron(image, np.ones((3, 3))) / 255
        save(big, folder / f"{i}")
        Image.fromarray((big * 255).round().astype(np.uint8)).save(folder / f"{i}_8bit.png")
    result, rows = predict(scratch, str(folder))
    assert result.returncode == 0 and "skipped" not in result.stderr, result.stderr[-2000:]
    assert len(rows) == 12, rows
    for twin in (f for f in sorted(folder.iterdir()) if "_8bit" not in f.name):
        with Image.open(twin) as a, Image.open(folder / f"{twin.stem}_8bit.png") as b:
            difference = np.abs(mnist_style(a).astype(int) - mnist_style(b).astype(int)).max()
        assert difference <= 2, (twin.name, difference)
    record(
        Row(
            scratch.shown(["predict", "--ckpt_path", "CKPT", "--data.predict_path", name + "/"]),
            0,
            "(predicts them)",
            "all 6 read; each the same 28x28 digit as its 8-bit twin (within 2 of 255)",
        )
    )


def _among_digits(scratch: Scratch, name: str) -> Path:
    folder = scratch.folder(name)
    shutil.copytree(scratch.pictures(), folder, dirs_exist_ok=True)
    return folder


def test_a_huge_png_among_digits(scratch: Scratch, record):
    """a 12,000 x 12,000 PNG (492 KB) among digits"""
    folder = _among_digits(scratch, "huge")
    Image.new("L", (12000, 12000)).save(folder / "huge.png", optimize=True)
    result, rows = predict(scratch, str(folder), memory_kb=MEMORY_CAP_KB)
    assert result.returncode == 0 and len(rows) == 6, result.stderr[-2000:]
    assert "skipped" in result.stderr and "huge.png" in result.stderr
    record(
        Row(
            scratch.shown(["predict", "--ckpt_path", "CKPT", "--data.predict_path", "huge/"])
            + f"  (ulimit -v {MEMORY_CAP_KB})",
            0,
            warning_about(result, "huge.png"),
            "the 6 digits predicted",
        )
    )


def test_a_damaged_png_and_a_text_file_among_digits(scratch: Scratch, record):
    """a damaged PNG and a text file among digits"""
    folder = _among_digits(scratch, "junk")
    (folder / "broken.png").write_bytes((scratch.pictures() / min(os.listdir(scratch.pictures()))).read_bytes()[:60])
    (folder / "notes.txt").write_text("hello")
    result, rows = predict(scratch, str(folder))
    assert result.returncode == 0 and len(rows) == 6, result.stderr[-2000:]
    assert "broken.png" in result.stderr and "notes.txt" in result.stderr
    record(
        Row(
            scratch.shown(["predict", "--ckpt_path", "CKPT", "--data.predict_path", "junk/"]),
            0,
            warning_about(result, "broken.png"),
            "the 6 digits predicted",
        )
    )


def test_a_blank_picture_among_digits(scratch: Scratch, record):
    """a blank picture among digits"""
    folder = _among_digits(scratch, "blank")
    Image.new("L", (50, 50), 255).save(folder / "white.png")
    result, rows = predict(scratch, str(folder))
    assert result.returncode == 0 and len(rows) == 6 and "no digit found" in result.stderr, result.stderr[-2000:]
    record(
        Row(
            scratch.shown(["predict", "--ckpt_path", "CKPT", "--data.predict_path", "blank/"]),
            0,
            warning_about(result, "white.png"),
            "the 6 digits predicted",
        )
    )


def _looped(scratch: Scratch) -> Path:
    folder = scratch.folder("loops")
    shutil.copytree(scratch.pictures(), folder / "a", dirs_exist_ok=True)
    (folder / "a" / "up").symlink_to("..")
    (folder / "a" / "self").symlink_to(".")
    (folder / "b").symlink_to("a")
    return folder


@pytest.mark.parametrize(
    ("pattern", "shown"),
    [
        pytest.param("{}/**/*.png", "'loops/**/*.png'", id="`DIR/**/*.png` over folder links that loop"),
        pytest.param("{}", "loops/", id="a folder with looping links"),
    ],
)
def test_looping_links(scratch: Scratch, record, pattern: str, shown: str):
    folder = _looped(scratch)
    result, rows = predict(scratch, pattern.format(folder), timeout=120)
    assert result.returncode == 0 and len(rows) == 6, (result.stderr[-2000:], len(rows))
    record(
        Row(
            scratch.shown(["predict", "--ckpt_path", "CKPT", "--data.predict_path", shown]),
            0,
            "(predicts each file once)",
            "6 rows for 6 files",
        )
    )


def test_an_empty_predict_path(scratch: Scratch, record):
    """--data.predict_path \"\""""
    row = check_refused(
        scratch, ["predict", "--ckpt_path", str(scratch.best), "--data.predict_path", "", *QUIET], 1, "is empty"
    )
    record(Row(row.command + ' ""', row.exit, row.says, row.survived))


def test_a_pattern_that_matches_nothing(scratch: Scratch, record):
    """a pattern that matches nothing"""
    args = ["predict", "--ckpt_path", str(scratch.best), "--data.predict_path", str(scratch.root / "*.jpeg"), *QUIET]
    record(check_refused(scratch, args, 1, "no such file"))


def test_a_checkpoint_that_carries_an_old_predict_path(scratch: Scratch, record):
    """a checkpoint that carries an old predict_path"""
    pictures = str(scratch.pictures())
    path = scratch.checkpoint("pp.ckpt", lambda c: c["datamodule_hyper_parameters"].update({"predict_path": pictures}))
    cwd = scratch.folder("pp")
    result = scratch.cli("predict", "--ckpt_path", str(path), *QUIET, cwd=cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = (cwd / "predictions.csv").read_text().splitlines()
    assert lines[0].startswith("index,label,") and len(lines) == 1 + 100, "it read the old pictures"
    record(
        Row(
            scratch.shown(["predict", "--ckpt_path", "pp.ckpt"]),
            0,
            "(predicts the test set)",
            "the test set's 100 rows",
        )
    )


def _dds_with_a_damaged_header(path: Path) -> None:
    """A DDS file whose pixel format flags ask for what Pillow's decoder does not implement."""
    header = bytearray(b"DDS " + (124).to_bytes(4, "little") + bytes(120))
    header[12:16] = (28).to_bytes(4, "little")  # height
    header[16:20] = (28).to_bytes(4, "little")  # width
    header[76:80] = (32).to_bytes(4, "little")  # pixel format size
    header[80:84] = (0x80000).to_bytes(4, "little")  # an unknown pixel format flag
    path.write_bytes(bytes(header) + bytes(28 * 28 * 4))


def test_a_picture_the_decoder_chokes_on(scratch: Scratch, record):
    """a damaged DDS (Pillow raises NotImplementedError), also named .png, among digits"""
    folder = _among_digits(scratch, "choke")
    _dds_with_a_damaged_header(folder / "damaged.dds")
    _dds_with_a_damaged_header(folder / "disguised.png")
    result, rows = predict(scratch, str(folder))
    assert result.returncode == 0 and len(rows) == 6, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "damaged.dds" in result.stderr and "disguised.png" in result.stderr
    record(
        Row(
            scratch.shown(["predict", "--ckpt_path", "CKPT", "--data.predict_path", "choke/"]),
            0,
            warning_about(result, "damaged.dds"),
            "the 6 digits predicted",
        )
    )


def test_a_file_name_that_is_not_utf8(scratch: Scratch, record):
    """a picture whose file name is not UTF-8 (caf\\xe9.png)"""
    folder = _among_digits(scratch, "latin1")
    name = os.fsdecode(b"caf\xe9.png")
    shutil.copy(next(scratch.pictures().iterdir()), folder / name)
    result, rows = predict(scratch, str(folder))
    assert result.returncode == 0 and len(rows) == 7, result.stderr[-2000:]
    csv = (scratch.root / "predict" / "predictions.csv").read_bytes()
    assert b"caf\xe9.png" in csv  # the name as the OS gives it
    record(
        Row(
            scratch.shown(["predict", "--ckpt_path", "CKPT", "--data.predict_path", "latin1/"]),
            0,
            "(predicts them)",
            "7 rows; the name's bytes as they are on disk",
        )
    )


@pytest.mark.parametrize("source", ["a FIFO", "/dev/zero"])
def test_a_predict_path_that_is_no_picture_file(scratch: Scratch, record, source: str):
    """--data.predict_path a FIFO or a device"""
    path = "/dev/zero"
    if source == "a FIFO":
        path = str(scratch.folder("fifo") / "pictures.png")
        os.mkfifo(path)
    row = check_refused(
        scratch,
        ["predict", "--ckpt_path", str(scratch.best), "--data.predict_path", path, *QUIET],
        1,
        "not a picture file or a folder",
    )
    record(Row(row.command.replace(path, source), row.exit, row.says.replace(path, source), row.survived))


def test_an_animated_gif_and_white_ink_on_transparent_paper(scratch: Scratch, record):
    """an animated GIF, and white ink on transparent paper"""
    folder = scratch.folder("frames")
    images, _ = synthetic_digits(2, seed=1)
    frames = [Image.fromarray(image).resize((84, 84)) for image in images]
    frames[0].save(folder / "a_anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(folder / "b_first_frame.png")
    white = Image.merge(
        "RGBA", (*[Image.new("L", (84, 84), 255)] * 3, frames[1])
    )  # white ink, opaque only on the digit
    white.save(folder / "c_white_on_transparent.png")
    Image.fromarray(255 - np.asarray(frames[1])).save(folder / "d_dark_on_white.png")
    result, rows = predict(scratch, str(folder))
    assert result.returncode == 0 and len(rows) == 4, result.stderr[-2000:]
    assert "first of its 2 frames" in result.stderr
    gif, first, white_ink, dark_ink = (row[1:3] for row in sorted(rows))
    assert gif == first and white_ink == dark_ink  # the same digits as their plain versions: not blank, not inverted
    record(
        Row(
            scratch.shown(["predict", "--ckpt_path", "CKPT", "--data.predict_path", "frames/"]),
            0,
            next(line.strip() for line in result.stderr.splitlines() if "frames" in line)[-150:],
            "all read; each as its plain PNG twin reads",
        )
    )
