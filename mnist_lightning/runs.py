"""Run directories: one per training run, named by when it started, claimed atomically."""

from __future__ import annotations

import itertools
import shutil
import time
from pathlib import Path

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

RUNS_DIR = "runs"
# The run directories this process created, so that a command that fails before it
# saved anything can remove its empty run (see discard_empty_runs).
CLAIMED: list[Path] = []
ACTIVE: list[Path] = []  # the existing run a command continues (resume) or adds results to


class RunLogger(TensorBoardLogger):
    """TensorBoard's logger, with each new run in `<save_dir>/<name>/<start time>`.

    Names like 2026-12-01_18-40-12 sort in creation order and say when a run began.
    The directory is claimed with one mkdir, which only one process can win: two runs
    started in the same second get `..._2`, never the same folder. Under DDP only rank 0
    claims; Lightning sends rank 0's directory to the other ranks.
    """

    def _get_next_version(self) -> str:  # type: ignore[override]  # a name, not a number
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
        if rank_zero_only.rank != 0:
            return stamp
        root = Path(self.root_dir)
        root.mkdir(parents=True, exist_ok=True)
        for n in itertools.count(1):
            run = root / (stamp if n == 1 else f"{stamp}_{n}")
            try:
                run.mkdir()
            except FileExistsError:
                continue
            CLAIMED.append(run)
            return run.name
        raise AssertionError("unreachable")


def run_of_checkpoint(ckpt_path: str | Path) -> Path | None:
    """The run directory a checkpoint was saved in (`<run>/checkpoints/x.ckpt`, or a
    SLURM requeue's `<run>/hpc_ckpt_N.ckpt`), or None for a checkpoint kept elsewhere."""
    path = Path(ckpt_path).resolve()
    if path.parent.name == "checkpoints":
        return path.parent.parent
    if (path.parent / "config.yaml").is_file():
        return path.parent
    return None


def discard_empty_runs() -> None:
    """Removes the runs this process created that hold no checkpoint: a failed command leaves no run behind."""
    for run in CLAIMED:
        if run.is_dir() and not any(run.rglob("*.ckpt")):
            shutil.rmtree(run, ignore_errors=True)


def best_checkpoint_hint(save_dir: str | Path = RUNS_DIR) -> Path | None:
    """The best checkpoint of the run that saved last under save_dir (or its last.ckpt when it has no best)."""
    newest_file = max(Path(save_dir).glob("*/*/checkpoints/*.ckpt"), key=lambda p: p.stat().st_mtime, default=None)
    if newest_file is None:
        return None
    newest = newest_file.parent.parent
    checkpoints = sorted((newest / "checkpoints").glob("*.ckpt"))
    best = [c for c in checkpoints if c.name != "last.ckpt"]
    return (best or checkpoints)[-1]
