"""What a checkpoint's saved settings allow: the checks a command passes before any work
(weights-bound settings, resumes), and the files a command reads and writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from jsonargparse import Namespace
from lightning.pytorch.utilities import rank_zero_info

from mnist_lightning import runs
from mnist_lightning.console import config_files
from mnist_lightning.errors import UserError
from mnist_lightning.mnist_files import RAW_FILES, raw_dir


def saved_settings(hparams: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """Saved hyperparameters as settings: keys starting with "_" are LightningCLI's bookkeeping."""
    return {k: v for k, v in hparams.items() if not k.startswith("_") and k not in drop}


# Settings the weights only mean something with: an evaluation or export with others computes
# something else (today the input scaling; a setting of this kind added later belongs here).
WEIGHT_SETTINGS = {"data": ("standardize",)}
# Settings whose change on resume changes what the run computes, said when they change
# (the model's: MNISTClassifier; the trainer's are compared with the run's config.yaml).
RESUME_SETTINGS = {
    "data": ("batch_size", "val_split", "standardize", "augment"),
    "trainer": ("precision", "accumulate_grad_batches", "gradient_clip_val", "deterministic"),
}


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def refuse_other_weight_settings(ckpt_path: str, saved: dict[str, dict], config: Namespace) -> None:
    """UserError when an evaluation or export is told other WEIGHT_SETTINGS than its checkpoint's."""
    for group, names in WEIGHT_SETTINGS.items():
        for name in names:
            if name in saved[group] and config[group][name] != saved[group][name]:
                raise UserError(
                    f"{ckpt_path} was trained with --{group}.{name} {_shown(saved[group][name])}, but this "
                    f"command sets {_shown(config[group][name])}: the weights expect the input they were "
                    f"trained on. Leave --{group}.{name} out (the checkpoint's is used)"
                )


def check_resume(ckpt_path: str, checkpoint: dict[str, Any], saved: dict[str, dict], config: Namespace) -> None:
    """A resume that cannot work is refused; settings changed on resume that change the result are said."""
    if bool(saved["model"].get("one_cycle")) != config.model.one_cycle:
        was = str(bool(saved["model"].get("one_cycle"))).lower()
        raise UserError(
            f"{ckpt_path} was trained with one_cycle {was}; resume it with --model.one_cycle {was}, "
            "or start a new run without --ckpt_path"
        )
    done = checkpoint.get("epoch", 0) + 1
    max_epochs = config.trainer.max_epochs
    if max_epochs is not None and 0 <= max_epochs < done:
        raise UserError(
            f"{ckpt_path} has trained {done} epoch(s); --trainer.max_epochs {max_epochs} is fewer, so "
            f"nothing would be trained and the run's config.yaml would say {max_epochs}. Give more than {done}"
        )
    run = runs.run_of_checkpoint(ckpt_path)
    trained = yaml.safe_load((run / "config.yaml").read_text()) if run and (run / "config.yaml").is_file() else {}
    saved = {**saved, "trainer": (trained or {}).get("trainer") or {}}
    changed = [
        f"{name} {_shown(saved[group][name])} -> {_shown(config[group][name])}"
        for group, names in RESUME_SETTINGS.items()
        for name in names
        if name in saved[group] and config[group][name] != saved[group][name]
    ]
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

        folder = Path(config.output_dir)  # chosen by the CLI (report_dir)
        check_report_dir(folder, ckpt_path)
        return {f"--output_dir {folder}:": folder / name for name in REPORT_FILES}
    return {}


def export_path(ckpt_path: str, output: str | None, fmt: str) -> Path:
    """Where `export` writes: --output, or beside the checkpoint; a name ending in the other format's suffix is refused."""
    path = Path(output) if output else Path(ckpt_path).with_suffix(f".{fmt}")
    other = {".onnx", ".pt2"} - {f".{fmt}"}
    if path.suffix in other:
        raise UserError(
            f"--output {output} ends in {path.suffix}, but --format is {fmt}: name it .{fmt}, "
            f"or give --format {path.suffix[1:]}"
        )
    return path


def needs_checkpoint(subcommand: str) -> str:
    """Without --ckpt_path Lightning evaluates a freshly initialised network and exits 0:
    ~10% accuracy that looks like a result. The message names the best checkpoint of the newest run."""
    best = runs.best_checkpoint_hint()
    train = "train one: mnist-lightning fit -c configs/mnist.yaml"
    hint = f"the best of the newest run is {best}" if best else f"none under ./{runs.RUNS_DIR}; {train}"
    return f"{subcommand} needs a trained network: --ckpt_path CKPT ({hint})"
