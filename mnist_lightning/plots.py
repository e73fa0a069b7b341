"""The notebook's figures: confusion matrix, learning curves and digit grids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mnist_lightning.files import write_atomically

DIGITS = [str(d) for d in range(10)]


def _subplots(
    *grid: int, figsize: tuple[float, float], dpi: float | None = None, squeeze: bool = True
) -> tuple[Figure, Any]:
    """A figure outside pyplot: no backend or display is chosen for the process, and the
    figure is freed with its last reference."""
    fig = Figure(figsize=figsize, dpi=dpi)
    return fig, fig.subplots(*grid, squeeze=squeeze)


def confusion_figure(cm: np.ndarray) -> Figure:
    """Counts, and rows normalized to recall, side by side (rows: true digit)."""
    fig, axes = _subplots(1, 2, figsize=(13, 6.2))
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    for ax, data, fmt, title in ((axes[0], cm, "d", "counts"), (axes[1], rows, ".2f", "row-normalized (recall)")):
        sns.heatmap(
            data,
            annot=True,
            fmt=fmt,
            cmap="Blues",
            cbar=False,
            square=True,
            ax=ax,
            xticklabels=DIGITS,
            yticklabels=DIGITS,
            annot_kws={"size": 10},
        )
        ax.set(xlabel="predicted digit", ylabel="true digit", title=f"Confusion matrix, {title}")
    fig.tight_layout()
    return fig


def confusion_thumbnail(cm: np.ndarray) -> Figure:
    """The counts alone, drawn to be read at TensorBoard's image-card size (~400 px)."""
    fig, ax = _subplots(figsize=(4.2, 4.0), dpi=100)
    sns.heatmap(
        cm,
        annot=True,
        fmt="d",
        cmap="Blues",
        cbar=False,
        square=True,
        ax=ax,
        linewidths=0.5,
        xticklabels=DIGITS,
        yticklabels=DIGITS,
        annot_kws={"size": 8},
    )
    ax.set(xlabel="predicted digit", ylabel="true digit", title="Confusion matrix (test set)")
    fig.tight_layout()
    return fig


STAGE_NAMES = {"train": "training", "val": "validation"}


def curves_figure(series: dict[str, dict[int, float]]) -> Figure:
    """Loss and accuracy, training against validation, as the notebook plots them; each
    value at the epoch it was logged for ({"loss/train": {epoch: value}, ...}, epochs from 1),
    so a run that validates every few epochs or was resumed is drawn where it belongs."""
    fig, axes = _subplots(1, 2, figsize=(11, 4))
    for ax, quantity in zip(axes, ("loss", "accuracy")):
        for stage, name in STAGE_NAMES.items():
            points = sorted(series.get(f"{quantity}/{stage}", {}).items())
            ax.plot(
                [e for e, _ in points], [v for _, v in points], label=name, marker="o" if len(points) <= 30 else None
            )
        ax.set(xlabel="epoch", ylabel=quantity, title=f"{quantity.capitalize()} per epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def digits_figure(images: np.ndarray, captions: list[str], title: str, columns: int = 8) -> Figure:
    """A grid of 28x28 digits (white ink on black, as MNIST stores them) with a caption each."""
    rows = max(1, -(-len(images) // columns))
    fig, axes = _subplots(rows, columns, figsize=(columns * 1.3, rows * 1.75), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(caption, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save(fig: Figure, path: str | Path) -> Path:
    """Saves atomically."""
    return write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
