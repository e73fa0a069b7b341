"""What a fit prints: its network's layers as it starts, and where it went as it ends."""

from __future__ import annotations

import os
import shlex
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.model_summary import summarize


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
    for name, kind, shape, params in zip(
        summary.layer_names, summary.layer_types, summary.out_sizes, summary.param_nums
    ):
        if name.startswith("net."):
            rows.append((f"{name} ({kind})", str(shape), f"{params:,}"))
    total, trainable = summary.total_parameters, summary.trainable_parameters
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows]
    rule = "-" * len(lines[0])
    # Mixed precision keeps the weights in float32: 4 bytes a parameter.
    return "\n".join(
        [
            lines[0],
            rule,
            *lines[1:],
            rule,
            f"Total params: {total:,} (trainable: {trainable:,}), {total * 4 / 1e6:.2f} MB",
        ]
    )


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
    """The run folder, the best checkpoint with its validation accuracy (else last.ckpt), and the next commands."""
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
        lines.append(
            "No checkpoint was saved: checkpoints are written when validation runs "
            f"(every {trainer.check_val_every_n_epoch} epoch(s), --trainer.check_val_every_n_epoch)"
        )
        return "\n".join(lines)
    lines += [
        "Next:",
        *(
            f"  mnist-lightning {command} --ckpt_path {_shown(ckpt)}{extra}"
            for command, extra in (("test", ""), ("report", ""), ("predict", " --data.predict_path my_digits/"))
        ),
    ]
    if trainer.logger is not None and trainer.logger.save_dir:
        lines.append(f"  tensorboard --logdir {_shown(trainer.logger.save_dir)}")
    return "\n".join(lines)
