"""What a run does besides the recipe: checkpoints, the summary, the progress bar, the
end-of-fit block, exact resumes and SLURM's requeue."""

from __future__ import annotations

import os
import shlex
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.model_summary import summarize

from mnist_lightning import failures


class LayerSummary(ModelSummary):
    """The network's layers as Keras' model.summary() lists them: each layer's output shape
    and exact parameter count, and the total once (Lightning's table also lists the metric
    objects as layers and rounds the counts)."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            print(layer_table(pl_module))


def layer_table(pl_module: L.LightningModule) -> str:
    """The rows of `pl_module.net` (one input image through it), and the parameter total."""
    with warnings.catch_warnings():
        # Under mixed precision Lightning calls its size estimate inaccurate; the size here is float32's.
        warnings.filterwarnings("ignore", message="Precision .*-mixed is not supported by the model summary")
        summary = summarize(pl_module, max_depth=2)
    rows = [("Layer (type)", "Output shape", "Params")]
    for name, kind, shape, params in zip(summary.layer_names, summary.layer_types, summary.out_sizes, summary.param_nums):
        if name.startswith("net."):
            rows.append((f"{name} ({kind})", str(shape), f"{params:,}"))
    total, trainable = summary.total_parameters, summary.trainable_parameters
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows]
    rule = "-" * len(lines[0])
    # Mixed precision keeps the weights in float32: 4 bytes a parameter.
    return "\n".join([lines[0], rule, *lines[1:], rule,
                      f"Total params: {total:,} (trainable: {trainable:,}), {total * 4 / 1e6:.2f} MB"])  # fmt: skip


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

            state_dict = {**state_dict, "dirpath": self.dirpath,
                          **{key: moved(state_dict.get(key, "")) for key in ("best_model_path", "kth_best_model_path", "last_model_path")},
                          "best_k_models": {moved(k): v for k, v in state_dict.get("best_k_models", {}).items()}}  # fmt: skip
        super().load_state_dict(state_dict)


class RunProgressBar(TQDMProgressBar):
    """Lightning's progress bar without `v_num`, the last four characters of the run's name."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, int | str | float | dict[str, float]]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


class FitSummary(L.Callback):
    """Ends `fit` with where the run went and the commands that take it further."""

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.interrupted:
            return
        print(fit_summary(trainer), flush=True)


def _shown(path: str | Path) -> str:
    """A path as a user pastes it: relative to the current folder when under it or beside it
    (a notebook in notebooks/ and runs/ in the repository), else absolute; quoted for a shell."""
    relative = os.path.relpath(Path(path).absolute())
    return shlex.quote(relative if relative.split(os.sep).count("..") <= 1 else str(Path(path).absolute()))


def fit_summary(trainer: L.Trainer) -> str:
    """The run folder, the best checkpoint with its val_acc (else last.ckpt), and the next commands."""
    checkpoints = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)]
    best = next((c for c in checkpoints if c.monitor and c.best_model_path), None)
    last = next((c.last_model_path or c.best_model_path for c in checkpoints if c.last_model_path or not c.monitor), "")
    lines = []
    if trainer.logger is not None and trainer.logger.log_dir:
        lines.append(f"Run: {_shown(trainer.logger.log_dir)}")
    if best is not None:
        score = f"{best.monitor} {best.best_model_score:.4f}" if best.best_model_score is not None else best.monitor
        ckpt = best.best_model_path
        lines.append(f"Best checkpoint ({score}): {_shown(ckpt)}")
    elif last:
        ckpt = last
        lines.append(f"Last checkpoint (no validation ran): {_shown(ckpt)}")
    else:
        lines.append("No checkpoint was saved: checkpoints are written when validation runs "
                     f"(every {trainer.check_val_every_n_epoch} epoch(s), --trainer.check_val_every_n_epoch)")  # fmt: skip
        return "\n".join(lines)
    lines += ["Next:", *(f"  mnist-lightning {command} --ckpt_path {_shown(ckpt)}{extra}" for command, extra in
                         (("test", ""), ("report", ""), ("predict", " --data.predict_path my_digits/")))]  # fmt: skip
    if trainer.logger is not None and trainer.logger.save_dir:
        lines.append(f"  tensorboard --logdir {_shown(trainer.logger.save_dir)}")
    return "\n".join(lines)


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
    instead of from inside the signal handler (see failures._on_requeue_signal)."""

    def _act(self, trainer: L.Trainer) -> None:
        environment = trainer._accelerator_connector.cluster_environment
        if failures.REQUEUE_SIGNALS and isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
            signum = failures.REQUEUE_SIGNALS.pop()
            failures.REQUEUE_SIGNALS.clear()
            trainer._signal_connector._slurm_sigusr_handler_fn(signum, None)  # Lightning's own requeue

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._act(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._act(trainer)
