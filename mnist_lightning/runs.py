"""Run directories: one per training run, named by when it started, claimed atomically."""

from __future__ import annotations

import fcntl
import itertools
import os
import time
from pathlib import Path

from lightning.fabric.plugins.environments import SLURMEnvironment

from mnist_lightning.errors import UserError

RUNS_DIR = "runs"


def stamp() -> str:
    """A run's name: when it started, e.g. 2026-12-01_18-40-12."""
    return time.strftime("%Y-%m-%d_%H-%M-%S")


def claim(root: Path) -> tuple[Path, list[Path]]:
    """A new run folder under root, named by the time, and the folders above it this made.

    Made with one mkdir, which only one process can win: two runs started in the same
    second get `..._2`, never the same folder.
    """
    created = [folder for folder in (root, root.parent) if not folder.exists()]  # deepest first
    root.mkdir(parents=True, exist_ok=True)
    name = stamp()
    for n in itertools.count(1):
        run = root / (name if n == 1 else f"{name}_{n}")
        try:
            run.mkdir()
        except FileExistsError:
            continue
        return run, created
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


def hold(run: Path) -> int:
    """Locks the run folder for this process, or UserError naming the process that holds it.

    An flock on <run>/.lock, which the OS releases when the process ends, however it ends;
    the returned descriptor must stay open while the run is written.
    """
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise UserError(
            f"the run {run} is being written by process {holder}; wait for it to end "
            "(two processes writing one run would mix their checkpoints and curves)"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def report_dir(ckpt_path: str | Path, output_dir: str | Path | None = None) -> Path:
    """Where `report` writes: output_dir, else report/ in the checkpoint's run, else <stem>-report/ beside it."""
    if output_dir:
        return Path(output_dir)
    run = run_of_checkpoint(ckpt_path)
    return run / "report" if run else Path(ckpt_path).with_name(f"{Path(ckpt_path).stem}-report")


def best_checkpoint_hint(save_dir: str | Path = RUNS_DIR) -> Path | None:
    """The best checkpoint of the run that saved last under save_dir (or its last.ckpt when it has no best)."""
    files = [p for p in Path(save_dir).glob("*/*/checkpoints/*.ckpt") if p.is_file()]  # no folders, no dangling links
    newest_file = max(files, key=lambda p: p.stat().st_mtime, default=None)
    if newest_file is None:
        return None
    newest = newest_file.parent.parent
    checkpoints = sorted(p for p in (newest / "checkpoints").glob("*.ckpt") if p.is_file())
    best = [c for c in checkpoints if c.name != "last.ckpt"]
    return (best or checkpoints)[-1]


def is_first_process() -> bool:
    """Whether this is rank 0 of a job, from the variables launchers set (ranks are known before the Trainer)."""
    return all(
        int(os.environ.get(name, "0")) == 0
        for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")
    )


def slurm_run(root: Path) -> Path | None:
    """A SLURM job's run, root/slurm-<job id>, or None outside SLURM: a requeued job starts again
    under the same id and must find its run, where Lightning's requeue saved hpc_ckpt_N.ckpt."""
    if not SLURMEnvironment.detect():
        return None
    job = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID", "0"))
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return root / (f"slurm-{job}" + (f"_{task}" if task else ""))


def __getattr__(name: str) -> object:
    # Runs made before the logger moved to logger.py name it here in their config.yaml.
    if name == "RunLogger":
        from mnist_lightning.logger import RunLogger

        return RunLogger
    raise AttributeError(f"module 'mnist_lightning.runs' has no attribute {name!r}")
