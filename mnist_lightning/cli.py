"""`mnist-lightning {fit,validate,test,predict,report}`: LightningCLI over our module and data."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch import Trainer
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info

from mnist_lightning import quiet, runs, settings, training
from mnist_lightning.checkpoint import load_checkpoint
from mnist_lightning.console import check_config_files
from mnist_lightning.data import MNISTDataModule
from mnist_lightning.errors import UserError
from mnist_lightning.failures import Command
from mnist_lightning.files import refuse_overwriting_inputs
from mnist_lightning.host import tune_host
from mnist_lightning.logger import evaluated
from mnist_lightning.module import MNISTClassifier
from mnist_lightning.parser import OneLineParser, invoked_subcommand, plain
from mnist_lightning.predict import CSVPredictionWriter
from mnist_lightning.subcommands import MNISTTrainer
from mnist_lightning.summaries import LayerSummary

DESCRIPTION = """Train the MNIST digit classifier of the Keras notebook (two convolutions, 225,034
parameters) with PyTorch Lightning; every fit is a run folder under runs/mnist/ that
TensorBoard shows. Evaluate its checkpoints, write a report, classify your own pictures."""


class RunConfig(SaveConfigCallback):
    """config.yaml in the run directory, written by `fit` (a resumed fit rewrites it);
    evaluations leave the training run's config as it is."""

    def setup(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        if stage == "fit":
            super().setup(trainer, pl_module, stage)


class MNISTCLI(LightningCLI):
    """Every `fit` writes its events, config and checkpoints into its own run directory,
    runs/mnist/<start time>; resuming continues it, and `validate`, `test` and `report`
    of a run's checkpoint add their results to it.

    Given a checkpoint, the model's and the data module's settings default to the ones
    it was trained with; options and config files given on the command line win.
    """

    def __init__(self, args: ArgsType = None, run: bool = True, command: Command | None = None) -> None:
        self.command = command or Command()  # what main() reports if the command does not finish
        self.argv = list(sys.argv[1:] if args is None else args) if args is None or isinstance(args, list) else []
        self.hardware_lines = quiet.HardwareLines()
        try:
            self._start(args, run)
        finally:
            logging.getLogger(quiet.RANK_ZERO_LOGGER).removeFilter(self.hardware_lines)

    def _start(self, args: ArgsType, run: bool) -> None:
        super().__init__(
            MNISTClassifier,
            MNISTDataModule,
            trainer_class=MNISTTrainer,
            parser_class=OneLineParser,
            save_config_callback=RunConfig,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={
                "logger": {
                    "class_path": "mnist_lightning.logger.RunLogger",
                    "init_args": {"save_dir": runs.RUNS_DIR, "name": "mnist", "default_hp_metric": False},
                },
                "callbacks": training.callbacks(requeue_signals=self.command.requeue),
            },
            # configs/' seed, so that --help shows what a fit uses (Lightning's default, True,
            # draws a random one). Evaluations do not seed (parse_arguments).
            seed_everything_default=42,
            # The module builds its own optimizer and schedule (--model.lr, --model.one_cycle).
            auto_configure_optimizers=False,
            parser_kwargs={"description": DESCRIPTION},
            args=args,
            run=run,
        )

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]
        """The subcommand typed, or all of them (for the listing and a mistyped name).

        Lightning builds a parser per subcommand by reading the Trainer's signature, a quarter
        of a second of every command's start for six parsers it does not use (docs/speed.md).
        """
        ours = {name: {"model", "datamodule"} for name in ("report", "export", "serve")}
        every = {**LightningCLI.subcommands(), **ours}
        typed = invoked_subcommand(self.argv, every)
        return {typed: every[typed]} if typed else every

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(CSVPredictionWriter, "prediction_writer")

    def _parse_ckpt_path(self) -> None:
        """Replaced by parse_arguments: Lightning's (a private method, no public hook) copies the
        checkpoint's settings over the command line."""

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        argv = self.argv
        check_config_files(argv)
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path:
            if subcommand in ("validate", "test", "predict", "report", "export", "serve"):
                raise UserError(settings.needs_checkpoint(subcommand))
            return
        # Every checkpoint is checked and read weights-only first: a file that would run
        # code, unpack to gigabytes or hold another network is refused here, with one line.
        checkpoint = load_checkpoint(ckpt_path)
        saved = {
            "model": settings.saved_settings(checkpoint.get("hyper_parameters", {})),
            # predict_path is a per-command input, never taken from a checkpoint.
            "data": settings.saved_settings(checkpoint.get("datamodule_hyper_parameters", {}), drop=("predict_path",)),
        }
        subparser = self._parser(subcommand)  # private: LightningCLI has no public getter for it
        subparser.exit_on_error = False
        try:
            subparser.parse_object(saved, self.config[subcommand])
        except Exception as err:  # jsonargparse's ArgumentError: an unknown key or a wrong type
            raise UserError(
                f"{ckpt_path}: its saved settings do not fit this version of the model and data "
                f"({' '.join(str(err).split())}); evaluate it with the version that wrote it"
            ) from err
        finally:
            subparser.exit_on_error = True
        subparser.set_defaults({f"{group}.{k}": v for group, values in saved.items() for k, v in values.items()})
        super().parse_arguments(parser, args)
        config = self.config[subcommand]
        if subcommand == "report":  # the one place its folder is chosen
            config.output_dir = str(runs.report_dir(ckpt_path, config.output_dir))
        if subcommand == "fit":
            settings.check_resume(ckpt_path, checkpoint, saved, config)
        else:
            settings.refuse_other_weight_settings(ckpt_path, saved, config)
        refuse_overwriting_inputs(
            settings.outputs(subcommand, config, ckpt_path), settings.inputs(argv, config, ckpt_path)
        )
        if subcommand != "fit":
            # An evaluation draws no random numbers: "Seed set to 42" would say nothing.
            config.seed_everything = False
            self.checkpoint_epoch = checkpoint.get("epoch", 0)

    def before_instantiate_classes(self) -> None:
        """Points the run logger at the run this command belongs to."""
        self.command.name = self.subcommand or "the command"
        if self.subcommand not in (None, "fit"):
            logging.getLogger(quiet.RANK_ZERO_LOGGER).addFilter(self.hardware_lines)
        config = self.config[self.subcommand] if self.subcommand else self.config
        for key in ("model", "data", "prediction_writer") if self.subcommand else ():
            config[key] = Namespace({name: plain(value) for name, value in vars(config[key]).items()})
        if self.subcommand == "predict" and config.prediction_writer.output == "-":
            config.trainer.enable_progress_bar = False  # the bar writes to stdout, where the CSV goes
        logger = config.trainer.logger
        if not (isinstance(logger, Namespace) and logger.get("class_path") == "mnist_lightning.logger.RunLogger"):
            return  # the user's own logger, or none
        if self.subcommand in ("predict", "export", "serve"):  # nothing of theirs goes into a run
            config.trainer.logger = False
            return
        run = self._run(config)
        if run is None:
            return  # the run holds these results already
        init = logger.init_args
        init.save_dir, init.name, init.version = str(run.parent.parent), run.parent.name, run.name
        if self.command.run is not None and run.is_dir():  # a SLURM job's first run is made by the logger
            self.command.lock = runs.hold(run)  # open until the command ends

    def _run(self, config: Namespace) -> Path | None:
        """The run this command writes into: the checkpoint's, a SLURM job's, or a new one;
        None when the checkpoint's run holds this evaluation already."""
        init = config.trainer.logger.init_args
        run = runs.run_of_checkpoint(config.ckpt_path) if config.get("ckpt_path") else None
        if run is None and self.subcommand == "fit":
            run = runs.slurm_run(Path(init.save_dir, init.name))
            if run is not None:  # where Lightning's requeue saves, and a requeued job resumes from
                config.trainer.default_root_dir = str(run)
        if run is not None and self.subcommand in ("validate", "test", "report"):
            stage = "validate" if self.subcommand == "validate" else "test"
            if evaluated(run, f"accuracy/{stage}", self.checkpoint_epoch):
                rank_zero_info(f"The run {run} holds this checkpoint's {stage} results already: not logged again")
                config.trainer.logger = False
                return None
        if not runs.is_first_process():  # rank 0 makes or holds the run; Lightning gives the other ranks its folder
            return run or Path(init.save_dir, init.name, runs.stamp())
        if run is None:
            run, self.command.created = runs.claim(Path(init.save_dir, init.name))
            self.command.claimed = True
        self.command.run = run
        return run

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # keep a plugin the user chose
            trainer.strategy.checkpoint_io = training.AtomicCheckpointIO()
        unused: tuple[type, ...] = ()
        if self.subcommand != "predict":  # Lightning calls every callback at six hooks a step, acting or not
            unused += (CSVPredictionWriter,)
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.trainer.get("enable_model_summary") is False:
            # Lightning's flag only stops it adding its own summary; LayerSummary replaces that one.
            unused += (LayerSummary,)
        trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, unused)]
        training.with_run_progress_bar(trainer)
        # Resuming continues in the run's own checkpoints folder, which is not empty by design.
        warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
        if self.subcommand not in (None, "fit"):
            # Evaluations write no checkpoints, so where the checkpoint callbacks would write is moot.
            warnings.filterwarnings("ignore", message="The dirpath has changed from")
        return trainer


def main(args: ArgsType = None) -> None:
    """Entry point: failures a user can fix end with one line on stderr, a stop by a
    signal with a line saying what was saved; both with a non-zero exit status.

    Set MNIST_LIGHTNING_DEBUG=1 to see the full traceback instead.
    """
    # The progress bar redraws every 25 steps instead of 10: a redraw is not free (docs/speed.md;
    # Lightning reads tqdm's own variable, so TQDM_MINITERS changes it).
    os.environ.setdefault("TQDM_MINITERS", "25")
    tune_host()  # the process-wide CPU settings
    quiet.install()
    command = Command()
    command.run_reporting_failures(lambda: MNISTCLI(args=args, command=command))


if __name__ == "__main__":
    main()
