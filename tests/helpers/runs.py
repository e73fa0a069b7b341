"""Comparing two training runs bit for bit."""

from __future__ import annotations

from pathlib import Path

import torch

from mnist_lightning.checkpoint import load_checkpoint
from mnist_lightning.report import run_scalars


def final_state(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, list[float]]]:
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    return checkpoint["state_dict"], run_scalars(run_dir)


def assert_same_run(a: Path, b: Path) -> None:
    (weights_a, scalars_a), (weights_b, scalars_b) = final_state(a), final_state(b)
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name  # bit for bit
    for tag in ("loss/val", "accuracy/val"):
        assert scalars_a[tag][-1] == scalars_b[tag][-1], tag
