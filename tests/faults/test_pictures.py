"""Fault table: pictures given to `predict` in odd formats, sizes, folders and patterns."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import QUIET
from helpers.faults import MEMORY_CAP_KB, Row, Scratch, check_refused, predict
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


FORMATS = {
    "16-bit PNGs": _png16,
    "32-bit integer TIFFs": _tif32,
    "32-bit float TIFFs (0-1)": _tiff,
    "dark ink on white paper, 16-bit": _paper16,
}


def _formats(folder: Path) -> None:
    """Each synthetic digit in every format under test, and as an 8-bit PNG twin."""
    images, _ = synthetic_digits(6, seed=1)
    for save in FORMATS.values():
        sub = folder / save.__name__.strip("_")
        sub.mkdir()
        for i, image in enumerate(images):
            big = np.kron(image, np.ones((3, 3))) / 255
            save(big, sub / f"{i}")
            Image.fromarray((big * 255).round().astype(np.uint8)).save(sub / f"{i}_8bit.png")


def _huge(folder: Path) -> None:
    Image.new("L", (12000, 12000)).save(folder / "huge.png", optimize=True)


def _junk(folder: Path) -> None:
    (folder / "broken.png").write_bytes(next(folder.glob("*.png")).read_bytes()[:60])
    (folder / "notes.txt").write_text("hello")


def _blank(folder: Path) -> None:
    Image.new("L", (50, 50), 255).save(folder / "white.png")


def _dds_with_a_damaged_header(path: Path) -> None:
    """A DDS file whose pixel format flags ask for what Pillow's decoder does not implement."""
    header = bytearray(b"DDS " + (124).to_bytes(4, "little") + bytes(120))
    header[12:16] = (28).to_bytes(4, "little")  # height
    header[16:20] = (28).to_bytes(4, "little")  # width
    header[76:80] = (32).to_bytes(4, "little")  # pixel format size
    header[80:84] = (0x80000).to_bytes(4, "little")  # an unknown pixel format flag
    path.write_bytes(bytes(header) + bytes(28 * 28 * 4))


def _choke(folder: Path) -> None:
    _dds_with_a_damaged_header(folder / "damaged.dds")
    _dds_with_a_damaged_header(folder / "disguised.png")


def _latin1(folder: Path) -> None:
    shutil.copy(next(folder.glob("*.png")), folder / os.fsdecode(b"caf\xe9.png"))


