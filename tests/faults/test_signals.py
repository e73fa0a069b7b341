"""Fault table: a stopping signal during a command, and SLURM's preemption."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from helpers.cli import QUIET, Started, cli_command, last_line, runs_in
from helpers.faults import Row, Scratch, one_line

GROUP = "signals"
pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parents[1]


def _long_fit(scratch: Scratch, data=None) -> list[str]:
    """A fit that would run for minutes: there is time to stop it."""
    return scratch.fit_args("--trainer.max_epochs", "50", data=data)


@pytest.mark.parametrize(
    "signum",
    [signal.SIGTERM, signal.SIGINT, signal.SIGHUP],
    ids=[f"{s.name} during `fit`" for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)],
)
def test_a_stopping_signal_during_fit(scratch: Scratch, record, signum: signal.Signals):
    cwd = scratch.folder(f"signal {signum}")  # a space in the path: the printed command must still paste
    fit = Started(*_long_fit(scratch), cwd=cwd)
    fit.wait_for(lambda: bool(list(cwd.glob("runs/mnist/*/checkpoints/last.ckpt"))))
    result = fit.stop(signum)
    one_line(result, 128 + signum, f"stopped by {signum.name}", "last.ckpt", "Resume: mnist-lightning fit -c")
    (run,) = runs_in(cwd)
    done = int(last_line(result).split(" holds the ")[1].split()[0])  # finished epochs
    command = last_line(result).split("Resume: ")[1]
    path = f"{Path(cli_command()[0]).parent}:{os.environ['PATH']}"  # the installed command, as in the user's shell
    resumed = subprocess.run(
        f"{command} --trainer.max_epochs {done + 1} {' '.join(QUIET)}",
        shell=True,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PATH": path},
    )
    assert resumed.returncode == 0 and runs_in(cwd) == [run], resumed.stderr[-2000:]
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == done  # one more epoch, same run
    record(
        Row(
            f"kill -{signum.name[3:]} during `mnist-lightning fit` in a folder with a space",
            result.returncode,
            last_line(result).replace(str(cwd) + "/", ""),
            "last.ckpt of the last epoch; the printed command, pasted into a shell, resumes it in the same run",
        )
    )


def test_sigterm_before_the_first_epoch_ends(scratch: Scratch, record):
    """SIGTERM before the first epoch ends"""
    cwd = scratch.folder("early")
    fit = Started(*_long_fit(scratch, data=scratch.big_data), cwd=cwd)  # a first epoch of 169 steps
    fit.wait_for(lambda: bool(list(cwd.glob("runs/mnist/*/events*"))))
    result = fit.stop(signal.SIGTERM)
    one_line(result, 143, "before the first epoch ended; nothing was saved")
    assert not runs_in(cwd), "an empty run was left"
    record(Row("kill -TERM during the first epoch of `fit`", 143, last_line(result), "no run folder left"))


def test_sigterm_during_report(scratch: Scratch, record, million_test_images: Path):
    """SIGTERM during `report`"""
    cwd = scratch.folder("report")
    report = Started(
        "report",
        "--ckpt_path",
        str(scratch.best),
        "--data.data_dir",
        str(million_test_images),
        "--output_dir",
        str(cwd / "report"),
        "--trainer.enable_model_summary",
        "false",
        cwd=cwd,
    )
    report.wait_for(lambda: "Testing" in report.stdout)  # the progress bar: the test set is loaded, testing runs
    result = report.stop(signal.SIGTERM)
    one_line(result, 143, "stopped by SIGTERM", "report did not finish")
    assert not (cwd / "report").exists()
    record(Row("kill -TERM during `mnist-lightning report` (1M test images)", 143, last_line(result), "no half report"))


def test_slurm_preemption(scratch: Scratch, record):
    """SLURM preemption: SIGUSR1, then SIGTERM, then the requeued job"""
    cwd = scratch.folder("slurm")
    bin_dir = cwd / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {cwd}/scontrol.log\n')
    (bin_dir / "scontrol").chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_NTASKS": "1",
        "SLURM_JOB_NAME": "mnist",
        "SLURM_JOB_ID": "4242",
        "SLURM_NODELIST": "localhost",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
    }
    args = scratch.fit_args("--trainer.max_epochs", "2", data=scratch.big_data)
    fit = Started(*args, cwd=cwd, env=env)
    run = cwd / "runs" / "mnist" / "slurm-4242"
    fit.wait_for(lambda: (run / "checkpoints" / "last.ckpt").is_file())
    fit.process.send_signal(signal.SIGUSR1)
    fit.wait_for(lambda: bool(list(run.glob("hpc_ckpt_*.ckpt"))) and (cwd / "scontrol.log").is_file())
    result = fit.stop(signal.SIGTERM)
    one_line(result, 143, "stopped by SIGTERM", "requeue")
    assert (cwd / "scontrol.log").read_text().split() == ["requeue", "4242"]
    requeued = scratch.cli(*args, cwd=cwd, env=env)
    assert requeued.returncode == 0, requeued.stderr[-2000:]
    assert "hpc_ckpt_1.ckpt" in requeued.stderr and runs_in(cwd) == [run]
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    record(
        Row(
            "SLURM job: kill -USR1, then kill -TERM, then the same command again (requeued)",
            143,
            last_line(result),
            "hpc_ckpt_1.ckpt; `scontrol requeue 4242` called; the requeued job resumed it in the same run to the end",
        )
    )
