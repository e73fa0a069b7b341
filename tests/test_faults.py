"""Every case of docs/faults.md, run through the installed CLI (scripts/fault_table.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from fault_table import CASES, Scratch

from mnist_lightning.failures import STOPPING_SIGNALS


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Scratch:
    return Scratch(tmp_path_factory.mktemp("faults"))


@pytest.mark.parametrize("case", CASES, ids=[f"{c.group}: {c.name}" for c in CASES])
def test_fault(case, scratch):
    """Each case asserts its own outcome while it runs; the row it returns is what docs/faults.md shows."""
    row = case.run(scratch)
    if row.survived == "skipped":
        pytest.skip(row.command)
    assert "Traceback" not in row.says
    if row.exit == 0:  # the input was handled: the work was done
        assert row.says.startswith("(") or "warning" in row.says or "Resuming" in row.says or "No training curves" in row.says
    else:  # it was refused or stopped: one line from the CLI saying why
        assert row.says.startswith(("mnist-lightning: error:", "mnist-lightning: stopped by")), row.says
        assert row.exit in (1, 2, *(128 + signum for signum in STOPPING_SIGNALS))


def test_unreadable_folder_is_named_and_skipped(tmp_path, monkeypatch, capsys):
    # As root (CI), permissions do not stop reading, so the failing listing is simulated.
    import os

    from mnist_lightning.data import find_files

    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a.png").write_bytes(b"x")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "b.png").write_bytes(b"x")
    real_scandir = os.scandir

    def scandir(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert find_files(str(tmp_path)) == [tmp_path / "ok" / "a.png"]
    assert f"skipped the folder {tmp_path / 'locked'}: Permission denied" in capsys.readouterr().err
