"""Outputs are written beside their target and renamed into place: never half a file, never over an
input, never replacing what is not a regular file."""

import os
import stat
import threading
from pathlib import Path

import pytest

from mnist_lightning.errors import UserError
from mnist_lightning.files import _umask, refuse_overwriting_inputs, write_atomically, write_text


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = write_text(tmp_path / "out" / "metrics.json", "old")
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()

    def crash(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, crash)
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]  # no temporary file left


def null_device(folder: Path) -> Path:
    """A device node like /dev/null in folder (never the machine's own: a bug here would replace it)."""
    node = folder / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    return node


def test_a_device_is_written_into_not_replaced(tmp_path):
    device = null_device(tmp_path)
    write_text(device, "rows\n")
    assert device.is_char_device() and [p.name for p in tmp_path.iterdir()] == ["null"]


def test_a_fifo_carries_the_text_and_stays_a_fifo(tmp_path):
    fifo = tmp_path / "out.csv"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    write_text(fifo, "a,b\n")
    reader.join(timeout=30)
    assert received == ["a,b\n"] and stat.S_ISFIFO(fifo.lstat().st_mode)


def test_a_symlink_stays_and_its_target_is_replaced(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "p.csv"
    target.write_text("old")
    link = tmp_path / "p.csv"
    link.symlink_to(target)
    write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["p.csv"]  # written beside the target


def test_a_folder_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError):
        write_text(tmp_path, "x")


@pytest.mark.parametrize("spelling", ["relative", "..", "symlink", "hard link"])
def test_an_output_that_is_an_input_however_spelt_is_refused(spelling, tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    ckpt = tmp_path / "a" / "model.ckpt"
    ckpt.write_bytes(b"weights")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "soft").symlink_to(ckpt)
    os.link(ckpt, tmp_path / "b" / "hard")
    monkeypatch.chdir(tmp_path / "b")
    output = {
        "relative": "../a/model.ckpt",
        "..": str(tmp_path / "b" / ".." / "a" / "model.ckpt"),
        "symlink": "soft",
        "hard link": "hard",
    }[spelling]
    with pytest.raises(UserError, match="--output .* an input of this command"):
        refuse_overwriting_inputs({"--output": output}, [str(ckpt)])
    refuse_overwriting_inputs({"--output": "new.onnx"}, [str(ckpt)])  # a new file is fine
    assert ckpt.read_bytes() == b"weights"
