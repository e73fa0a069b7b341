"""Fault table: settings and config files that must be refused, and one that must work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.cli import CONFIG, QUIET, runs_in
from helpers.faults import MEMORY_CAP_KB, Row, Scratch, check_refused

GROUP = "settings"
pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("options", "status", "fragment"),
    [
        pytest.param(["--data.batch_sise", "64"], 2, "batch_sise", id="an unknown option"),
        pytest.param(["--data.batch_size", "many"], 2, "batch_size", id="a wrong type"),
        pytest.param(
            ["--data.batch_size", "0"],
            2,
            "--data.batch_size 0 is out of range: it must be batch_size>0",
            id="batch size 0",
        ),
        pytest.param(["--model.lr", "-0.1"], 2, "it must be lr>0", id="negative learning rate"),
        pytest.param(["--data.val_split", "1.5"], 2, "it must be val_split>0 and val_split<1", id="val_split 1.5"),
        pytest.param(
            ["--data.val_split", "0.001"],
            1,
            "leaves 0 for validation",
            id="val_split so small that no image is left for validation",
        ),
        pytest.param(["--trainer.max_epochs", "-2"], 1, "max_epochs", id="--trainer.max_epochs -2"),
    ],
)
def test_refused_setting(scratch: Scratch, record, options, status, fragment):
    record(check_refused(scratch, scratch.fit_args(*options), status, fragment))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_a_gpu_without_a_gpu(scratch: Scratch, record):
    """--trainer.accelerator gpu without a GPU"""
    record(check_refused(scratch, scratch.fit_args("--trainer.accelerator", "gpu"), 1, "gpu", "--trainer"))


def test_bf16_with_gradient_clipping(scratch: Scratch, record):
    """bf16-mixed with gradient clipping"""
    cwd = scratch.folder("clip")
    args = scratch.fit_args(
        "--trainer.max_epochs", "1", "--trainer.precision", "bf16-mixed", "--trainer.gradient_clip_val", "1"
    )
    result = scratch.cli(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (runs_in(cwd)[0] / "checkpoints" / "last.ckpt").is_file()
    record(Row(scratch.shown(args), 0, "(trains)", "a run with last.ckpt"))


def test_a_yaml_syntax_error(scratch: Scratch, record):
    """a config file with a YAML syntax error"""
    bad = scratch.root / "bad.yaml"
    bad.write_text("trainer:\n  max_epochs: [1\n")
    record(check_refused(scratch, ["fit", "-c", str(bad)], 1, "bad.yaml", "line 3"))


def test_a_config_file_that_does_not_exist(scratch: Scratch, record):
    """a config file that does not exist"""
    record(check_refused(scratch, ["fit", "-c", str(scratch.root / "nope.yaml")], 2, "nope.yaml"))


def test_a_batch_too_big_for_memory(scratch: Scratch, record, million_test_images: Path):
    """a batch too big for memory, under `ulimit -v`"""
    args = [
        "test",
        "--ckpt_path",
        str(scratch.best),
        *QUIET,
        "--data.data_dir",
        str(million_test_images),
        "--data.eval_batch_size",
        "1000000",
    ]
    row = check_refused(scratch, args, 1, "out of memory", "--data.eval_batch_size", memory_kb=MEMORY_CAP_KB)
    shown = row.command.replace(str(million_test_images), "million")
    record(Row(f"{shown}  (ulimit -v {MEMORY_CAP_KB})", row.exit, row.says, row.survived))


@pytest.fixture(scope="module")
def standardized(scratch: Scratch) -> Path:
    """A checkpoint trained with --data.standardize true (one epoch)."""
    cwd = scratch.folder("standardized")
    result = scratch.cli(*scratch.fit_args("--trainer.max_epochs", "1", "--data.standardize", "true"), cwd=cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    return runs_in(cwd)[0] / "checkpoints" / "last.ckpt"


def test_an_export_that_would_change_the_scaling(scratch: Scratch, record, standardized: Path):
    """`export -c configs/mnist.yaml` of a checkpoint trained with --data.standardize true (the other
    evaluations: tests/test_cli.py)"""
    command = "export"
    args = [command, "-c", str(CONFIG), "--ckpt_path", str(standardized), *QUIET]
    row = check_refused(scratch, args, 1, "standardize", "true", "false", survived="runs: nothing new")
    record(Row(row.command.replace(str(standardized.parents[4]) + "/", ""), row.exit, row.says, row.survived))


def test_an_evaluation_takes_the_scaling_from_its_checkpoint(scratch: Scratch, record, standardized: Path):
    """`export` of a checkpoint trained with --data.standardize true, no config"""
    out = scratch.folder("scaled") / "m.pt2"
    args = ["export", "--ckpt_path", str(standardized), "--output", str(out), "--format", "pt2"]
    result = scratch.cli(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    from mnist_lightning.export import read_pt2_metadata

    assert (
        read_pt2_metadata(out)["scaling"] == f"pixels * {1 / (255 * 0.3081)!r} + {-0.1307 / 0.3081!r}, inside the graph"
    )
    record(
        Row(
            "mnist-lightning export --ckpt_path standardized.ckpt --format pt2",
            0,
            "(exports)",
            "the graph scales as in training: (x/255 - 0.1307) / 0.3081",
        )
    )


def test_a_broken_config_given_with_an_equals_sign(scratch: Scratch, record):
    """`fit --config=bad.yaml`, a config file with a YAML syntax error"""
    bad = scratch.root / "bad.yaml"
    bad.write_text("trainer:\n  max_epochs: [1\n")
    record(check_refused(scratch, ["fit", f"--config={bad}"], 1, "bad.yaml", "line 3"))


def test_debugging_switched_off_with_zero(scratch: Scratch, record):
    """MNIST_LIGHTNING_DEBUG=0 (off, as 0 says)"""
    args = ["test", "--ckpt_path", str(scratch.root / "nowhere.ckpt"), *QUIET]
    row = check_refused(scratch, args, 1, "does not exist", env={"MNIST_LIGHTNING_DEBUG": "0"})
    record(Row("MNIST_LIGHTNING_DEBUG=0 " + row.command, row.exit, row.says, row.survived))


def test_serve_on_an_address_litserve_does_not_listen_on(scratch: Scratch, record):
    """`serve --host` a LAN address (the accepted ones: tests/test_serve.py)"""
    record(
        check_refused(
            scratch,
            ["serve", "--ckpt_path", str(scratch.best), "--host", "192.168.1.5"],
            1,
            "--host 192.168.1.5",
            "0.0.0.0",
        )
    )
