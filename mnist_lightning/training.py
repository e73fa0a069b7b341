"""The Trainer `mnist-lightning fit` builds, for Python: one call gives a run its folder, its
TensorBoard logger, its checkpoints and the command line's CPU settings."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mnist_lightning import quiet
from mnist_lightning.callbacks import (
    NewSettingsOnResume,
    RNGState,
    RunCheckpoint,
    RunProgressBar,
    SlurmRequeue,
    StopOnNonFiniteLoss,
    StopOnSignal,
    TestResults,
)
from mnist_lightning.files import write_bytes
from mnist_lightning.host import tune_host
from mnist_lightning.logger import RunLayout, RunLogger
from mnist_lightning.runs import RUNS_DIR
from mnist_lightning.summaries import FitSummary, LayerSummary


class AtomicCheckpointIO(TorchCheckpointIO):
    """Serialises each checkpoint in memory, writes it to a temporary file beside its
    target, then renames it into place.

    Lightning's writer stages the file in the system temp directory and moves it from
    there (a copy, when /tmp is another file system: a kill leaves last.ckpt cut short);
    and torch.save reports a full disk as a RuntimeError, Python's own writes as OSError.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_bytes(path, buffer.getbuffer())


def callbacks(requeue_signals: list[int] | None = None) -> list[L.Callback]:
    """The best checkpoint by accuracy/val and last.ckpt after every epoch, the layer summary, exact
    resumes with new settings, the stops on a NaN loss and on a signal, SLURM's requeue, the test's predictions,
    TensorBoard's layout and settings, the end-of-fit block.

    Args:
        requeue_signals: Where the command notes SLURM's requeue signal (failures.Command.requeue).
    """
    return [
        RunCheckpoint(
            monitor="accuracy/val",
            mode="max",
            filename="epoch{epoch:02d}-val_acc{accuracy/val:.4f}",
            auto_insert_metric_name=False,
        ),
        # Not save_last=True: Lightning 2.6 rewrites that only in epochs that set a new best.
        RunCheckpoint(filename="last", enable_version_counter=False),
        LayerSummary(),
        RNGState(),
        NewSettingsOnResume(),
        StopOnNonFiniteLoss(),
        StopOnSignal(),
        TestResults(),
        SlurmRequeue(requeue_signals if requeue_signals is not None else []),
        RunLayout(),
        FitSummary(),
    ]


def logger(runs_dir: str | Path = RUNS_DIR, name: str = "mnist") -> RunLogger:
    """TensorBoard's logger writing each run into `<runs_dir>/<name>/<start time>`."""
    return RunLogger(str(runs_dir), name=name, default_hp_metric=False)


def with_run_progress_bar(trainer: L.Trainer) -> L.Trainer:
    """Lightning's own progress bar (added when none is given) swapped for RunProgressBar."""
    trainer.callbacks = [RunProgressBar() if type(c) is TQDMProgressBar else c for c in trainer.callbacks]
    return trainer


def trainer(runs_dir: str | Path = RUNS_DIR, name: str = "mnist", **kwargs: Any) -> L.Trainer:
    """A `lightning.Trainer` set up as `mnist-lightning fit` sets one up; keyword arguments
    are the Trainer's (callbacks given are added to the run's).

    Args:
        runs_dir: Where runs go: `tensorboard --logdir runs_dir` shows them.
        name: The experiment's folder under runs_dir.
    """
    tune_host()
    quiet.install()
    kwargs.setdefault("logger", logger(runs_dir, name))
    ours = [c for c in callbacks() if kwargs.get("enable_model_summary", True) or not isinstance(c, LayerSummary)]
    kwargs["callbacks"] = [*ours, *kwargs.get("callbacks", [])]
    kwargs.setdefault("plugins", [AtomicCheckpointIO()])
    return with_run_progress_bar(L.Trainer(**kwargs))
