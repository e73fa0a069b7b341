"""The notebook's training recipe: cross-entropy, Adam with Keras' defaults, accuracy."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor
from torch.optim.lr_scheduler import OneCycleLR
from torchmetrics.classification import MulticlassConfusionMatrix

from mnist_lightning.errors import UserError
from mnist_lightning.host import tune_host
from mnist_lightning.model import MNISTNet

Batch = tuple[Tensor, Tensor]
STAGES = ("train", "val", "test")  # the rows of MNISTClassifier.sums


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
        self.net = MNISTNet(keras_init=keras_init, dropout=dropout)
        # Each stage's epoch totals, Keras' running metrics: loss summed over images and
        # correct predictions (a row each for train, val, test) on the device, images
        # seen on the host. One add a step, one reduction over DDP ranks and one log an
        # epoch (_log_epoch). Logging every step (self.log, torchmetrics' accuracy)
        # cost 0.21 ms more a training step and 1 ms more a validation batch: 1.1% and
        # 0.3% of an epoch.
        self.register_buffer("sums", torch.zeros(len(STAGES), 2), persistent=False)
        self.seen = dict.fromkeys(STAGES, 0)
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
        return self.net(images)

    def setup(self, stage: str) -> None:
        tune_host()

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        # The step loss is logged only on the steps the logger writes; the epoch's, in _log_epoch.
        images, labels = batch
        loss = self._accumulate("train", self(images), labels)
        if self._logger_writes(self.global_step + 1):  # this step's optimizer step not yet counted
            self.log("train_loss_step", loss, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_train_batch_end(self, outputs: object, batch: Batch, batch_idx: int) -> None:
        """Stops training with a clear message once the loss is NaN or infinite.

        The epoch's running loss sum turns NaN or infinite as soon as one step's loss
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
        if not self.sums[STAGES.index("train"), 0].isfinite():
            saved = self.trainer.checkpoint_callback.dirpath if self.trainer.checkpoint_callback else None
            raise UserError(
                f"the training loss became NaN or infinite in epoch {self.current_epoch}, before step "
                f"{self.global_step}; training stopped. "
                + (f"The last good checkpoint, last.ckpt, is intact in {saved}. " if saved else "")
                + "Try a lower --model.lr, or check the data."
            )

    def _logger_writes(self, steps_done: int) -> bool:
        """Lightning's rule for the steps its logger writes: every log_every_n_steps optimizer steps."""
        return steps_done % self.trainer.log_every_n_steps == 0

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        images, labels = batch
        self._accumulate("val", self(images), labels)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        self._accumulate("test", logits, labels)
        self.test_confusion.update(logits, labels)
        self.test_probabilities.append(logits.softmax(dim=1))

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

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
        if checkpoint.get("flatten") != "HWC":
            self._dense_input_to_hwc(checkpoint)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["flatten"] = "HWC"  # see _dense_input_to_hwc

    def _dense_input_to_hwc(self, checkpoint: dict) -> None:
        """Checkpoints without the "flatten" mark come from before FlattenHWC: their dense
        layer reads features in (C, H, W) order. Reordering its weight columns, and Adam's
        moments of them, gives the same network in today's order, so they keep working.
        """
        name = "net.7.weight"

        def to_hwc(t: Tensor) -> Tensor:
            return t.unflatten(1, (64, 5, 5)).permute(0, 2, 3, 1).flatten(1).contiguous()

        checkpoint["state_dict"][name] = to_hwc(checkpoint["state_dict"][name])
        index = [n for n, _ in self.named_parameters()].index(name)
        for optimizer in checkpoint.get("optimizer_states", []):
            moments = optimizer["state"].get(index, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in moments:
                    moments[key] = to_hwc(moments[key])

    def predict_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self(batch[0]).softmax(dim=1)

    def _accumulate(self, stage: str, logits: Tensor, labels: Tensor) -> Tensor:
        """The batch's mean loss; its loss sum and correct predictions join the stage's epoch totals."""
        loss = F.cross_entropy(logits, labels)
        hits = (logits.argmax(1) == labels).sum()
        self.sums[STAGES.index(stage)].add_(torch.stack((loss.detach() * len(labels), hits)))
        self.seen[stage] += len(labels)
        return loss

    def _log_epoch(self, stage: str) -> None:
        """Logs `{stage}_loss` and `{stage}_acc` per image over the epoch and every DDP rank; totals restart."""
        row = self.sums[STAGES.index(stage)]
        totals = torch.cat((row, row.new_tensor([self.seen[stage]])))
        loss_sum, correct, images = self.trainer.strategy.reduce(totals, reduce_op="sum")
        self.log_dict({f"{stage}_loss": loss_sum / images, f"{stage}_acc": correct / images}, prog_bar=stage == "val")
        row.zero_()
        self.seen[stage] = 0

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
