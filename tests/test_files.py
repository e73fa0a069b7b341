"""Outputs are written beside their target and renamed into place: never half a file."""

import pytest

from mnist_lightning.files import _umask, write_atomically, write_text


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
