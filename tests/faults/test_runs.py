"""Fault table: runs started together, resumed with new settings, stopped by a NaN, reported twice."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.cli import CONFIGS, QUIET, Started, runs_in
from helpers.faults import Row, Scratch, refused

GROUP = "runs"
pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parents[1]


def test_two_fits_at_the_same_moment(scratch: Scratch, record):
    """two `fit` started at the same moment in one folder"""
    cwd = scratch.folder("twin")
    fits = [Started(*scratch.fit_args("--trainer.max_epochs", "1", "--seed_everything", str(i)), cwd=cwd) for i in (1, 2)]
    assert [fit.finish().returncode for fit in fits] == [0, 0]
    runs = runs_in(cwd)
    assert len(runs) == 2, runs
    seeds = sorted((run / "config.yaml").read_text().split("seed_everything: ")[1].split()[0] for run in runs)
    assert seeds == ["1", "2"] and all((run / "checkpoints" / "last.ckpt").is_file() for run in runs)
    record(Row("two `mnist-lightning fit` at once, same folder", 0, "(both train)",
               f"two runs ({runs[0].name}, {runs[1].name}), each with its own config and last.ckpt"))  # fmt: skip


def _resumable(scratch: Scratch, name: str, config: str, *extra: str) -> tuple[Path, Path]:
    cwd = scratch.folder(name)
    result = scratch.cli("fit", "-c", str(CONFIGS / config), "--data.data_dir", str(scratch.data), "--trainer.max_epochs",
                         "1", "--trainer.check_val_every_n_epoch", "1", "--trainer.log_every_n_steps", "1", *QUIET, *extra,
                         cwd=cwd)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = runs_in(cwd)
    return cwd, run


def _resume(run: Path, *extra: str) -> list[str]:
    return ["fit", "-c", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
            "--trainer.max_epochs", "2", *extra, *QUIET]  # fmt: skip


def test_resume_with_a_new_learning_rate(scratch: Scratch, record):
    """`fit --ckpt_path last.ckpt --model.lr 0.01`"""
    cwd, run = _resumable(scratch, "lr", "mnist.yaml")
    args = _resume(run, "--model.lr", "0.01")
    result = scratch.cli(*args, cwd=cwd)
    assert result.returncode == 0 and "Resuming with new settings: lr 0.001 -> 0.01" in result.stderr, result.stderr[-2000:]
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["optimizer_states"][0]["param_groups"][0]["lr"] == 0.01 and saved["hyper_parameters"]["lr"] == 0.01
    record(Row(scratch.shown(args), 0, "Resuming with new settings: lr 0.001 -> 0.01", "the same run, trained on at lr 0.01"))


def test_a_1cycle_run_resumed_with_more_epochs(scratch: Scratch, record):
    """a 1cycle run resumed with more epochs"""
    cwd, run = _resumable(scratch, "cycle", "fast.yaml")
    args = _resume(run)
    result = scratch.cli(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(x for x in result.stderr.splitlines() if "1cycle schedule" in x)
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    schedule = saved["lr_schedulers"][0]
    assert saved["epoch"] == 1 and schedule["total_steps"] == schedule["last_epoch"]  # it ended where it should
    record(Row(scratch.shown(args), 0, line.strip(), "the same run, 2 epochs, schedule rebuilt for 2"))


def test_a_1cycle_run_resumed_without_it(scratch: Scratch, record):
    """a 1cycle run resumed with one_cycle false"""
    cwd, run = _resumable(scratch, "toggle", "fast.yaml")
    before = (run / "checkpoints" / "last.ckpt").read_bytes()
    record(refused(scratch, _resume(run, "--model.one_cycle", "false"), 1, "one_cycle true", cwd=cwd,
                   survived="runs: the run untouched"))  # fmt: skip
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == before


def test_nan_loss_in_epoch_2(scratch: Scratch, record):
    """NaN loss in epoch 2"""
    cwd = scratch.folder("nan")
    args = scratch.fit_args("--trainer.max_epochs", "3", "--trainer.callbacks+=helpers.poison.PoisonWeights")
    record(refused(scratch, args, 1, "became NaN or infinite in epoch 1", "last good checkpoint, last.ckpt, is intact",
                   cwd=cwd, env={"PYTHONPATH": str(TESTS)}, survived="runs: last.ckpt of epoch 1"))  # fmt: skip
    (run,) = runs_in(cwd)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 0 and all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())


def test_a_report_written_twice_into_one_folder(scratch: Scratch, record):
    """evaluating on a run: a report written twice into one folder"""
    out = scratch.folder("twice")
    loose = out / "model.ckpt"  # outside a run: no curves to draw
    (out / "learning_curves.png").write_bytes(b"an older report's curves")
    loose.write_bytes(scratch.best.read_bytes())
    args = ["report", "--ckpt_path", str(loose), "--output_dir", str(out), *QUIET]
    result = scratch.cli(*args, cwd=out)
    assert result.returncode == 0 and not (out / "learning_curves.png").exists(), result.stderr[-2000:]
    record(Row(scratch.shown(args), 0, "No training curves ... learning_curves.png skipped", "no stale learning_curves.png"))
