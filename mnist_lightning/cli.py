"""`mnist-lightning {fit,validate,test,predict,report}`: LightningCLI over our module and data."""

from __future__ import annotations

import functools
import gc
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonargparse import Namespace
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch import Trainer
from lightning.pytorch.cli import (
    ArgsType,
    LightningArgumentParser,
    LightningCLI,
    SaveConfigCallback,
)
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info

from mnist_lightning import failures, quiet, runs, training
from mnist_lightning.callbacks import LayerSummary
from mnist_lightning.checkpoint import AtomicCheckpointIO, load_checkpoint
from mnist_lightning.data import RAW_FILES, MNISTDataModule, raw_dir
from mnist_lightning.errors import UserError
from mnist_lightning.files import refuse_overwriting_inputs
from mnist_lightning.host import tune_host
from mnist_lightning.module import MNISTClassifier
from mnist_lightning.parser import OneLineParser, check_config_files, config_files
from mnist_lightning.predict import CSVPredictionWriter
from mnist_lightning.runs import report_dir

DESCRIPTION = """Train the MNIST digit classifier of the Keras notebook (two convolutions, 225,034
parameters) with PyTorch Lightning; every fit is a run folder under runs/mnist/ that
TensorBoard shows. Evaluate its checkpoints, write a report, classify your own pictures."""


