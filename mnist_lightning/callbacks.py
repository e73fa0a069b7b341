"""Callbacks that make runs resumable exactly and stop them safely."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from mnist_lightning.errors import UserError


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


class FiniteLoss(L.Callback):
    """Stops training with a clear message when the loss turns NaN or infinite.

    Checked every `log_every_n_steps` and at the last batch of each epoch, before
    validation, so the epoch's checkpoints are never written from broken weights:
    last.ckpt stays the last good one. Between checks the test runs on the device
    without a host sync. (EarlyStopping's check_finite looks at a validation metric
    after that epoch's checkpoint has been saved, which is too late.)
    """

    def __init__(self) -> None:
        self.total: Tensor | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        # One op a step: a sum is NaN or infinite as soon as one of its terms is
        # (isfinite, not and or cost three, ~0.1 ms a step in training).
        loss = (outputs["loss"] if isinstance(outputs, dict) else outputs).detach()
        self.total = loss if self.total is None else self.total + loss
        last = batch_idx + 1 >= trainer.num_training_batches
        if (last or (trainer.global_step % trainer.log_every_n_steps == 0)) and not torch.isfinite(self.total):
            saved = trainer.checkpoint_callback.dirpath if trainer.checkpoint_callback else None
            raise UserError(
                f"the training loss became NaN or infinite in epoch {trainer.current_epoch}, before step "
                f"{trainer.global_step}; training stopped. "
                + (f"The last good checkpoint, last.ckpt, is intact in {saved}. " if saved else "")
                + "Try a lower --model.lr, or check the data."
            )
