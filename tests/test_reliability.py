"""Training runs that repeat: the same seed gives the same weights, a run killed mid-epoch
resumes bit-exact, and two DDP processes train what one process evaluates."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers.cli import CONFIG, QUIET, Started, cli, cli_command, free_port, in_process, only_run
from helpers.cli import fit_args as cli_fit_args
from helpers.mnist import write_mnist
from helpers.runs import assert_same_run

from mnist_lightning.checkpoint import load_checkpoint
from mnist_lightning.report import run_scalars

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("uninterrupted")]  # each trains through the installed CLI


def fit_args(data_dir: Path, *extra: str) -> list[str]:
    return cli_fit_args(data_dir, "--trainer.deterministic", "true", "--seed_everything", "7", *QUIET, *extra)


@pytest.fixture(scope="module")
def bigger_mnist(tmp_path_factory) -> Path:
    """Enough synthetic data for a kill to land inside an epoch."""
    data_dir = tmp_path_factory.mktemp("bigger")
    write_mnist(data_dir / "MNIST" / "raw", n_train=3000)
    return data_dir


@pytest.fixture(scope="module")
def uninterrupted(bigger_mnist, tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("uninterrupted")
    result = cli(*fit_args(bigger_mnist, "--trainer.max_epochs", "2"), cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run(cwd)


def test_same_seed_gives_identical_weights_and_metrics(bigger_mnist, uninterrupted, tmp_path):
    result = cli(*fit_args(bigger_mnist, "--trainer.max_epochs", "2"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(uninterrupted, only_run(tmp_path))


def test_sigkill_mid_epoch_then_resume_is_bit_exact(bigger_mnist, uninterrupted, tmp_path):
    process = subprocess.Popen(
        cli_command(*fit_args(bigger_mnist, "--trainer.max_epochs", "2")),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while (
        not list(tmp_path.glob("runs/mnist/*/checkpoints/last.ckpt"))
        and process.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    time.sleep(0.7)  # into the second (last) epoch
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    last = only_run(tmp_path) / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["epoch"] == 0  # it really was cut short

    result = cli(*fit_args(bigger_mnist, "--trainer.max_epochs", "2", "--ckpt_path", str(last)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(uninterrupted, only_run(tmp_path))  # the same run, continued


def test_two_process_ddp_matches_one_process_evaluation(synthetic_mnist, tmp_path):
    data_dir = synthetic_mnist[0]
    result = cli(
        *fit_args(data_dir, "-c", str(CONFIG.with_name("ddp.yaml")), "--trainer.max_epochs", "2"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(tmp_path)  # one run directory, written by rank 0 only
    ddp_scalars = run_scalars(run)
    in_process("validate", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), *QUIET, cwd=tmp_path)
    single = run_scalars(only_run(tmp_path))  # one process's validate adds its results to the same run
    assert ddp_scalars["accuracy/val"][-1] == single["accuracy/validate"][0]
    assert ddp_scalars["loss/val"][-1] == pytest.approx(single["loss/validate"][0], rel=1e-5)


def test_two_nodes_on_one_machine_train_one_run(synthetic_mnist, tmp_path):
    """What a 2-node cluster job runs: one process a node, each told its NODE_RANK; one run folder,
    one set of checkpoints, and the metrics a single process computes from them."""
    port = str(free_port())
    nodes = [
        Started(
            *fit_args(
                synthetic_mnist[0],
                "--trainer.max_epochs",
                "2",
                "--trainer.num_nodes",
                "2",
                "--trainer.devices",
                "1",
                "--trainer.accelerator",
                "cpu",
                "--trainer.strategy",
                "ddp",
            ),
            cwd=tmp_path,
            env={"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "NODE_RANK": str(rank), "WORLD_SIZE": "2"},
        )
        for rank in (0, 1)
    ]
    results = [node.finish(timeout=600) for node in nodes]
    assert [r.returncode for r in results] == [0, 0], results[1].stderr[-3000:]
    run = only_run(tmp_path)
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert len(checkpoints) == 2 and "last.ckpt" in checkpoints, checkpoints
    logged = run_scalars(run)
    in_process("validate", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), *QUIET, cwd=tmp_path)
    single = run_scalars(only_run(tmp_path))
    assert logged["accuracy/val"][-1] == single["accuracy/validate"][0] and logged["accuracy/val"][-1] > 0.5
    assert logged["loss/val"][-1] == pytest.approx(single["loss/validate"][0], rel=1e-5)
