"""Callbacks for runs that stop and go on: exact resumes, and SLURM's requeue."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment

from mnist_lightning import failures


class RNGState(L.Callback):
    """Puts the random-number state into every checkpoint and restores it on resume.

    Lightning checkpoints weights, optimizer and loop positions but not the global
    RNG, which dropout draws from: without it a resumed run diverges at its first
    batch. The state is taken when the checkpoint is written (after validation at
    an epoch's end) and set back just before the next training epoch starts, the
    same point in an uninterrupted run. The data order needs nothing: it is a pure
    function of (seed, epoch), see MNISTDataModule.train_dataloader.
    """

    def __init__(self) -> None:
        self.pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pending = state_dict

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.pending is None:
            return
        torch.set_rng_state(self.pending["torch"])
        if "cuda" in self.pending and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self.pending["cuda"])
        self.pending = None


class SlurmRequeue(L.Callback):
    """Acts on SLURM's preemption warning (SIGUSR1) between batches: Lightning's requeue,
    which saves hpc_ckpt_N.ckpt and calls `scontrol requeue`, run from the training loop
    instead of from inside the signal handler (see failures._on_requeue_signal)."""

    def _act(self, trainer: L.Trainer) -> None:
        environment = trainer._accelerator_connector.cluster_environment
        if failures.REQUEUE_SIGNALS and isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
            signum = failures.REQUEUE_SIGNALS.pop()
            failures.REQUEUE_SIGNALS.clear()
            trainer._signal_connector._slurm_sigusr_handler_fn(signum, None)  # Lightning's own requeue

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._act(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._act(trainer)
