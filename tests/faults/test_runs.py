"""Fault table: runs started together, resumed with new settings, stopped by a NaN, reported twice."""

from __future__ import annotations

import fcntl
import json
import shutil
import signal
from pathlib import Path

import pytest
import torch
from helpers.cli import CONFIGS, QUIET, Started, runs_in
from helpers.faults import Row, Scratch, check_refused

GROUP = "runs"
pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parents[1]


def test_two_fits_at_the_same_moment(scratch: Scratch, record):
    """two `fit` started at the same moment in one folder"""
    cwd = scratch.folder("twin")
    fits = [
        Started(*scratch.fit_args("--trainer.max_epochs", "1", "--seed_everything", str(i)), cwd=cwd) for i in (1, 2)
    ]
    assert [fit.finish().returncode for fit in fits] == [0, 0]
    runs = runs_in(cwd)
    assert len(runs) == 2, runs
    seeds = sorted((run / "config.yaml").read_text().split("seed_everything: ")[1].split()[0] for run in runs)
    assert seeds == ["1", "2"] and all((run / "checkpoints" / "last.ckpt").is_file() for run in runs)
    record(
        Row(
            "two `mnist-lightning fit` at once, same folder",
            0,
            "(both train)",
            f"two runs ({runs[0].name}, {runs[1].name}), each with its own config and last.ckpt",
        )
    )


def _resumable(scratch: Scratch, name: str, config: str, *extra: str) -> tuple[Path, Path]:
    cwd = scratch.folder(name)
    result = scratch.cli(
        "fit",
        "-c",
        str(CONFIGS / config),
        "--data.data_dir",
        str(scratch.data),
        "--trainer.max_epochs",
        "1",
        "--trainer.check_val_every_n_epoch",
        "1",
        "--trainer.log_every_n_steps",
        "1",
        *QUIET,
        *extra,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = runs_in(cwd)
    return cwd, run


def _resume(run: Path, *extra: str, epochs: int = 2) -> list[str]:
    last = str(run / "checkpoints" / "last.ckpt")
    return [
        "fit",
        "-c",
        str(run / "config.yaml"),
        "--ckpt_path",
        last,
        "--trainer.max_epochs",
        str(epochs),
        *extra,
        *QUIET,
    ]


def test_resume_with_new_settings(scratch: Scratch, record):
    """`fit --ckpt_path last.ckpt` with a new learning rate, batch size and precision"""
    cwd, run = _resumable(scratch, "lr", "mnist.yaml")
    args = _resume(run, "--model.lr", "0.01", "--data.batch_size", "16", "--trainer.precision", "bf16-mixed")
    result = scratch.cli(*args, cwd=cwd)
    assert result.returncode == 0 and "Resuming with new settings: lr 0.001 -> 0.01" in result.stderr, result.stderr[
        -2000:
    ]
    said = next((line for line in result.stderr.splitlines() if "new data and trainer settings" in line), "")
    assert "batch_size 128 -> 16" in said and "-> bf16-mixed" in said, result.stderr[-2000:]
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["optimizer_states"][0]["param_groups"][0]["lr"] == 0.01 and saved["hyper_parameters"]["lr"] == 0.01
    record(
        Row(
            scratch.shown(args),
            0,
            "Resuming with new settings: lr 0.001 -> 0.01; ... data and trainer settings: "
            "batch_size 128 -> 16, precision ...",
            "the same run, trained on with the new settings",
        )
    )


def test_resume_with_fewer_epochs_than_done(scratch: Scratch, record):
    """`fit --ckpt_path last.ckpt --trainer.max_epochs` below the epochs the run has trained"""
    cwd, run = _resumable(scratch, "fewer", "mnist.yaml", "--trainer.max_epochs", "2")
    before = (run / "config.yaml").read_text()
    record(
        check_refused(
            scratch,
            _resume(run, epochs=1),
            1,
            "max_epochs 1",
            "2 epoch",
            cwd=cwd,
            survived="runs: the run and its config.yaml untouched",
        )
    )
    assert (run / "config.yaml").read_text() == before


@pytest.fixture(scope="module")
def cycle_run(scratch: Scratch) -> tuple[Path, Path]:
    """One epoch of configs/fast.yaml (a 1cycle schedule), for both 1cycle rows: the refused resume
    leaves it as it was, the other continues it."""
    return _resumable(scratch, "cycle", "fast.yaml")


def test_a_1cycle_run_resumed_without_it(scratch: Scratch, record, cycle_run: tuple[Path, Path]):
    """a 1cycle run resumed with one_cycle false"""
    cwd, run = cycle_run
    before = (run / "checkpoints" / "last.ckpt").read_bytes()
    done = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] + 1  # 1, or 2 once resumed
    args = _resume(run, "--model.one_cycle", "false", epochs=done + 1)
    record(check_refused(scratch, args, 1, "one_cycle true", cwd=cwd, survived="runs: the run untouched"))
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == before


