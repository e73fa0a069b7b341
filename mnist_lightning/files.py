"""Writing outputs: never half a file, never over an input, never replacing what is not a file."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from mnist_lightning.errors import UserError


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Calls write(tmp) on a temporary file beside `path`, then renames it over `path`.

    The rename is atomic on POSIX, so readers see the old file or the new one, never a part.
    Only a regular file is ever replaced: a device or a FIFO (/dev/null, /dev/stdout, a pipe)
    is written into, and a symbolic link is followed, its target replaced beside it.
    The temporary name is short, so that any name the file system takes for `path` works.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode  # through links
    except FileNotFoundError:
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
    if mode is not None and not stat.S_ISREG(mode):
        write(path)  # a device, FIFO or socket: a stream, nothing to replace
        return path
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".mnist-lightning-", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the user's usual mode
        write(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    # surrogateescape: a file name that is not UTF-8 is written back as the bytes the OS gave
    return write_atomically(path, lambda tmp: tmp.write_text(text, errors="surrogateescape"))


def write_bytes(path: str | Path, data: bytes) -> Path:
    return write_atomically(path, lambda tmp: tmp.write_bytes(data))


def refuse_overwriting_inputs(outputs: dict[str, str | Path], inputs: Iterable[str | Path]) -> None:
    """UserError if an output (named by its option) is the same file as an input, however either is spelt
    (relative, `..`, a symbolic or a hard link): writing it would destroy the input."""
    existing = [Path(p) for p in inputs if p and Path(p).exists()]
    for option, output in outputs.items():
        out = Path(output)
        if not out.exists():
            continue
        for source in existing:
            if os.path.samefile(out, source):
                raise UserError(
                    f"{option} {output} is {source}, an input of this command; writing it would destroy "
                    "the input. Choose another file"
                )