class RunConfig(SaveConfigCallback):
    """config.yaml in the run directory, written by `fit` (a resumed fit rewrites it);
    evaluations leave the training run's config as it is."""

    def setup(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        if stage == "fit":
            super().setup(trainer, pl_module, stage)


def _described(method: Callable, summary: str, ckpt_path: str) -> Callable:
    """`method` under a summary and argument texts written for the command line (Lightning's
    are written for Python callers); its signature is read through __wrapped__."""

    @functools.wraps(method)
    def subcommand(self: Trainer, *args: Any, **kwargs: Any) -> Any:
        return method(self, *args, **kwargs)

    subcommand.__doc__ = f"""{summary}

    Args:
        ckpt_path: {ckpt_path}
        weights_only: Lightning's loading option; every checkpoint is first checked and read weights-only here.
        verbose: Print the results table.
        return_predictions: Keep the predictions in memory (predict writes them to the CSV file anyway).
    """
    return subcommand


EVALUATED = ("The checkpoint to use; the model's and data's settings are read from it (without it, the command "
             "names the newest run's best checkpoint).")  # fmt: skip


class MNISTTrainer(Trainer):
    """How to train and evaluate (Lightning's Trainer settings)."""

    # Lightning's docstrings are written for Python callers; the CLI lists these first lines.
    fit = _described(Trainer.fit, "Train the network, or resume a run with --ckpt_path.",
                     "A checkpoint to resume: RUN/checkpoints/last.ckpt continues that run in its folder, with "
                     "its settings as the defaults (options given now win).")  # fmt: skip
    validate = _described(Trainer.validate, "Evaluate a checkpoint on the validation split.", EVALUATED)
    test = _described(Trainer.test, "Evaluate a checkpoint on the MNIST test set.", EVALUATED)
    predict = _described(Trainer.predict, "Classify your own pictures (or the test set) into a CSV file.", EVALUATED)

    def report(self, model: MNISTClassifier, datamodule: MNISTDataModule, ckpt_path: str | None = None,
               output_dir: str | None = None) -> None:  # fmt: skip
        """Evaluate a checkpoint on the test set and write metrics, a confusion matrix and curves.

        Args:
            ckpt_path: The checkpoint; model and data settings are read from it.
            output_dir: Where to write; default: report/ in the checkpoint's run folder, or
                <checkpoint name>-report/ beside a checkpoint kept outside a run. Files that
                an earlier report of another checkpoint (or anyone else) wrote there are never replaced.
        """
        # matplotlib and seaborn load only here
        from mnist_lightning.report import write_report

        assert ckpt_path is not None  # parse_arguments refused a missing one
        folder = report_dir(ckpt_path, output_dir)
        (results,) = self.test(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
        if self.is_global_zero:
            try:
                write_report(model, datamodule, results["test_loss"], ckpt_path, folder)
            except OSError as err:
                raise UserError(f"cannot write the report into {err.filename or folder}: {err.strerror}. "
                                "Free space, or choose another folder with --output_dir DIR") from err  # fmt: skip

    def export(self, model: MNISTClassifier, datamodule: MNISTDataModule, ckpt_path: str | None = None,
               output: str | None = None, format: Literal["onnx", "pt2"] = "onnx") -> None:  # fmt: skip
        """Write a checkpoint as ONNX or a torch.export program that runs without this package.

        Args:
            ckpt_path: The checkpoint; its network and pixel scaling are exported.
            output: The file to write; default: beside the checkpoint, named after it (.onnx or .pt2).
            format: onnx (for ONNX Runtime and other engines) or pt2 (torch.export, for PyTorch).
        """
        try:  # the exporters load only here
            from mnist_lightning.export import export, from_checkpoint, metadata
        except ImportError as err:
            raise UserError(f"export needs {err.name}: pip install -e '.[export]'") from err
        assert ckpt_path is not None  # parse_arguments refused a missing one
        path = export_path(ckpt_path, output, format)
        try:
            export(from_checkpoint(model, datamodule, ckpt_path), path, format,
                   metadata(ckpt_path, datamodule.scale, datamodule.shift))  # fmt: skip
        except OSError as err:
            raise UserError(f"cannot write {err.filename or path}: {err.strerror}. Free space, or choose another "
                            "file with --output FILE") from err  # fmt: skip
        print(f"Exported {ckpt_path} -> {path} ({path.stat().st_size / 1e6:.2f} MB, {format})")

    def serve(self, model: MNISTClassifier, datamodule: MNISTDataModule, ckpt_path: str | None = None,
              host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:  # fmt: skip
        """Serve a checkpoint over HTTP (LitServe), with a page to draw a digit on.

        Args:
            ckpt_path: The checkpoint to serve.
            host: The address to listen on: 127.0.0.1 (or localhost: this machine only), 0.0.0.0
                (every IPv4 interface) or :: (every IPv6 interface).
            port: The port, 1024 to 65535: POST /predict classifies a picture, GET / is the drawing page.
            workers: Inference processes, at least 1.
        """
        try:  # LitServe loads only here
            from mnist_lightning.export import from_checkpoint
            from mnist_lightning.serve import check_options, server
        except ImportError as err:
            raise UserError(f"serve needs {err.name}: pip install -e '.[serve]'") from err
        assert ckpt_path is not None  # parse_arguments refused a missing one
        host = check_options(host, port, workers)
        served = server(from_checkpoint(model, datamodule, ckpt_path), workers)
        print(f"Serving {ckpt_path} at http://{host}:{port}/ (Ctrl-C stops)", flush=True)
        served.run(host=host, port=port, generate_client_file=False)
        print("Server stopped", flush=True)


class MNISTCLI(LightningCLI):
    """Every `fit` writes its events, config and checkpoints into its own run directory,
    runs/mnist/<start time>; resuming continues it, and `validate`, `test` and `report`
    of a run's checkpoint add their results to it.

    Given a checkpoint, the model's and the data module's settings default to the ones
    it was trained with; options and config files given on the command line win.
    """

    def __init__(self, args: ArgsType = None, run: bool = True) -> None:
        # The progress bar redraws every 25 steps, ~2 times a second on this CPU
        # (Lightning reads tqdm's own variable; set TQDM_MINITERS to change it).
        os.environ.setdefault("TQDM_MINITERS", "25")
        tune_host()  # the process-wide CPU settings; the classes alone leave the process as it is
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
                    "class_path": "mnist_lightning.runs.RunLogger",
                    "init_args": {"save_dir": runs.RUNS_DIR, "name": "mnist", "default_hp_metric": False},
                },
                "callbacks": training.callbacks(),
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

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), "report": {"model", "datamodule"}, "export": {"model", "datamodule"},
                "serve": {"model", "datamodule"}}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(CSVPredictionWriter, "prediction_writer")

    def _parse_ckpt_path(self) -> None:
        """Replaced by parse_arguments: Lightning's copies the checkpoint's settings over the command line."""

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        argv = list(sys.argv[1:] if args is None else args) if args is None or isinstance(args, list) else []
        check_config_files(argv)
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path:
            if subcommand in ("validate", "test", "predict", "report", "export", "serve"):
                raise UserError(needs_checkpoint(subcommand))
            return
        # Every checkpoint is checked and read weights-only first: a file that would run
        # code, unpack to gigabytes or hold another network is refused here, with one line.
        checkpoint = load_checkpoint(ckpt_path)
        saved = {
            "model": _settings(checkpoint.get("hyper_parameters", {})),
            # predict_path is a per-command input, never taken from a checkpoint.
            "data": _settings(checkpoint.get("datamodule_hyper_parameters", {}), drop=("predict_path",)),
        }
        subparser = self._parser(subcommand)
        subparser.exit_on_error = False
        try:
            subparser.parse_object(saved, self.config[subcommand])
        except Exception as err:  # jsonargparse's ArgumentError: an unknown key or a wrong type
            raise UserError(f"{ckpt_path}: its saved settings do not fit this version of the model and data "
                            f"({' '.join(str(err).split())}); evaluate it with the version that wrote it") from err  # fmt: skip
        finally:
            subparser.exit_on_error = True
        subparser.set_defaults({f"{group}.{k}": v for group, values in saved.items() for k, v in values.items()})
        super().parse_arguments(parser, args)
        config = self.config[subcommand]
        if subcommand == "fit":
            check_resume(ckpt_path, checkpoint, saved, config)
        else:
            refuse_other_weight_settings(ckpt_path, saved, config)
        refuse_overwriting_inputs(outputs(subcommand, config, ckpt_path), inputs(argv, config, ckpt_path))
        if subcommand != "fit":
            # An evaluation draws no random numbers: "Seed set to 42" would say nothing.
            config.seed_everything = False
            self.checkpoint_epoch = checkpoint.get("epoch", 0)

    def before_instantiate_classes(self) -> None:
        """Points the run logger at the run this command belongs to."""
        failures.COMMAND.append(self.subcommand or "")
        if self.subcommand not in (None, "fit"):
            logging.getLogger(quiet.RANK_ZERO_LOGGER).addFilter(self.hardware_lines)
        config = self.config[self.subcommand] if self.subcommand else self.config
        if self.subcommand == "predict" and config.prediction_writer.output == "-":
            config.trainer.enable_progress_bar = False  # the bar writes to stdout, where the CSV goes
        logger = config.trainer.logger
        if not (isinstance(logger, Namespace) and logger.get("class_path") == "mnist_lightning.runs.RunLogger"):
            return  # the user's own logger, or none
        if self.subcommand in ("predict", "export", "serve"):  # nothing of theirs goes into a run
            config.trainer.logger = False
            return
        run = runs.run_of_checkpoint(config.ckpt_path) if config.get("ckpt_path") else None
        if run is None and self.subcommand == "fit" and SLURMEnvironment.detect():
            # A requeued SLURM job starts again under the same id: it must find its run,
            # where Lightning's requeue handler saved hpc_ckpt_N.ckpt, and resume from it.
            job = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID", "0"))
            task = os.environ.get("SLURM_ARRAY_TASK_ID")
            run = Path(logger.init_args.save_dir, logger.init_args.name, f"slurm-{job}" + (f"_{task}" if task else ""))
            config.trainer.default_root_dir = str(run)
        if run is not None and self.subcommand in ("validate", "test", "report"):
            stage = "validate" if self.subcommand == "validate" else "test"
            if runs.evaluated(run, runs.tag(f"{stage}_acc"), self.checkpoint_epoch):
                rank_zero_info(f"The run {run} holds this checkpoint's {stage} results already: not logged again")
                config.trainer.logger = False
                return
        if run is not None:
            logger.init_args.save_dir, logger.init_args.name, logger.init_args.version = str(run.parent.parent), run.parent.name, run.name
            runs.ACTIVE.append(run)
            if self.subcommand == "fit" and run.is_dir() and is_first_process():
                self.run_lock = runs.hold(run)  # open until the process ends

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # keep a plugin the user chose
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        unused: tuple[type, ...] = ()
        if self.subcommand != "predict":
            # Lightning calls every callback at every hook, six a training step, whether
            # it acts there or not.
            unused += (CSVPredictionWriter,)
        # The trainer's settings read as Lightning's instantiate_trainer reads them (under the subcommand, if any).
        if self._get(self.config_init, "trainer", default={}).get("enable_model_summary") is False:
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