def _frames(folder: Path) -> None:
    images, _ = synthetic_digits(2, seed=1)
    frames = [Image.fromarray(image).resize((84, 84)) for image in images]
    frames[0].save(folder / "a_anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(folder / "b_first_frame.png")
    white = Image.merge(
        "RGBA", (*[Image.new("L", (84, 84), 255)] * 3, frames[1])
    )  # white ink, opaque only on the digit
    white.save(folder / "c_white_on_transparent.png")
    Image.fromarray(255 - np.asarray(frames[1])).save(folder / "d_dark_on_white.png")


# The cases of a picture among digits: a subfolder each, beside a copy of the 6 digits.
AMONG_DIGITS = {"huge": _huge, "junk": _junk, "blank": _blank, "choke": _choke, "latin1": _latin1}


@dataclass
class Predicted:
    folder: Path  # what --data.predict_path named
    result: subprocess.CompletedProcess[str]
    csv: bytes  # predictions.csv as written

    def rows(self, sub: str) -> list[list[str]]:
        """The CSV rows of the pictures in the subfolder `sub` (names as the OS gives them)."""
        lines = self.csv.decode(errors="surrogateescape").splitlines()[1:]
        return [line.split(",") for line in lines if line.startswith(f"{self.folder / sub}/")]

    def row(self, says: str, survived: str) -> Row:
        shown = ["predict", "--ckpt_path", "CKPT", "--data.predict_path", f"{self.folder.name}/"]
        return Row(f"{' '.join(['mnist-lightning', *shown])}  (ulimit -v {MEMORY_CAP_KB})", 0, says, survived)


@pytest.fixture(scope="module")
def among_digits(scratch: Scratch) -> Predicted:
    """One `predict` of a folder that holds every case below in a subfolder of its own, under a
    memory cap: the cases share a process (a start costs seconds) and each checks its own rows."""
    folder = scratch.folder("pictures")
    for name, make in AMONG_DIGITS.items():
        shutil.copytree(scratch.pictures(), folder / name)
        make(folder / name)
    for name, make in (("formats", _formats), ("frames", _frames)):
        (folder / name).mkdir()
        make(folder / name)
    cwd = scratch.folder("among")
    result, _ = predict(scratch, str(folder), cwd=cwd, memory_kb=MEMORY_CAP_KB)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return Predicted(folder, result, (cwd / "predictions.csv").read_bytes())


def _skipped(predicted: Predicted, sub: str, name: str) -> str:
    """The warning that `sub/name` was skipped, as the table shows it."""
    path = f"{predicted.folder}/{sub}/{name}"
    line = next((line.strip() for line in predicted.result.stderr.splitlines() if f"skipped {path}:" in line), "")
    assert line, (path, predicted.result.stderr[-2000:])
    return line.replace(f"{predicted.folder}/", f"{predicted.folder.name}/")


@pytest.mark.parametrize("save", FORMATS.values(), ids=FORMATS.keys())
def test_a_picture_format(among_digits: Predicted, record, save: Callable[[np.ndarray, Path], None]):
    # Each digit in the format under test and as an 8-bit PNG: both must become the same MNIST digit.
    sub = f"formats/{save.__name__.strip('_')}"
    assert len(among_digits.rows(sub)) == 12 and f"{sub}/" not in among_digits.result.stderr
    folder = among_digits.folder / sub
    for twin in (f for f in sorted(folder.iterdir()) if "_8bit" not in f.name):
        with Image.open(twin) as a, Image.open(folder / f"{twin.stem}_8bit.png") as b:
            difference = np.abs(mnist_style(a).astype(int) - mnist_style(b).astype(int)).max()
        assert difference <= 2, (twin.name, difference)
    record(
        among_digits.row(
            "(predicts them)", f"all 6 in {sub}/ read; each the same 28x28 digit as its 8-bit twin (within 2 of 255)"
        )
    )


SKIPPED = [
    pytest.param("huge", ["huge.png"], "pixels, more than", id="a 12,000 x 12,000 PNG (492 KB) among digits"),
    pytest.param("junk", ["broken.png", "notes.txt"], "truncated", id="a damaged PNG and a text file among digits"),
    pytest.param("blank", ["white.png"], "no digit found", id="a blank picture among digits"),
    pytest.param(
        "choke",
        ["damaged.dds", "disguised.png"],
        "Unknown pixel format",
        id="a damaged DDS (Pillow raises NotImplementedError), also named .png, among digits",
    ),
]


@pytest.mark.parametrize(("sub", "names", "reason"), SKIPPED)
def test_a_picture_among_digits_that_cannot_be_read(among_digits: Predicted, record, sub, names, reason):
    assert len(among_digits.rows(sub)) == 6  # the digits beside it
    says = [_skipped(among_digits, sub, name) for name in names]  # each unreadable file named, with why
    assert reason in says[0], says
    record(among_digits.row(says[0], f"the 6 digits in {sub}/ predicted"))


def test_a_file_name_that_is_not_utf8(among_digits: Predicted, record):
    """a picture whose file name is not UTF-8 (caf\\xe9.png)"""
    assert len(among_digits.rows("latin1")) == 7
    assert os.fsencode(among_digits.folder / "latin1") + b"/caf\xe9.png" in among_digits.csv  # the bytes on disk
    record(among_digits.row("(predicts them)", "7 rows for latin1/; the name's bytes as they are on disk"))


def test_an_animated_gif_and_white_ink_on_transparent_paper(among_digits: Predicted, record):
    """an animated GIF, and white ink on transparent paper"""
    rows = among_digits.rows("frames")
    assert len(rows) == 4
    gif, first, white_ink, dark_ink = (row[1:3] for row in sorted(rows))
    assert gif == first and white_ink == dark_ink  # the same digits as their plain versions: not blank, not inverted
    says = next(line.strip() for line in among_digits.result.stderr.splitlines() if "a_anim.gif" in line)
    assert "first of its 2 frames" in says
    record(
        among_digits.row(
            says.replace(f"{among_digits.folder}/", f"{among_digits.folder.name}/")[-150:],
            "all 4 in frames/ read; each as its plain PNG twin reads",
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
