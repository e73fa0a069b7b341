"""Run folders and TensorBoard tags: names that sort by time, a folder per run even when two start
together, checkpoints traced back to their run, and the tag names the report reads back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lightning.pytorch.utilities import rank_zero_only

from mnist_lightning import logger, runs
from mnist_lightning.errors import UserError
from mnist_lightning.failures import Command


def test_a_checkpoint_is_traced_to_its_run(tmp_path):
    run = tmp_path / "runs" / "mnist" / "2026-01-01_00-00-00"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("x: 1\n")
    assert runs.run_of_checkpoint(run / "checkpoints" / "last.ckpt") == run
    assert runs.run_of_checkpoint(run / "hpc_ckpt_3.ckpt") == run  # SLURM's requeue checkpoint
    assert runs.run_of_checkpoint(tmp_path / "model.ckpt") is None  # kept elsewhere


def test_the_best_checkpoint_of_the_newest_run_is_suggested(tmp_path):
    import os

    old, new = (tmp_path / "mnist" / name / "checkpoints" for name in ("a", "b"))
    for folder, files in (
        (old, ["epoch05-val_acc0.9900.ckpt", "last.ckpt"]),
        (new, ["epoch01-val_acc0.9500.ckpt", "last.ckpt"]),
    ):
        folder.mkdir(parents=True)
        for name in files:
            (folder / name).write_bytes(b"x")
    os.utime(old / "last.ckpt", (1e9, 2e9))  # the old run saved last
    assert runs.best_checkpoint_hint(tmp_path) == old / "epoch05-val_acc0.9900.ckpt"
    assert runs.best_checkpoint_hint(tmp_path / "nothing") is None


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(runs.time, "strftime", lambda fmt: "2026-12-01_18-40-12")
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    names = [logger.RunLogger(save_dir=str(tmp_path), name="mnist").version for _ in range(3)]
    assert names == ["2026-12-01_18-40-12", "2026-12-01_18-40-12_2", "2026-12-01_18-40-12_3"]
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(names)


def test_a_failed_command_leaves_no_empty_run(tmp_path):
    empty, created = runs.claim(tmp_path / "runs" / "mnist")
    assert created == [tmp_path / "runs" / "mnist", tmp_path / "runs"]
    Command(name="fit", run=empty, claimed=True, created=created).discard_empty_run()
    assert not (tmp_path / "runs").exists()
    saved, created = runs.claim(tmp_path / "runs" / "mnist")
    (saved / "checkpoints").mkdir()
    (saved / "checkpoints" / "last.ckpt").write_bytes(b"x")
    Command(name="fit", run=saved, claimed=True, created=created).discard_empty_run()
    assert saved.is_dir()
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    Command(name="fit", run=resumed).discard_empty_run()  # a run it did not make stays
    assert resumed.is_dir()


def test_a_run_is_held_by_one_process_at_a_time(tmp_path):
    first = runs.hold(tmp_path)
    try:
        with pytest.raises(UserError, match=f"the run {tmp_path} is being written by process {os.getpid()}"):
            runs.hold(tmp_path)  # a second open file: flock refuses it as it would another process
    finally:
        os.close(first)
    os.close(runs.hold(tmp_path))  # released: the next writer gets it


def test_the_report_folder_follows_the_checkpoints_run(tmp_path):
    run = tmp_path / "runs" / "mnist" / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("x: 1\n")
    assert runs.report_dir(run / "checkpoints" / "best.ckpt") == run / "report"
    assert runs.report_dir(run / "hpc_ckpt_2.ckpt") == run / "report"  # SLURM's requeue checkpoint
    assert runs.report_dir(tmp_path / "models" / "mine.ckpt") == tmp_path / "models" / "mine-report"  # outside a run
    assert runs.report_dir(run / "checkpoints" / "best.ckpt", "out") == Path("out")