def is_first_process() -> bool:
    """Whether this is rank 0 of a job, from the variables launchers set (ranks are known before the Trainer)."""
    return all(int(os.environ.get(name, "0")) == 0 for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID"))


def _settings(hparams: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """Saved hyperparameters as settings: keys starting with "_" are LightningCLI's bookkeeping."""
    return {k: v for k, v in hparams.items() if not k.startswith("_") and k not in drop}


# Settings the weights only mean something with: an evaluation or export with others computes
# something else (today the input scaling; a setting of this kind added later belongs here).
WEIGHT_SETTINGS = {"data": ("standardize",)}
# Settings whose change on resume changes what the run computes, said when they change
# (the model's: MNISTClassifier; the trainer's are compared with the run's config.yaml).
RESUME_SETTINGS = {"data": ("batch_size", "val_split", "standardize", "augment"),
                   "trainer": ("precision", "accumulate_grad_batches", "gradient_clip_val", "deterministic")}  # fmt: skip


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def refuse_other_weight_settings(ckpt_path: str, saved: dict[str, dict], config: Namespace) -> None:
    """UserError when an evaluation or export is told other WEIGHT_SETTINGS than its checkpoint's."""
    for group, names in WEIGHT_SETTINGS.items():
        for name in names:
            if name in saved[group] and config[group][name] != saved[group][name]:
                raise UserError(f"{ckpt_path} was trained with --{group}.{name} {_shown(saved[group][name])}, but this "
                                f"command sets {_shown(config[group][name])}: the weights expect the input they were "
                                f"trained on. Leave --{group}.{name} out (the checkpoint's is used)")  # fmt: skip


def check_resume(ckpt_path: str, checkpoint: dict[str, Any], saved: dict[str, dict], config: Namespace) -> None:
    """A resume that cannot work is refused; settings changed on resume that change the result are said."""
    if bool(saved["model"].get("one_cycle")) != config.model.one_cycle:
        was = str(bool(saved["model"].get("one_cycle"))).lower()
        raise UserError(f"{ckpt_path} was trained with one_cycle {was}; resume it with --model.one_cycle {was}, "
                        "or start a new run without --ckpt_path")  # fmt: skip
    done = checkpoint.get("epoch", 0) + 1
    max_epochs = config.trainer.max_epochs
    if max_epochs is not None and 0 <= max_epochs < done:
        raise UserError(f"{ckpt_path} has trained {done} epoch(s); --trainer.max_epochs {max_epochs} is fewer, so "
                        f"nothing would be trained and the run's config.yaml would say {max_epochs}. Give more than {done}")  # fmt: skip
    run = runs.run_of_checkpoint(ckpt_path)
    trained = yaml.safe_load((run / "config.yaml").read_text()) if run and (run / "config.yaml").is_file() else {}
    saved = {**saved, "trainer": (trained or {}).get("trainer") or {}}
    changed = [f"{name} {_shown(saved[group][name])} -> {_shown(config[group][name])}"
               for group, names in RESUME_SETTINGS.items() for name in names
               if name in saved[group] and config[group][name] != saved[group][name]]  # fmt: skip
    if changed:
        rank_zero_info(f"Resuming with new data and trainer settings: {', '.join(changed)}")


def inputs(argv: list[str], config: Namespace, ckpt_path: str) -> list[Path]:
    """What a command reads: the checkpoint, the config files and the MNIST files (pictures: CSVPredictionWriter)."""
    data = raw_dir(config.data.data_dir)
    return [Path(ckpt_path), *map(Path, config_files(argv)), *(data / name for name in RAW_FILES)]


def outputs(subcommand: str, config: Namespace, ckpt_path: str) -> dict[str, Path]:
    """The files a command writes, by the option that names them (`fit` writes only into its run)."""
    if subcommand == "predict" and config.prediction_writer.output != "-":
        return {"--prediction_writer.output": Path(config.prediction_writer.output)}
    if subcommand == "export":
        return {"--output": export_path(ckpt_path, config.output, config.format)}
    if subcommand == "report":
        from mnist_lightning.report import REPORT_FILES, check_report_dir

        folder = report_dir(ckpt_path, config.output_dir)
        check_report_dir(folder, ckpt_path)
        return {f"--output_dir {folder}:": folder / name for name in REPORT_FILES}
    return {}


def export_path(ckpt_path: str, output: str | None, fmt: str) -> Path:
    """Where `export` writes: --output, or beside the checkpoint; a name ending in the other format's suffix is refused."""
    path = Path(output) if output else Path(ckpt_path).with_suffix(f".{fmt}")
    other = {".onnx", ".pt2"} - {f".{fmt}"}
    if path.suffix in other:
        raise UserError(f"--output {output} ends in {path.suffix}, but --format is {fmt}: name it .{fmt}, "
                        f"or give --format {path.suffix[1:]}")  # fmt: skip
    return path


def needs_checkpoint(subcommand: str) -> str:
    """Without --ckpt_path Lightning evaluates a freshly initialised network and exits 0:
    ~10% accuracy that looks like a result. The message names the best checkpoint of the newest run."""
    best = runs.best_checkpoint_hint()
    train = "train one: mnist-lightning fit -c configs/mnist.yaml"
    hint = f"the best of the newest run is {best}" if best else f"none under ./{runs.RUNS_DIR}; {train}"
    return f"{subcommand} needs a trained network: --ckpt_path CKPT ({hint})"


def main(args: ArgsType = None) -> None:
    """Entry point: failures a user can fix end with one line on stderr, a stop by a
    signal with a line saying what was saved; both with a non-zero exit status.

    Set MNIST_LIGHTNING_DEBUG=1 to see the full traceback instead.
    """
    failures.run_reporting_failures(lambda: MNISTCLI(args=args))


def console() -> None:
    """The `mnist-lightning` command: main(), then a quick exit.

    What the command made lives until the process ends; freezing it spares the interpreter's
    garbage collections over torch's and Lightning's objects at exit, ~0.9 s of every command
    (docs/speed.md).
    """
    try:
        main()
    finally:
        gc.freeze()


if __name__ == "__main__":
    main()