def test_a_1cycle_run_resumed_with_more_epochs(scratch: Scratch, record, cycle_run: tuple[Path, Path]):
    """a 1cycle run resumed with more epochs"""
    cwd, run = cycle_run
    args = _resume(run)
    result = scratch.cli(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(x for x in result.stderr.splitlines() if "1cycle schedule" in x)
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    schedule = saved["lr_schedulers"][0]
    assert saved["epoch"] == 1 and schedule["total_steps"] == schedule["last_epoch"]  # it ended where it should
    record(Row(scratch.shown(args), 0, line.strip(), "the same run, 2 epochs, schedule rebuilt for 2"))


def test_nan_loss_in_epoch_2(scratch: Scratch, record):
    """NaN loss in epoch 2"""
    cwd = scratch.folder("nan")
    args = scratch.fit_args("--trainer.max_epochs", "3", "--trainer.callbacks+=helpers.poison.PoisonWeights")
    record(
        check_refused(
            scratch,
            args,
            1,
            "became NaN or infinite in epoch 1",
            "last good checkpoint, last.ckpt, is intact",
            cwd=cwd,
            env={"PYTHONPATH": str(TESTS)},
            survived="runs: last.ckpt of epoch 1",
        )
    )
    (run,) = runs_in(cwd)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 0 and all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())


def test_a_report_written_twice_beside_a_checkpoint(scratch: Scratch, record):
    """`report` of a checkpoint outside a run, twice, beside someone's own report/ folder"""
    home = scratch.folder("home")
    (home / "models").mkdir()
    ckpt = home / "models" / "mine.ckpt"
    ckpt.write_bytes(scratch.best.read_bytes())
    theirs = home / "report"  # where the report used to go: the checkpoint's grandparent
    theirs.mkdir()
    (theirs / "metrics.json").write_text('{"mine": true}')
    (theirs / "learning_curves.png").write_bytes(b"my own figure")
    args = ["report", "--ckpt_path", str(ckpt), *QUIET]
    ours = home / "models" / "mine-report"
    for attempt in range(2):  # the second replaces what the first wrote, and nothing else
        result = scratch.cli(*args, cwd=home / "models")
        assert result.returncode == 0, result.stderr[-2000:]
        (ours / "notes.txt").write_text("mine")
    assert json.loads((ours / "metrics.json").read_text())["checkpoint"] == str(ckpt)
    assert (ours / "notes.txt").read_text() == "mine" and not (
        ours / "learning_curves.png"
    ).exists()  # no curves: no run
    assert (theirs / "metrics.json").read_text() == '{"mine": true}' and (theirs / "learning_curves.png").is_file()
    record(
        Row(
            scratch.shown(args).replace("home/", ""),
            0,
            "Report written to models/mine-report",
            "the user's report/ untouched; the second report replaced the first, the folder's other files kept",
        )
    )


def _held(lock: Path) -> bool:
    """Whether a process holds the run's lock (an flock, which dies with its holder)."""
    if not lock.is_file():
        return False
    with lock.open() as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(file, fcntl.LOCK_UN)
        return False


def test_a_second_fit_of_a_run_being_written(scratch: Scratch, record):
    """a second `fit --ckpt_path` of a run that another fit is writing"""
    cwd, run = _resumable(scratch, "held", "mnist.yaml")
    first = Started(*_resume(run, "--data.data_dir", str(scratch.big_data), epochs=50), cwd=cwd)
    first.wait_for(lambda: _held(run / ".lock"))
    first.process.send_signal(signal.SIGSTOP)  # paused, it holds its lock all the same and leaves the CPU to the second
    args = _resume(run, epochs=100)  # more than the first can have trained
    try:
        row = check_refused(
            scratch,
            args,
            1,
            str(run),
            f"process {first.process.pid}",
            cwd=cwd,
            survived="runs: the run, written by the first",
        )
    finally:
        first.process.send_signal(signal.SIGCONT)
        first.stop(signal.SIGTERM)
    record(Row(scratch.shown(args), row.exit, row.says.replace(str(first.process.pid), "PID"), row.survived))


def test_a_moved_run_resumed(scratch: Scratch, record):
    """a run folder moved elsewhere, then resumed"""
    _, run = _resumable(scratch, "before-move", "mnist.yaml")
    moved = scratch.folder("after-move") / "runs" / "mnist" / run.name
    shutil.move(run, moved)
    args = _resume(moved, epochs=3)
    elsewhere = moved.parents[2] / "elsewhere"  # the saved folder's path now leads nowhere
    elsewhere.mkdir()
    result = scratch.cli(*args, cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-2000:]
    best = [p.name for p in (moved / "checkpoints").glob("epoch*.ckpt")]
    assert len(best) == 1, best  # the best of the three epochs, not one best per folder it lived in
    record(Row(scratch.shown(args), 0, "(trains on)", f"one best checkpoint ({best[0]}) and last.ckpt"))
