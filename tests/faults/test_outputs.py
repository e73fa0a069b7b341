"""Fault table: outputs that cannot be written where they were asked for."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.cli import QUIET
from helpers.faults import Row, Scratch, refused

GROUP = "outputs"
pytestmark = pytest.mark.slow


def test_runs_is_a_file(scratch: Scratch, record):
    """runs/ is a file"""
    cwd = scratch.folder("runsfile")
    (cwd / "runs").write_text("a file")
    row = refused(scratch, scratch.fit_args("--trainer.max_epochs", "1"), 1, "cannot write", "save_dir", cwd=cwd)
    assert (cwd / "runs").read_text() == "a file"
    record(Row(row.command, row.exit, row.says, "the file untouched"))


def test_report_folder_inside_a_file(scratch: Scratch, record):
    """report --output_dir inside a file"""
    (scratch.root / "afile").write_text("x")
    args = ["report", "--ckpt_path", str(scratch.best), "--output_dir", str(scratch.root / "afile" / "report"), *QUIET]
    record(refused(scratch, args, 1, "--output_dir", survived="runs untouched"))


def test_predictions_inside_a_file(scratch: Scratch, record):
    """--prediction_writer.output inside a file"""
    (scratch.root / "afile").write_text("x")
    args = ["predict", "--ckpt_path", str(scratch.best), "--prediction_writer.output", str(scratch.root / "afile" / "p.csv"),
            *QUIET]  # fmt: skip
    record(refused(scratch, args, 1, "--prediction_writer.output"))


def test_a_file_name_of_250_bytes(scratch: Scratch, record):
    """an output file name of 250 bytes"""
    cwd = scratch.folder("long")
    args = ["predict", "--ckpt_path", str(scratch.best), "--prediction_writer.output", "p" * 246 + ".csv", *QUIET]
    result = scratch.cli(*args, cwd=cwd)
    assert result.returncode == 0 and (cwd / ("p" * 246 + ".csv")).is_file(), result.stderr[-2000:]
    record(Row("mnist-lightning predict --ckpt_path CKPT --prediction_writer.output ppp…p.csv (250 bytes)", 0,
               "(writes it)", "the predictions"))  # fmt: skip


def test_a_file_name_of_256_bytes(scratch: Scratch, record):
    """an output file name of 256 bytes"""
    args = ["predict", "--ckpt_path", str(scratch.best), "--prediction_writer.output", "p" * 252 + ".csv", *QUIET]
    row = refused(scratch, args, 1, "File name too long")
    record(Row("mnist-lightning predict --ckpt_path CKPT --prediction_writer.output ppp…p.csv (256 bytes)", row.exit,
               row.says, row.survived))  # fmt: skip


@pytest.fixture
def tmpfs(scratch: Scratch, request) -> Iterator[Path]:
    """A small RAM file system of request.param bytes: a real full disk (skipped where mounting is not allowed)."""
    path = scratch.folder(f"tmpfs-{request.node.name}")
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={request.param}", "tmpfs", str(path)], check=False,
                           capture_output=True)  # fmt: skip
    if mount.returncode != 0:
        pytest.skip("mounting a tmpfs is not allowed here")
    yield path
    subprocess.run(["umount", str(path)], check=False)


@pytest.mark.parametrize("tmpfs", ["2m"], indirect=True)
def test_disk_full_while_writing_a_checkpoint(scratch: Scratch, record, tmpfs: Path):
    """disk full while writing a checkpoint (a 2 MB file system)"""
    cwd = scratch.folder("full")
    args = scratch.fit_args("--trainer.max_epochs", "1", "--trainer.logger.init_args.save_dir", str(tmpfs))
    row = refused(scratch, args, 1, "No space left on device", cwd=cwd)
    assert not [p for p in tmpfs.rglob("*") if p.name.startswith(".mnist-lightning-")], "a temporary file was left"
    record(Row(row.command, row.exit, row.says, "no partial file"))


@pytest.mark.parametrize("tmpfs", ["64k"], indirect=True)
def test_disk_full_while_writing_predictions(scratch: Scratch, record, tmpfs: Path):
    """disk full while writing predictions"""
    old = tmpfs / "predictions.csv"
    old.write_text("old\n")
    (tmpfs / "filler").write_bytes(b"x" * (60 * 1024))
    args = ["predict", "--ckpt_path", str(scratch.best), "--prediction_writer.output", str(old), *QUIET]
    row = refused(scratch, args, 1, "No space left on device", "--prediction_writer.output")
    assert old.read_text() == "old\n"
    record(Row(row.command, row.exit, row.says, "the old predictions.csv, whole"))
