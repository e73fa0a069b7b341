"""The notebook's training recipe: cross-entropy, Adam with Keras' defaults, accuracy."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from mnist_lightning.errors import UserError
from mnist_lightning.model import MNISTNet

Batch = tuple[Tensor, Tensor]


class MNISTClassifier(L.LightningModule):
    """Logs `{train,val,test}_{loss,acc}` per epoch and `train_loss_step` every
    `log_every_n_steps`; nothing in the step converts a tensor to a Python number.
    """

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-7,  # Keras' Adam epsilon; PyTorch's default is 1e-8
        weight_decay: float = 0.0,
        dropout: float = 0.5,
        keras_init: bool = True,
    ) -> None:
        super().__init__()
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not 0 <= dropout < 1:
            raise UserError(
                f"need lr > 0, eps > 0, weight_decay >= 0 and 0 <= dropout < 1; "
                f"got lr={lr}, eps={eps}, weight_decay={weight_decay}, dropout={dropout}"
            )
        self.save_hyperparameters()
        self.net = MNISTNet(keras_init=keras_init, dropout=dropout)
        self.accuracy = nn.ModuleDict(
            {f"{stage}_acc": MulticlassAccuracy(10, average="micro", validate_args=False) for stage in ("train", "val", "test")}
        )
        self.example_input_array = torch.zeros(1, 1, 28, 28)  # gives the summary its shapes

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss = self._step(batch, "train")
        self.log("train_loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self(batch[0]).softmax(dim=1)

    def _step(self, batch: Batch, stage: str) -> Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        accuracy = self.accuracy[f"{stage}_acc"]  # "train" itself is taken by nn.Module
        accuracy.update(logits, labels)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=len(labels))
        self.log(f"{stage}_acc", accuracy, on_step=False, on_epoch=True, prog_bar=stage != "train")
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.Adam(self.parameters(), lr=hp.lr, betas=hp.betas, eps=hp.eps, weight_decay=hp.weight_decay)
