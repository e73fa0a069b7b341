"""What a run does besides the recipe: checkpoints, exact resumes with new settings, the stop
on a NaN loss, the stop on a signal, the test's predictions for `report`, the progress bar and
SLURM's requeue."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.optim.lr_scheduler import OneCycleLR
from torchmetrics.classification import MulticlassConfusionMatrix

from mnist_lightning.errors import UserError


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, which on resume also knows its files when the run's folder
    was moved or its path typed differently.

    Lightning reloads the best-checkpoint tracking only when the saved folder's path equals
    today's as a string (runs/mnist/x vs /home/me/runs/mnist/x, or a moved run, would start
    over and leave two "best" files); the files it tracked are looked for in today's folder.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("dirpath")
        if saved and self.dirpath and saved != self.dirpath:
            here = Path(self.dirpath)

            def moved(path: str) -> str:
                return str(here / Path(path).name) if path and (here / Path(path).name).is_file() else path

            state_dict = {
                **state_dict,
                "dirpath": self.dirpath,
                **{
                    key: moved(state_dict.get(key, ""))
                    for key in ("best_model_path", "kth_best_model_path", "last_model_path")
                },
                "best_k_models": {moved(k): v for k, v in state_dict.get("best_k_models", {}).items()},
            }
        super().load_state_dict(state_dict)


class RunProgressBar(TQDMProgressBar):
    """Lightning's progress bar without `v_num`, the last four characters of the run's name."""

    def get_metrics(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> dict[str, int | str | float | dict[str, float]]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


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
    instead of from inside the signal handler (see failures.Command).

    Args:
        signals: The list the command's SIGUSR1 handler appends to.
    """

    def __init__(self, signals: list[int]) -> None:
        self.signals = signals

    def _act(self, trainer: L.Trainer) -> None:
        if not self.signals:
            return
        signum = self.signals.pop()
        self.signals.clear()
        # Private: Lightning has no public call for its requeue (save hpc_ckpt_N.ckpt, scontrol requeue)
        # nor a public cluster environment for a single-device run.
        environment = trainer._accelerator_connector.cluster_environment
        if isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
            trainer._signal_connector._slurm_sigusr_handler_fn(signum, None)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._act(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._act(trainer)


class StopOnSignal(L.Callback):
    """Stops any loop at the end of a batch when SIGTERM, SIGINT (Ctrl-C) or SIGHUP arrives.

    Python raises KeyboardInterrupt wherever the main thread is when a signal lands; inside
    PyTorch's or TensorBoard's code that can leave a lock held, and the process then hangs at
    exit. Lightning defers only SIGTERM, and only in fit and evaluation; this defers all three,
    in every loop, and then stops as Ctrl-C does (Lightning's graceful shutdown). The handlers
    that were there (the CLI's record of the signal, Lightning's SIGTERM handling) still run.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _install(self, *args: Any) -> None:
        # After the Trainer registered its handlers; it puts back the ones before them when it ends.
        for signum in self.SIGNALS:
            if signal.getsignal(signum) != self._on_signal:
                self.received = None
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        previous = self._previous.get(signum)
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, frame)

    def _check(self, *args: Any) -> None:
        if self.received is not None:
            raise KeyboardInterrupt

    on_train_start = on_validation_start = on_test_start = on_predict_start = _install
    on_train_batch_end = on_validation_batch_end = on_test_batch_end = on_predict_batch_end = _check


class StopOnNonFiniteLoss(L.Callback):
    """Stops training with a clear message once the training loss is NaN or infinite.

    Checked every `every_n_steps` steps and at the epoch's last batch, before validation,
    so that the epoch's checkpoints are never written from broken weights and last.ckpt
    stays the last good one (EarlyStopping's check_finite looks at a validation metric
    after the epoch's checkpoint is saved: too late). Broken weights give a NaN loss at
    every later step, so a check now and then finds them; each check is one host sync.

    Args:
        every_n_steps: How often to look at the loss.
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        self.every_n_steps = every_n_steps

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        last = batch_idx + 1 >= trainer.num_training_batches
        if not (last or trainer.global_step % self.every_n_steps == 0) or outputs["loss"].isfinite():
            return
        saved = trainer.checkpoint_callback.dirpath if trainer.checkpoint_callback else None
        raise UserError(
            f"the training loss became NaN or infinite in epoch {trainer.current_epoch}, before step "
            f"{trainer.global_step}; training stopped. "
            + (f"The last good checkpoint, last.ckpt, is intact in {saved}. " if saved else "")
            + "Try a lower --model.lr, or check the data."
        )


class TestResults(L.Callback):
    """Every test image's probabilities, in the test set's order, and the confusion matrix (rows:
    true digit), from the logits `test_step` returns: what `report` and TensorBoard's image need."""

    def __init__(self) -> None:
        self.confusion = MulticlassConfusionMatrix(10, validate_args=False)
        self.batches: list[Tensor] = []
        self.matrix = torch.zeros(10, 10, dtype=torch.long)
        self.probabilities = torch.zeros(0, 10)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.confusion = self.confusion.to(pl_module.device)
        self.confusion.reset()
        self.batches = []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.confusion.update(outputs, batch[1])
        self.batches.append(outputs.softmax(dim=1))

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Every rank takes part in both: torchmetrics sums the matrix over DDP ranks, and
        # the data module gathers each rank's share of probabilities into the test set's order.
        self.matrix = self.confusion.compute().cpu()
        self.probabilities = torch.cat(self.batches).float().cpu()
        if trainer.world_size > 1:
            self.probabilities = trainer.datamodule.in_dataset_order(self.probabilities)
        self.batches = []


class NewSettingsOnResume(L.Callback):
    """Resuming loads the optimizer's and the schedule's state as saved, settings included; the
    settings given now win: the optimizer takes them, and a 1cycle schedule is rebuilt for the
    new settings and length as if it had run with them from the start."""

    def __init__(self) -> None:
        self.saved: dict[str, Any] | None = None  # the checkpoint's settings, while resuming

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self.saved = checkpoint.get("hyper_parameters", {})

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.saved is None:
            return
        old, hp, self.saved = self.saved, pl_module.hparams, None
        settings = {"lr": hp.lr, "betas": tuple(hp.betas), "eps": hp.eps, "weight_decay": hp.weight_decay}
        changed = [f"{k} {old[k]} -> {v}" for k, v in hp.items() if k in old and _differs(old[k], v)]
        if hp.get("one_cycle"):
            scheduler = trainer.lr_scheduler_configs[0].scheduler
            if scheduler.total_steps != trainer.estimated_stepping_batches:
                changed.append(f"1cycle schedule {scheduler.total_steps} -> {trainer.estimated_stepping_batches} steps")
            fresh = OneCycleLR(
                torch.optim.Adam([torch.zeros(1, requires_grad=True)], **settings),
                max_lr=hp.lr,
                total_steps=trainer.estimated_stepping_batches,
            )
            for _ in range(trainer.global_step):
                fresh.optimizer.step()
                fresh.step()
            scheduler.load_state_dict(fresh.state_dict())
            settings = {k: v for k, v in fresh.optimizer.param_groups[0].items() if k != "params"}
        for group in trainer.optimizers[0].param_groups:
            group.update(settings)
        if changed:
            rank_zero_info(f"Resuming with new settings: {', '.join(changed)}")


def _differs(old: object, new: object) -> bool:
    return (list(old) if isinstance(old, (list, tuple)) else old) != (
        list(new) if isinstance(new, (list, tuple)) else new
    )
