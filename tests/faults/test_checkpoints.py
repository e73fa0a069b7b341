"""Fault table: checkpoints given to test/validate/predict/report that must be refused."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.cli import QUIET
from helpers.faults import MEMORY_CAP_KB, Row, Scratch, check_refused

GROUP = "checkpoint"
pytestmark = pytest.mark.slow


def _test(path: Path | str) -> list[str]:
    return ["test", "--ckpt_path", str(path), *QUIET]


def test_missing_file(scratch: Scratch, record):
    """missing file"""
    record(
        check_refused(
            scratch, _test(scratch.root / "nowhere.ckpt"), 1, "does not exist", "look in the run's checkpoints/"
        )
    )


def test_a_folder(scratch: Scratch, record):
    """a folder"""
    record(check_refused(scratch, _test(scratch.run), 1, "is a folder", str(scratch.run / "checkpoints")))


def test_truncated_to_half(scratch: Scratch, record):
    """truncated to half"""
    path = scratch.root / "half.ckpt"
    path.write_bytes(scratch.best.read_bytes()[: scratch.best.stat().st_size // 2])
    record(check_refused(scratch, _test(path), 1, "not a readable checkpoint"))


def test_empty_file(scratch: Scratch, record):
    """empty file"""
    (scratch.root / "empty.ckpt").write_bytes(b"")
    record(check_refused(scratch, _test(scratch.root / "empty.ckpt"), 1, "not a readable checkpoint"))


def test_random_bytes(scratch: Scratch, record):
    """random bytes"""
    (scratch.root / "noise.ckpt").write_bytes(np.random.default_rng(0).bytes(10_000))
    record(check_refused(scratch, _test(scratch.root / "noise.ckpt"), 1, "not a readable checkpoint"))


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code(scratch: Scratch, record):
    """pickled code (an object that runs `touch` when loaded)"""
    marker = scratch.root / "pwned"
    path = scratch.root / "evil.ckpt"
    torch.save({"state_dict": {}, "x": _Evil(str(marker))}, path)
    row = check_refused(scratch, _test(path), 1, "refused to load", "could run code")
    assert not marker.exists(), "the pickled code ran"
    record(Row(row.command, row.exit, row.says, "the code did not run"))


def test_a_zip_bomb_under_a_memory_cap(scratch: Scratch, record):
    """a 16 MB file whose tensor unpacks to 3 GB, under `ulimit -v`"""
    path = scratch.root / "bomb.ckpt"
    buffer = io.BytesIO()
    torch.save(torch.load(scratch.best, weights_only=True), buffer)
    # compresslevel 1: deflating 3 GB of zeros takes a third of the default level's time
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        prefix = src.infolist()[0].filename.split("/")[0]
        with dst.open(f"{prefix}/data/bomb", "w", force_zip64=True) as entry:
            chunk = bytes(64 * 2**20)
            for _ in range(48):
                entry.write(chunk)
    row = check_refused(scratch, _test(path), 1, "refused", "unpacks to 3,0", memory_kb=MEMORY_CAP_KB)
    record(Row(row.command + f"  (ulimit -v {MEMORY_CAP_KB})", row.exit, row.says, "nothing unpacked"))


def _set_version(version: str):
    return lambda c: c.update({"pytorch-lightning_version": version})


EDITED = [
    pytest.param(
        "noversion.ckpt",
        lambda c: c.pop("pytorch-lightning_version"),
        ("written by something other than Lightning",),
        id="no `pytorch-lightning_version` key",
    ),
    pytest.param("old.ckpt", _set_version("1.0.0"), ("written by Lightning 1.0.0",), id="tagged Lightning 1.0.0"),
    pytest.param(
        "other.ckpt",
        lambda c: c["state_dict"].update({"net.7.weight": torch.zeros(64, 1600)}),
        ("different network", "net.7.weight"),
        id="another network (a layer of another shape)",
    ),
    pytest.param(
        "missing.ckpt",
        lambda c: c["state_dict"].pop("net.10.bias"),
        ("different network", "net.10.bias"),
        id="a missing layer",
    ),
    pytest.param(
        "nan.ckpt",
        lambda c: c["state_dict"]["net.0.weight"].view(-1).__setitem__(0, float("nan")),
        ("not finite floating-point", "net.0.weight"),
        id="NaN weights",
    ),
    pytest.param(
        "inf.ckpt",
        lambda c: c["state_dict"]["net.0.weight"].view(-1).__setitem__(0, float("inf")),
        ("not finite floating-point", "net.0.weight"),
        id="infinite weights",
    ),
    pytest.param(
        "int.ckpt",
        lambda c: c["state_dict"].update({"net.10.bias": torch.zeros(10, dtype=torch.long)}),
        ("not finite floating-point", "net.10.bias"),
        id="integer weights",
    ),
    pytest.param(
        "key.ckpt",
        lambda c: c["datamodule_hyper_parameters"].update({"colour": "red"}),
        ("saved settings do not fit", "colour"),
        id="data settings with an unknown key",
    ),
    pytest.param(
        "type.ckpt",
        lambda c: c["datamodule_hyper_parameters"].update({"batch_size": "many"}),
        ("saved settings do not fit", "batch_size"),
        id="data settings of a wrong type",
    ),
    pytest.param(
        "lr.ckpt",
        lambda c: c["hyper_parameters"].update({"lr": "fast"}),
        ("saved settings do not fit", "lr"),
        id="model settings of a wrong type",
    ),
]


@pytest.mark.parametrize(("name", "edit", "fragments"), EDITED)
def test_an_edited_checkpoint(scratch: Scratch, record, name, edit, fragments):
    record(check_refused(scratch, _test(scratch.checkpoint(name, edit)), 1, *fragments))


def test_a_torch_file_that_is_not_a_checkpoint(scratch: Scratch, record):
    """a torch file that is not a checkpoint"""
    torch.save(torch.zeros(3), scratch.root / "tensor.pt")
    record(check_refused(scratch, _test(scratch.root / "tensor.pt"), 1, "not a Lightning checkpoint"))


def test_test_without_a_checkpoint(scratch: Scratch, record):
    """`test` without --ckpt_path"""
    (best,) = (scratch.run / "checkpoints").glob("epoch*.ckpt")
    cwd = scratch.run.parents[2]
    row = check_refused(scratch, ["test", *QUIET], 1, "needs a trained network", cwd=cwd, survived="runs untouched")
    assert row.says.endswith(f"(the best of the newest run is {best.relative_to(cwd)})")
    record(row)


def test_without_a_checkpoint_when_last_is_a_dangling_link(scratch: Scratch, record):
    """`test` without --ckpt_path, the newest run's last.ckpt a dangling link and a folder named x.ckpt"""
    cwd = scratch.folder("dangling")
    checkpoints = cwd / "runs" / "mnist" / "2026-01-01_00-00-00" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "epoch03-val_acc0.9900.ckpt").write_bytes(scratch.best.read_bytes())
    (checkpoints / "last.ckpt").symlink_to(checkpoints / "gone.ckpt")
    (checkpoints / "x.ckpt").mkdir()
    row = check_refused(
        scratch,
        ["test", *QUIET],
        1,
        "needs a trained network",
        "epoch03-val_acc0.9900.ckpt",
        cwd=cwd,
        survived="runs untouched",
    )
    record(row)
