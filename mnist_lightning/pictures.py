"""People's pictures of digits: finding the files (a file, a folder or a glob) and reading
one as an MNIST digit, with numpy, Pillow and OpenCV only (serve and export need no training stack)."""

from __future__ import annotations

import fnmatch
import glob
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from mnist_lightning.errors import UserError
from mnist_lightning.preprocess import mnist_style


def warn(message: str) -> None:
    """A line on stderr for a picture or folder that is skipped."""
    print(f"mnist-lightning: warning: {message}", file=sys.stderr)


def find_files(path: str, warn: Callable[[str], None] = warn) -> list[Path]:
    """A file, every file under a directory, or a glob pattern's matches, sorted; each file once.

    Symbolic links to folders are followed, but never into a folder already walked, so
    link loops end; a file reached by two routes is read once. Unreadable folders are
    named in a warning.
    """
    if not path.strip():
        raise UserError("--data.predict_path is empty: give an image file, a folder or a glob pattern")
    given = Path(path).expanduser()
    if given.is_file():
        return [given]
    if given.exists() and not given.is_dir():  # a FIFO, a device, a socket: reading it could block or never end
        raise UserError(f"--data.predict_path {path} is not a picture file or a folder (a device, FIFO or socket)")
    if given.is_dir():
        root, pattern = given, None
    else:
        parts = given.parts
        magic = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
        root, pattern = Path(*parts[:magic]) if magic else Path("."), parts[magic:]
    files = sorted(f for f in _walk(root, warn) if pattern is None or _matches(f.relative_to(root).parts, pattern))
    if not files:
        raise UserError(f"--data.predict_path {path}: no such file, or no files in that directory or pattern")
    return files


def _walk(root: Path, warn: Callable[[str], None]) -> Iterator[Path]:
    """The files under root, following folder links but entering each real folder and reading each file once."""
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()

    def unreadable(err: OSError) -> None:
        warn(f"skipped the folder {err.filename}: {err.strerror}")

    for folder, dirs, names in os.walk(root, followlinks=True, onerror=unreadable):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in seen_dirs:
            dirs.clear()
            continue
        seen_dirs.add((stat.st_dev, stat.st_ino))
        dirs.sort()
        for name in sorted(names):
            file = Path(folder, name)
            try:
                info = file.stat()
            except OSError:  # a dangling link
                continue
            if file.is_file() and (info.st_dev, info.st_ino) not in seen_files:
                seen_files.add((info.st_dev, info.st_ino))
                yield file


def _matches(parts: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """Whether path components match a glob's components; `**` spans any number of folders."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_matches(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _matches(parts[1:], pattern[1:])


# Pictures above this many pixels are skipped: a small compressed file can hold a huge
# image (12000x12000 is 3.7 GB to decode), and no photo of one digit needs more.
MAX_PIXELS = 40_000_000
# JPEGs above this are decoded at a reduced scale (Pillow's draft: 1/2 to 1/8, nearly free);
# the digit is cropped and shrunk to 20 px anyway.
DRAFT_PIXELS = 4_000_000


class TooManyPixels(ValueError):
    """A picture larger than the pixels a reader accepts."""


def read_digit(source: str | Path | BinaryIO, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """One picture (a file or a file object) as a 28x28 uint8 MNIST digit, made as MNIST was.

    Raises TooManyPixels (judged from the header, before decoding), NoDigit (blank), or what
    Pillow raises for a file it cannot read (any exception: a damaged file can break a decoder in any way).
    """
    with Image.open(source) as image:
        if image.width * image.height > max_pixels:
            raise TooManyPixels(f"{image.width}x{image.height} pixels, more than the {max_pixels:,} read")
        if image.format == "JPEG" and image.width * image.height > DRAFT_PIXELS:
            image.draft(image.mode, (1024, 1024))
        return mnist_style(image)


def frames(path: Path) -> int:
    """How many frames (GIF) or pages (TIFF) a picture file holds; 1 when it cannot tell."""
    try:
        with Image.open(path) as image:
            return getattr(image, "n_frames", 1)
    except Exception:  # noqa: BLE001  # read_digit has named the file already
        return 1
