"""The notebook's training recipe: cross-entropy, Adam with Keras' defaults, accuracy."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn
from torch.optim.lr_scheduler import OneCycleLR
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from mnist_lightning.errors import UserError
from mnist_lightning.model import MNISTNet

Batch = tuple[Tensor, Tensor]
STAGES = ("train", "val", "test")


class MNISTClassifier(L.LightningModule):
    """The network and how it learns (the notebook: Adam, cross-entropy, accuracy).

    Logs `{train,val,test}_{loss,acc}` per epoch and `train_loss_step` every
    `log_every_n_steps`; nothing in the step converts a tensor to a Python number.

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
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-7,
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
        self.net = MNISTNet(keras_init=keras_init, dropout=dropout)
        # Keras' epoch metrics, per stage: the mean loss and the accuracy over every image
        # of the epoch (over every DDP process too). "disable": a NaN loss must reach the
        # mean for the NaN check below, and the check for NaNs would cost a host sync a step.
        self.epoch_metrics = nn.ModuleDict()
        for stage in STAGES:
            self.epoch_metrics[f"{stage}_loss"] = MeanMetric(nan_strategy="disable")
            self.epoch_metrics[f"{stage}_acc"] = MulticlassAccuracy(10, average="micro", validate_args=False)
        self.test_confusion = MulticlassConfusionMatrix(10, validate_args=False)
        self.test_probabilities: list[Tensor] = []  # kept for `report`'s digit grids
        self.test_confusion_matrix = torch.zeros(10, 10, dtype=torch.long)
        self.example_input_array = torch.zeros(1, 1, 28, 28)  # gives the summary its shapes
        self.resumed_from: dict | None = None  # the checkpoint's settings, while resuming
        self.checkpoint_epoch = 0  # the last epoch the loaded checkpoint trained

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss, _ = self._step("train", batch)
        # Logged only on the steps the logger writes: a self.log call every step costs 3% (docs/speed.md).
        if self._logger_writes(self.global_step + 1):  # this step's optimizer step is not yet counted
            self.log("train_loss_step", loss, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_train_batch_end(self, outputs: object, batch: Batch, batch_idx: int) -> None:
        """Stops training with a clear message once the loss is NaN or infinite.

        The epoch's running loss turns NaN or infinite as soon as one step's loss
        does, so the check needs no op of its own and no host sync between checks.
        It runs every `log_every_n_steps` and at the epoch's last batch, before
        validation, so that the epoch's checkpoints are never written from broken
        weights and last.ckpt stays the last good one. (EarlyStopping's check_finite
        looks at a validation metric after the epoch's checkpoint has been saved: too
        late.)
        """
        last = batch_idx + 1 >= self.trainer.num_training_batches
        if not (last or self._logger_writes(self.global_step)):
            return
        if not self.epoch_metrics["train_loss"].mean_value.isfinite():  # MeanMetric's running sum
            saved = self.trainer.checkpoint_callback.dirpath if self.trainer.checkpoint_callback else None
            raise UserError(
                f"the training loss became NaN or infinite in epoch {self.current_epoch}, before step "
                f"{self.global_step}; training stopped. "
                + (f"The last good checkpoint, last.ckpt, is intact in {saved}. " if saved else "")
                + "Try a lower --model.lr, or check the data."
            )

    def _logger_writes(self, steps_done: int) -> bool:
        """Lightning's rule for the steps its logger writes: every log_every_n_steps optimizer steps."""
        every = self.trainer.log_every_n_steps
        return every > 0 and steps_done % every == 0  # 0: the logger writes no step

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        _, logits = self._step("test", batch)
        self.test_confusion.update(logits, batch[1])
        self.test_probabilities.append(logits.softmax(dim=1))

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        # Every rank takes part in both: torchmetrics sums the matrix over DDP ranks, and
        # the data module gathers each rank's share of probabilities into the test set's order.
        self.test_confusion_matrix = self.test_confusion.compute().cpu()
        probabilities = torch.cat(self.test_probabilities).float().cpu()
        if self.trainer.world_size > 1:
            probabilities = self.trainer.datamodule.in_dataset_order(probabilities)
        self.test_probabilities = [probabilities]

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()
        self.test_probabilities.clear()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # (cli.load_checkpoint has checked the weights' names and shapes before Lightning reads the file.)
        self.resumed_from = checkpoint.get("hyper_parameters", {})
        self.checkpoint_epoch = checkpoint.get("epoch", 0)

    def on_train_start(self) -> None:
        if self.resumed_from is not None:
            self._apply_new_settings(self.resumed_from)
            self.resumed_from = None

    def _apply_new_settings(self, old: dict) -> None:
        """Resuming loads the optimizer's and the schedule's state as saved, settings included;
        the settings given now win: the optimizer takes them, and a 1cycle schedule is rebuilt
        for the new settings and length as if it had run with them from the start."""
        hp = self.hparams
        if bool(old.get("one_cycle", False)) != hp.one_cycle:
            raise UserError(f"the checkpoint trained {'with' if old.get('one_cycle') else 'without'} one_cycle; "
                            f"resume it with --model.one_cycle {str(bool(old.get('one_cycle'))).lower()}, "
                            "or start a new run")  # fmt: skip
        optimizer = self.optimizers().optimizer
        settings = {"lr": hp.lr, "betas": tuple(hp.betas), "eps": hp.eps, "weight_decay": hp.weight_decay}
        changed = [f"{k} {old[k]} -> {v}" for k, v in hp.items() if k in old and _differs(old[k], v)]
        if hp.one_cycle:
            scheduler = self.lr_schedulers()
            if scheduler.total_steps != self.trainer.estimated_stepping_batches:
                changed.append(f"1cycle schedule {scheduler.total_steps} -> {self.trainer.estimated_stepping_batches} steps")
            fresh = self._one_cycle(torch.optim.Adam([torch.zeros(1, requires_grad=True)], **settings))
            for _ in range(self.global_step):
                fresh.optimizer.step()
                fresh.step()
            scheduler.load_state_dict(fresh.state_dict())
            settings = {k: v for k, v in fresh.optimizer.param_groups[0].items() if k != "params"}
        for group in optimizer.param_groups:
            group.update(settings)
        if changed:
            rank_zero_info(f"Resuming with new settings: {', '.join(changed)}")

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

    def _log_epoch(self, stage: str) -> None:
        """Logs `{stage}_loss` and `{stage}_acc`: Lightning computes them over the epoch (and every
        DDP process) and resets them. Logged once an epoch rather than in every step, which cost 10%
        of a training step (docs/speed.md)."""
        metrics = {name: self.epoch_metrics[name] for name in (f"{stage}_loss", f"{stage}_acc")}
        self.log_dict(metrics, prog_bar=stage == "val")

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """Adam at a constant `lr` (the notebook), or with `one_cycle` a 1cycle schedule
        peaking at `lr`, stepped every batch: it reaches the same accuracy in fewer epochs."""
        hp = self.hparams
        # The fused kernel: one pass over each parameter instead of ~10 tensor ops, same
        # update rule. Lightning's mixed precision refuses gradient clipping with it.
        fused = self.device.type in ("cpu", "cuda") and not self.trainer.gradient_clip_val
        optimizer = torch.optim.Adam(self.parameters(), lr=hp.lr, betas=hp.betas, eps=hp.eps,
                                     weight_decay=hp.weight_decay, fused=fused)  # fmt: skip
        if not hp.one_cycle:
            return optimizer
        schedule = self._one_cycle(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def configure_callbacks(self) -> list[L.Callback]:
        """The learning rate into the logger, when a schedule changes it."""
        return [LearningRateMonitor(logging_interval="step")] if self.hparams.one_cycle and self.logger else []

    def _one_cycle(self, optimizer: torch.optim.Optimizer) -> OneCycleLR:
        return OneCycleLR(optimizer, max_lr=self.hparams.lr, total_steps=self.trainer.estimated_stepping_batches)


def _differs(old: object, new: object) -> bool:
    return (list(old) if isinstance(old, (list, tuple)) else old) != (list(new) if isinstance(new, (list, tuple)) else new)
