"""The TensorBoard side of a run: per-epoch curves against the epoch, the custom-scalars layout,
HPARAMS, the results of evaluations at their checkpoint's epoch, and reading events back."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from mnist_lightning.callbacks import TestResults
from mnist_lightning.runs import claim, hold, stamp

# The module logs `loss/<stage>` and `accuracy/<stage>`: TensorBoard opens on a "loss" and an
# "accuracy" section with a card per stage. The per-epoch ones are plotted against the epoch.
PER_EPOCH = re.compile(r"(loss|accuracy)/(train|val|test)")


def layout(learning_rate: bool) -> dict:
    """TensorBoard's custom-scalars layout: a chart per quantity and stage, so that a chart's
    colours are its runs (TensorBoard colours by run: training and validation on one chart
    would share each run's colour); evaluations beside the validation curves."""
    charts = {
        "loss, training (per epoch)": ["Multiline", ["^loss/train$"]],
        "loss, validation (per epoch)": ["Multiline", ["^loss/(val|validate|test)$"]],
        "accuracy, training (per epoch)": ["Multiline", ["^accuracy/train$"]],
        "accuracy, validation (per epoch)": ["Multiline", ["^accuracy/(val|validate|test)$"]],
        "training loss (per step)": ["Multiline", ["^loss/train_step$"]],
    }
    if learning_rate:  # logged when a schedule changes it
        charts["learning rate (per step)"] = ["Multiline", ["^learning_rate$"]]
    return {"MNIST": charts}


class RunLogger(TensorBoardLogger):
    """TensorBoard's logger, with each new run in `<save_dir>/<name>/<start time>`.

    Names like 2026-12-01_18-40-12 sort in creation order and say when a run began. Without
    a version the logger makes its run folder (`claim`); under DDP only rank 0 does, and
    Lightning sends rank 0's directory to the other ranks.

    Per-epoch metrics are plotted against the epoch instead of the step (an evaluation's at
    its checkpoint's epoch), and the `epoch` series Lightning adds is left out.
    """

    def __init__(self, save_dir: str, name: str = "mnist", version: str | None = None, **kwargs: Any) -> None:
        if version is None:  # a Python caller's logger: it makes its run now (the CLI makes it before)
            run, _ = claim(Path(save_dir, name)) if rank_zero_only.rank == 0 else (Path(stamp()), [])
            version = run.name
            self.lock = hold(run) if rank_zero_only.rank == 0 else None
        super().__init__(save_dir, name=name, version=version, **kwargs)
        self.evaluated_epoch: int | None = None  # set by RunLayout for `validate` and `test`
        self.validating = False  # `validate`: its */val results go beside, not into, the training's curve

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        epoch = metrics.pop("epoch", None)
        if epoch is not None and any(PER_EPOCH.fullmatch(k) for k in metrics):
            step = int(epoch) if self.evaluated_epoch is None else self.evaluated_epoch
        if self.validating:
            metrics = {re.sub("/val$", "/validate", k): v for k, v in metrics.items()}
        super().log_metrics(metrics, step)

    @rank_zero_only
    def add_layout(self, learning_rate: bool) -> None:
        self.experiment.add_custom_scalars(layout(learning_rate))

    @rank_zero_only
    def log_settings(self, settings: dict[str, Any]) -> None:
        """The run's row in TensorBoard's HPARAMS: its settings, with its result series as the
        metrics (TensorBoard shows each series' last value, so none is logged again)."""
        from torch.utils.tensorboard.summary import hparams

        # TensorBoard shows numbers and text: a bool would read 0.0000
        plain = {
            k: v if isinstance(v, (int, float, str)) and not isinstance(v, bool) else _text(v)
            for k, v in settings.items()
        }
        metrics = {
            f"{quantity}/{stage}": 0.0 for stage in ("val", "train", "test") for quantity in ("accuracy", "loss")
        }
        for summary in hparams(plain, metrics):
            self.experiment.file_writer.add_summary(summary)


# Settings left out of TensorBoard's HPARAMS table: where and how the data is read.
NOT_RESULTS = {"data.data_dir", "data.download", "data.num_workers", "data.eval_batch_size", "data.predict_path"}


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def run_settings(pl_module: LightningModule, datamodule: LightningDataModule | None) -> dict[str, Any]:
    """The model's and data's settings that change a result, as `model.lr`, `data.batch_size`, ..."""
    data = datamodule.hparams if datamodule is not None else {}
    settings = {**{f"model.{k}": v for k, v in pl_module.hparams.items()}, **{f"data.{k}": v for k, v in data.items()}}
    # Keys starting with "_" are LightningCLI's bookkeeping.
    return {k: v for k, v in settings.items() if "._" not in k and k not in NOT_RESULTS}


class RunLayout(Callback):
    """What a run shows in TensorBoard besides its curves: the custom-scalars layout (written
    when a run starts, not again when it resumes), its settings in HPARAMS when `fit` ends,
    the results of `validate` and `test` at the epoch of their checkpoint, and the test's
    confusion matrix."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.global_step == 0 and isinstance(trainer.logger, RunLogger):
            trainer.logger.add_layout(learning_rate=bool(trainer.lr_scheduler_configs))

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if isinstance(trainer.logger, RunLogger):
            trainer.logger.log_settings(run_settings(pl_module, trainer.datamodule))

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        results = next((c for c in trainer.callbacks if isinstance(c, TestResults)), None)
        if isinstance(trainer.logger, RunLogger) and results is not None and trainer.is_global_zero:
            from mnist_lightning.plots import confusion_thumbnail  # matplotlib only when testing

            thumbnail = confusion_thumbnail(results.matrix.numpy())
            epoch = trainer.logger.evaluated_epoch or 0  # read from the checkpoint as the test started
            trainer.logger.experiment.add_figure("test_confusion_matrix", thumbnail, epoch)

    def on_validation_start(self, trainer: Trainer, pl_module: object) -> None:
        if trainer.state.fn != "fit" and isinstance(trainer.logger, RunLogger):
            trainer.logger.evaluated_epoch = checkpoint_epoch(trainer)
            trainer.logger.validating = trainer.state.fn == "validate"

    on_test_start = on_validation_start


def checkpoint_epoch(trainer: Trainer) -> int:
    """The last epoch the evaluated checkpoint trained (0 for the weights in memory)."""
    if not trainer.ckpt_path:
        return 0
    return torch.load(trainer.ckpt_path, map_location="cpu", weights_only=True, mmap=True).get("epoch", 0)


def scalar_events(run_dir: Path) -> dict[str, list]:
    """Every scalar series of a run as tensorboard's own reader gives it (events with step,
    wall_time, value; every one kept), by tag: loss/train, accuracy/val, accuracy/test, ..."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})
    events.Reload()
    return {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}


def evaluated(run: Path, name: str, epoch: int) -> bool:
    """Whether the run's events already hold the metric `name` at `epoch` (one evaluation of a checkpoint is logged once)."""
    return any(event.step == epoch for event in scalar_events(run).get(name, []))
