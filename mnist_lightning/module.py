"""The notebook's training recipe: cross-entropy, Adam with Keras' defaults, accuracy."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn
from torch.optim.lr_scheduler import OneCycleLR
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from mnist_lightning.errors import UserError
from mnist_lightning.host import tune_host
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
        one_cycle: bool = False,
    ) -> None:
        super().__init__()
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not 0 <= dropout < 1:
            raise UserError(
                f"need lr > 0, eps > 0, weight_decay >= 0 and 0 <= dropout < 1; "
                f"got lr={lr}, eps={eps}, weight_decay={weight_decay}, dropout={dropout}"
            )
        self.save_hyperparameters()
        # channels_last: oneDNN's convolutions and max-pooling are several times
        # faster in NHWC on CPU (the NCHW max-pool forward alone took 4.4 ms a batch).
        self.net = MNISTNet(keras_init=keras_init, dropout=dropout).to(memory_format=torch.channels_last)
        self.accuracy = nn.ModuleDict(  # keyed by the names they are logged under
            {f"{stage}_acc": MulticlassAccuracy(10, average="micro", validate_args=False) for stage in ("val", "test")}
        )
        # The epoch's training loss (summed per image) and correct predictions, Keras'
        # running train metrics: one add a step on the device. The torchmetrics pair
        # (MeanMetric, MulticlassAccuracy) cost 0.47 ms a step here instead of 0.26, 1.1%
        # of an epoch; the sums are reduced over DDP ranks once, in on_train_epoch_end.
        self.register_buffer("train_sums", torch.zeros(2), persistent=False)
        self.train_images = 0
        self.test_confusion = MulticlassConfusionMatrix(10, validate_args=False)
        self.test_probabilities: list[Tensor] = []  # kept for `report`'s digit grids
        self.example_input_array = torch.zeros(1, 1, 28, 28)  # gives the summary its shapes

    def __setattr__(self, name: str, value: object) -> None:
        # Lightning sets `_current_fx_name` before and after every hook it calls, ~40
        # times a training step. nn.Module's __setattr__ first checks each value against
        # Parameter, Buffer and Module, through Python-level isinstance hooks (1.5 us a
        # call); a plain attribute needs none of that. 0.07 ms a step, 8% of what the
        # Trainer adds to a plain loop (measured on a one-layer model).
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, images: Tensor) -> Tensor:
        # With one channel this only restrides (no copy), but it tells oneDNN to
        # keep conv1's output NHWC: conv1 then runs 4x faster, and so does the
        # zero-fill in max-pool's backward.
        return self.net(images.contiguous(memory_format=torch.channels_last))

    def setup(self, stage: str) -> None:
        tune_host()

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        # The epoch's loss and accuracy accumulate in train_sums and are logged once,
        # in on_train_epoch_end: three self.log calls a step cost ~1.4 ms here, 6% of
        # an epoch. The step loss is logged only on the steps the logger writes
        # (Lightning's rule: every log_every_n_steps optimizer steps).
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        self.train_sums.add_(torch.stack((loss.detach() * len(labels), (logits.argmax(1) == labels).sum())))
        self.train_images += len(labels)
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train_loss_step", loss, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        sums = torch.cat((self.train_sums, self.train_sums.new_tensor([self.train_images])))
        loss_sum, correct, images = self.trainer.strategy.reduce(sums, reduce_op="sum")  # over DDP ranks
        self.log_dict({"train_loss": loss_sum / images, "train_acc": correct / images})
        self.train_sums.zero_()
        self.train_images = 0

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        _, logits = self._step(batch, "test")
        self.test_confusion.update(logits, batch[1])
        self.test_probabilities.append(logits.softmax(dim=1))

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()
        self.test_probabilities.clear()

    def on_test_end(self) -> None:
        """The confusion matrix into TensorBoard's images, the test metrics beside the hyperparameters."""
        if not isinstance(self.logger, TensorBoardLogger):
            return
        # matplotlib only when testing
        from mnist_lightning.plots import confusion_figure

        matrix = self.test_confusion.compute().cpu().numpy()
        self.logger.experiment.add_figure("test_confusion_matrix", confusion_figure(matrix), self.global_step)
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("test_")}
        self.logger.log_hyperparams(dict(self.hparams), metrics)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A checkpoint of another network gets a message instead of load_state_dict's traceback."""
        ours = {name: tuple(t.shape) for name, t in self.state_dict().items()}
        theirs = {name: tuple(t.shape) for name, t in checkpoint.get("state_dict", {}).items()}
        if ours != theirs:
            differ = sorted(set(ours) ^ set(theirs)) or [n for n in ours if ours[n] != theirs[n]]
            raise UserError(
                "the checkpoint holds a different network than this project's MNIST CNN "
                f"(tensors that differ: {', '.join(differ[:3])}{' ...' if len(differ) > 3 else ''})"
            )

    def predict_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self(batch[0]).softmax(dim=1)

    def _step(self, batch: Batch, stage: str) -> tuple[Tensor, Tensor]:
        """Validation and test: logs the loss and accuracy of a batch; returns the loss and the logits."""
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        accuracy = self.accuracy[f"{stage}_acc"]
        accuracy.update(logits, labels)
        # sync_dist: under DDP the epoch's loss is averaged over every rank's shard
        # (once per epoch, not per step); torchmetrics syncs the accuracy itself.
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=len(labels), sync_dist=True)
        self.log(f"{stage}_acc", accuracy, on_step=False, on_epoch=True, prog_bar=True)
        return loss, logits

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """Adam at a constant `lr` (the notebook), or with `one_cycle` a 1cycle schedule
        peaking at `lr`, stepped every batch: it reaches the same accuracy in fewer epochs."""
        hp = self.hparams
        # The fused kernel: one pass over each parameter instead of ~10 tensor ops
        # (0.12-0.2 ms a step on our CPU instead of 0.35-0.4), same update rule.
        optimizer = torch.optim.Adam(self.parameters(), lr=hp.lr, betas=hp.betas, eps=hp.eps,
                                     weight_decay=hp.weight_decay, fused=self.device.type in ("cpu", "cuda"))
        if not hp.one_cycle:
            return optimizer
        schedule = OneCycleLR(optimizer, max_lr=hp.lr, total_steps=self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
