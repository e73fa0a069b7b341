"""The callback that makes a resumed run continue exactly as an uninterrupted one."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch


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
