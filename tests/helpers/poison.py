"""A test-only callback: breaks the weights during a chosen epoch, as a diverging run would."""

import lightning as L
import torch


class PoisonWeights(L.Callback):
    def __init__(self, epoch: int = 1, batch: int = 3) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            with torch.no_grad():
                pl_module.net[0].weight.fill_(float("nan"))
