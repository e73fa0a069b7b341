"""`mnist-lightning {fit,validate,test,predict,report}`: LightningCLI over our module and data."""

from __future__ import annotations

import errno
import logging
import os
import sys
import warnings
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.profilers import PassThroughProfiler

from mnist_lightning.callbacks import RNGState
from mnist_lightning.checkpoint import AtomicCheckpointIO, load_checkpoint
from mnist_lightning.data import MNISTDataModule
from mnist_lightning.errors import UserError
from mnist_lightning.module import MNISTClassifier
from mnist_lightning.predict import CSVPredictionWriter

log = logging.getLogger("lightning.pytorch.callbacks.model_summary")
lightning_info = logging.getLogger("lightning.pytorch.utilities.rank_zero")

RUNS_DIR = "runs"


class ExactSummary(ModelSummary):
    """Lightning's summary, plus the exact parameter count Keras' model.summary() shows."""

    @staticmethod
    def summarize(summary_data, total_parameters: int, trainable_parameters: int, *args, **kwargs) -> None:
        ModelSummary.summarize(summary_data, total_parameters, trainable_parameters, *args, **kwargs)
        log.info(f"Total params: {total_parameters:,} (trainable: {trainable_parameters:,})")

    def on_fit_start(self, trainer: Trainer, pl_module: Any) -> None:
        # Mixed precision keeps the weights in float32, so the 32 bits a parameter that
        # Lightning's summary falls back to for "bf16-mixed" give the exact size; its
        # warning, printed in every bf16 run (configs/fast.yaml), calls them inaccurate.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Precision .*-mixed is not supported by the model summary")
            super().on_fit_start(trainer, pl_module)


class QuietLightning(logging.Filter):
    """Drops two of Lightning's info lines that tell a user of this CLI nothing: that the
    Trainer has a summary callback (ExactSummary, ours) and an advertisement for a
    cloud logger. Matched by their first words, so anything else Lightning says shows."""

    NOISE = ("Trainer already configured with model summary callbacks", "💡 Tip: For seamless cloud logging")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOISE)


_QUIET = QuietLightning()  # one instance, so that adding it again is a no-op


class NoProfiler(PassThroughProfiler):
    """Lightning's default profiler, which records nothing, without its cost.

    Lightning wraps every hook call in `profiler.profile(...)`, ~130 a training
    step; the default's generator-based context manager costs 1.0 us each, a
    nullcontext 0.17 us. `--trainer.profiler simple` (or any other) still works.
    """

    def profile(self, action_name: str) -> AbstractContextManager:
        return _NOTHING


_NOTHING = nullcontext()  # stateless, so one serves every call


