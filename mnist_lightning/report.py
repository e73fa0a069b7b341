"""`mnist-lightning report`: the notebook's evaluation half, from a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.classification import (
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from mnist_lightning import plots
from mnist_lightning.callbacks import TestResults
from mnist_lightning.data import MNISTDataModule
from mnist_lightning.errors import UserError
from mnist_lightning.files import write_text
from mnist_lightning.logger import PER_EPOCH, scalar_events
from mnist_lightning.runs import run_of_checkpoint


def run_scalars(run_dir: Path) -> dict[str, list[float]]:
    """Every scalar series of a run, values only."""
    return {tag: [e.value for e in series] for tag, series in scalar_events(run_dir).items()}


def epoch_series(run_dir: Path) -> dict[str, dict[int, float]]:
    """The per-epoch series of a run, {metric: {epoch (from 1): value}}; where an epoch was
    logged twice (a run resumed from an earlier checkpoint), the later value."""
    series: dict[str, dict[int, float]] = {}
    for name, events in scalar_events(run_dir).items():
        if PER_EPOCH.fullmatch(name):
            for event in sorted(events, key=lambda e: e.wall_time):
                series.setdefault(name, {})[event.step + 1] = event.value
    return series


def class_metrics(confusion: torch.Tensor, probabilities: torch.Tensor, labels: torch.Tensor, test_loss: float) -> dict:
    """metrics.json from what `test` computed: its confusion matrix (rows: true label) and loss."""
    per_class = {
        name: fn(probabilities, labels, num_classes=10, average=None).tolist()
        for name, fn in (
            ("precision", multiclass_precision),
            ("recall", multiclass_recall),
            ("f1", multiclass_f1_score),
        )
    }
    support = confusion.sum(1).tolist()
    return {
        "test_acc": confusion.trace().item() / len(labels),
        "test_loss": test_loss,
        "num_samples": len(labels),
        "per_class": {
            str(d): {**{k: round(v[d], 6) for k, v in per_class.items()}, "support": support[d]} for d in range(10)
        },
        "confusion_matrix": confusion.tolist(),
    }


def summary(metrics: dict) -> str:
    per_class = metrics["per_class"]
    weakest = sorted(per_class, key=lambda d: per_class[d]["f1"])[:3]
    cm = np.array(metrics["confusion_matrix"])
    np.fill_diagonal(cm, 0)
    pairs = sorted(((cm[t, p], t, p) for t in range(10) for p in range(10) if cm[t, p]), reverse=True)[:3]
    return "\n".join(
        [
            f"Test accuracy {metrics['test_acc']:.4f}, loss {metrics['test_loss']:.4f} on {metrics['num_samples']} images",
            "  weakest classes (F1): " + ", ".join(f"{d} ({per_class[d]['f1']:.4f})" for d in weakest),
            "  most frequent confusions (true -> predicted): " + ", ".join(f"{t}->{p} x{n}" for n, t, p in pairs),
        ]
    )


REPORT_FILES = ("metrics.json", "confusion_matrix.png", "learning_curves.png", "samples.png", "misclassified.png")


def earlier_report(folder: Path, ckpt_path: str | Path) -> list[str]:
    """The files an earlier report of this checkpoint wrote into folder (its metrics.json lists them)."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(metrics, dict) or metrics.get("checkpoint") != str(Path(ckpt_path).resolve()):
        return []
    return [name for name in metrics.get("files", []) if name in REPORT_FILES]


def check_report_dir(folder: Path, ckpt_path: str | Path) -> None:
    """UserError if folder holds a file a report writes that no earlier report of this checkpoint wrote."""
    ours = earlier_report(folder, ckpt_path)
    theirs = [name for name in REPORT_FILES if (folder / name).is_symlink() or (folder / name).exists()]
    theirs = [name for name in theirs if name not in ours]
    if theirs:
        raise UserError(
            f"{folder} already holds {', '.join(theirs)}, not written by a report of {ckpt_path}; "
            "report replaces nothing else: choose another folder with --output_dir DIR"
        )


def write_report(
    results: TestResults, datamodule: MNISTDataModule, test_loss: float, ckpt_path: str, out: Path
) -> Path:
    """After a `test` run: metrics.json and the figures, into the folder out."""
    run_dir = run_of_checkpoint(ckpt_path)
    probabilities = results.probabilities
    assert datamodule.test_set is not None
    labels, images = datamodule.test_set.labels, datamodule.test_set.images[:, 0].numpy()
    metrics = class_metrics(results.matrix, probabilities, labels, test_loss)
    series = epoch_series(run_dir) if run_dir else {}
    curves = any(tag in series for tag in ("loss/train", "loss/val"))
    written = [name for name in REPORT_FILES if curves or name != "learning_curves.png"]
    ours = earlier_report(out, ckpt_path)  # check_report_dir has refused a folder holding anything else
    metrics = {**metrics, "checkpoint": str(Path(ckpt_path).resolve()), "files": written}
    write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    plots.save(plots.confusion_figure(np.array(metrics["confusion_matrix"])), out / "confusion_matrix.png")
    if curves:
        plots.save(plots.curves_figure(series), out / "learning_curves.png")
    else:
        if "learning_curves.png" in ours:  # the same checkpoint's earlier curves would now be stale
            (out / "learning_curves.png").unlink(missing_ok=True)
        print(f"No training curves for {ckpt_path} (it is not in a run with event files): learning_curves.png skipped")

    confidence, predicted = probabilities.max(1)
    pick = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:32]
    captions = [f"true {labels[i]} / pred {predicted[i]}" for i in pick.tolist()]
    plots.save(plots.digits_figure(images[pick], captions, "Random test digits"), out / "samples.png")
    wrong = torch.nonzero(predicted != labels).flatten()
    title = f"Most confidently wrong ({len(wrong)} wrong in all)"
    wrong = wrong[confidence[wrong].argsort(descending=True)][:32]
    captions = [f"true {labels[i]} / pred {predicted[i]}\n{confidence[i]:.0%}" for i in wrong.tolist()]
    plots.save(plots.digits_figure(images[wrong], captions, title), out / "misclassified.png")
    print(summary(metrics))
    print(f"Report written to {out}")
    return out
