"""The notebook's training recipe: cross-entropy, Adam with Keras' defaults, accuracy."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from jsonargparse.typing import NonNegativeFloat, OpenUnitInterval, PositiveFloat, restricted_number_type
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn
from torch.optim.lr_scheduler import OneCycleLR
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from mnist_lightning.errors import UserError
from mnist_lightning.model import MNISTNet

Batch = tuple[Tensor, Tensor]
DropoutRate = restricted_number_type("DropoutRate", float, [(">=", 0), ("<", 1)])


class MNISTClassifier(L.LightningModule):
    """The network and how it learns (the notebook: Adam, cross-entropy, accuracy).

    Logs `loss/{train,val,test}` and `accuracy/{train,val,test}` per epoch, over every image
    of the epoch, and `loss/train_step` on the steps the logger writes.

    Args:
        lr: Adam's learning rate (the peak rate with one_cycle).
        betas: Adam's decay rates of the gradient's mean and square.
        eps: Adam's epsilon; 1e-7 as in Keras (PyTorch's default is 1e-8).
        weight_decay: L2 penalty added by Adam; 0 in the notebook.
        dropout: Dropout rate before the last layer; 0.5 in the notebook.
        keras_init: Initialise weights as Keras does (Glorot uniform, zero biases).
        one_cycle: A 1cycle learning-rate schedule peaking at lr, stepped every batch.
    """

    def __init__(
        self,
        lr: PositiveFloat = 1e-3,
        betas: tuple[OpenUnitInterval, OpenUnitInterval] = (0.9, 0.999),
        eps: PositiveFloat = 1e-7,
        weight_decay: NonNegativeFloat = 0.0,
        dropout: DropoutRate = 0.5,
        keras_init: bool = True,
        one_cycle: bool = False,
    ) -> None:
        super().__init__()
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not 0 <= dropout < 1:  # the CLI's types check it first
            raise UserError(
                f"need lr > 0, eps > 0, weight_decay >= 0 and 0 <= dropout < 1; got {lr}, {eps}, {weight_decay}, {dropout}"
            )
        self.save_hyperparameters()
        self.net = MNISTNet(keras_init=keras_init, dropout=dropout)
        # Keras' epoch metrics, per stage: the mean loss and the accuracy over every image
        # (over every DDP process too). "disable": checking for NaNs would cost a host sync a step.
        self.epoch_metrics = nn.ModuleDict()
        for stage in ("train", "val", "test"):
            self.epoch_metrics[f"{stage}_loss"] = MeanMetric(nan_strategy="disable")
            self.epoch_metrics[f"{stage}_acc"] = MulticlassAccuracy(10, average="micro", validate_args=False)
        self.example_input_array = torch.zeros(1, 1, 28, 28)  # gives the summary its shapes

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss, _ = self._step("train", batch)
        every = self.trainer.log_every_n_steps  # a self.log call every step costs time (docs/speed.md)
        if every and (self.global_step + 1) % every == 0:  # the steps Lightning's logger writes
            self.log("loss/train_step", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step("val", batch)

    def test_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._step("test", batch)[1]  # the logits, for the callbacks (callbacks.TestResults)

    def predict_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self(batch[0]).softmax(dim=1)

    def _step(self, stage: str, batch: Batch) -> tuple[Tensor, Tensor]:
        """The batch's mean loss and logits; its images join the stage's epoch metrics."""
        images, labels = batch
        logits = self(images)
        losses = F.cross_entropy(logits, labels, reduction="none")
        self.epoch_metrics[f"{stage}_loss"].update(losses.detach())
        self.epoch_metrics[f"{stage}_acc"].update(logits, labels)
        return losses.mean(), logits

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def _log_epoch(self, stage: str) -> None:
        """Lightning computes the stage's metrics over the epoch (and every DDP process) and resets
        them; once an epoch, because logging them every step slows each step (docs/speed.md)."""
        loss, accuracy = self.epoch_metrics[f"{stage}_loss"], self.epoch_metrics[f"{stage}_acc"]
        self.log_dict({f"loss/{stage}": loss, f"accuracy/{stage}": accuracy}, prog_bar=stage == "val")

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """Adam at a constant `lr` (the notebook), or with `one_cycle` a 1cycle schedule
        peaking at `lr`, stepped every batch: it reaches the same accuracy in fewer epochs."""
        hp = self.hparams
        # Fused: one pass over each parameter, the same update; Lightning refuses clipping with it.
        fused = self.device.type in ("cpu", "cuda") and not self.trainer.gradient_clip_val
        optimizer = torch.optim.Adam(
            self.parameters(), lr=hp.lr, betas=hp.betas, eps=hp.eps, weight_decay=hp.weight_decay, fused=fused
        )
        if not hp.one_cycle:
            return optimizer
        schedule = OneCycleLR(optimizer, max_lr=hp.lr, total_steps=self.trainer.estimated_stepping_batches)
        step_schedule = {"scheduler": schedule, "interval": "step", "name": "learning_rate"}
        return {"optimizer": optimizer, "lr_scheduler": step_schedule}

    def configure_callbacks(self) -> list[L.Callback]:
        """The learning rate into the logger, when a schedule changes it."""
        return [LearningRateMonitor(logging_interval="step")] if self.hparams.one_cycle and self.logger else []