class MNISTTrainer(Trainer):
    """Lightning's Trainer plus `report`, so that LightningCLI offers it as a subcommand."""

    def report(self, model: MNISTClassifier, datamodule: MNISTDataModule, ckpt_path: str,
               output_dir: str | None = None) -> None:  # fmt: skip
        """Evaluate a checkpoint on the test set and write metrics.json and figures.

        Args:
            ckpt_path: the checkpoint; model and data settings are read from it.
            output_dir: where to write; default: report/ in the checkpoint's run directory.
        """
        # matplotlib and seaborn load only here
        from mnist_lightning.report import write_report

        (results,) = self.test(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
        write_report(model, datamodule, results["test_loss"], ckpt_path, output_dir)


class MNISTCLI(LightningCLI):
    """Every run writes its events, config and checkpoints into runs/mnist/version_N.

    `validate`, `test`, `predict` and `report` given a checkpoint take the model's and the
    data module's settings from it (LightningCLI does the model; we add the data
    as defaults, so explicit --data.* options still win, e.g. a new data_dir).
    """

    def __init__(self, args: ArgsType = None, run: bool = True) -> None:
        # The progress bar redraws every 25 steps, ~2 times a second on this CPU
        # (Lightning reads tqdm's own variable; set TQDM_MINITERS to change it): each
        # redraw costs 0.3 ms, so redrawing every step would cost 1.5% of an epoch.
        os.environ.setdefault("TQDM_MINITERS", "25")
        lightning_info.addFilter(_QUIET)
        # Lightning 2.6 builds torch's deprecated LeafSpec in every CombinedLoader, which
        # torch 2.15 warns about once a run: nothing a user can act on.
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                category=FutureWarning)  # fmt: skip
        super().__init__(
            MNISTClassifier,
            MNISTDataModule,
            trainer_class=MNISTTrainer,
            trainer_defaults={
                "profiler": {"class_path": "mnist_lightning.cli.NoProfiler"},
                "logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": RUNS_DIR, "name": "mnist", "default_hp_metric": False},
                },
                "callbacks": [
                    ModelCheckpoint(
                        monitor="val_acc",
                        mode="max",
                        filename="epoch{epoch:02d}-val_acc{val_acc:.4f}",
                        auto_insert_metric_name=False,
                    ),
                    # last.ckpt after every epoch, for resuming. Not save_last=True:
                    # Lightning 2.6 rewrites that only in epochs that set a new best,
                    # so it can be epochs old.
                    ModelCheckpoint(filename="last", enable_version_counter=False),
                    ExactSummary(max_depth=2),
                    RNGState(),
                ],
            },
            # Lightning's default (True) seeds 0 anyway and warns "No seed found" in every
            # command without a seed, evaluations included; configs/ set their own.
            seed_everything_default=0,
            args=args,
            run=run,
        )

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), "report": {"model", "datamodule"}}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(CSVPredictionWriter, "prediction_writer")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # keep a plugin the user chose
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        unused: tuple[type, ...] = ()  # without a subcommand (run=False) the trainer is set up to fit
        if self.subcommand not in (None, "fit"):
            # Evaluating writes no checkpoints. Given a checkpoint, Lightning restores these
            # callbacks' state from it and warns, misleadingly for an evaluation, that the
            # new run's checkpoint directory differs from the one the file was written in.
            unused += (ModelCheckpoint,)
        if self.subcommand != "predict":
            # Lightning calls every callback at every hook, six a training step, whether
            # it acts there or not: the prediction writer cost 16 us a step in `fit`.
            unused += (CSVPredictionWriter,)
        # The trainer's settings read as Lightning's instantiate_trainer reads them (under the subcommand, if any).
        if self._get(self.config_init, "trainer", default={}).get("enable_model_summary") is False:
            # Lightning's flag only stops it adding its own summary; ExactSummary replaces that one.
            unused += (ExactSummary,)
        trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, unused)]
        return trainer

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path:
            if subcommand in ("validate", "test", "predict"):
                raise UserError(needs_checkpoint(subcommand))
            return
        # Every checkpoint is read weights-only first: a file that would run code is
        # refused here, before Lightning or LightningCLI open it.
        checkpoint = load_checkpoint(ckpt_path)
        if subcommand == "fit":  # resuming: the config given wins
            return
        # Keys starting with "_" are LightningCLI's own bookkeeping, not arguments.
        data_hparams = {k: v for k, v in checkpoint.get("datamodule_hyper_parameters", {}).items() if k[0] != "_"}
        if data_hparams:
            self._parser(subcommand).set_defaults({f"data.{k}": v for k, v in data_hparams.items()})
            super().parse_arguments(parser, args)


def needs_checkpoint(subcommand: str) -> str:
    """Without --ckpt_path Lightning evaluates a freshly initialised network and exits 0:
    ~10% accuracy that looks like a result. The message names the newest checkpoint here."""
    newest = max(Path(RUNS_DIR).glob("*/version_*/checkpoints/*.ckpt"), key=lambda p: p.stat().st_mtime, default=None)
    train = "train one: mnist-lightning fit -c configs/mnist.yaml"
    hint = f"the newest here is {newest}" if newest else f"none under ./{RUNS_DIR}; {train}"
    return f"{subcommand} needs a trained network: --ckpt_path CKPT ({hint})"


# Failures of the file system a user can fix (a full disk, a read-only or
# unwritable directory), told as such rather than as a traceback.
FIXABLE_OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR}


def main(args: ArgsType = None) -> None:
    """Entry point; user mistakes end with one line on stderr and exit status 1.

    Set MNIST_LIGHTNING_DEBUG=1 to see the full traceback instead.
    """
    try:
        MNISTCLI(args=args)
    except (UserError, OSError) as err:
        if os.environ.get("MNIST_LIGHTNING_DEBUG") or (isinstance(err, OSError) and err.errno not in FIXABLE_OS_ERRORS):
            raise
        if isinstance(err, OSError):
            err = UserError(f"cannot write {err.filename or 'an output file'}: {err.strerror}. Free space or "
                            "choose another place (e.g. --trainer.logger.init_args.save_dir DIR); "
                            "files written before are intact")  # fmt: skip
        sys.exit(f"mnist-lightning: error: {err}")


if __name__ == "__main__":
    main()
