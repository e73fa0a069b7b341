"""A figure of hard phone photos next to the 28x28 digit the network sees, before and after a change
of the preprocessing.

    python scripts/hard_pictures.py --set robustness --before REV [--figure docs/hard_pictures.png]

From a robustness set (scripts/robustness_set.py), one picture of each photographed source
and condition that the preprocessing at REV (git show REV:mnist_lightning/preprocess.py) reads
worst, judged by how little of the digit it keeps; each shown as given, as REV's preprocessing
made it, and as the installed one makes it.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image
from preprocess_speed import module_at, read

from mnist_lightning import pictures

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def digit(mnist_style, path: Path) -> np.ndarray:
    """The digit mnist_style makes of the picture at path; a blank one where it finds none."""
    try:
        return read(path, mnist_style)
    except ValueError:
        return np.zeros((28, 28), np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, default=Path("robustness"))
    parser.add_argument("--before", required=True, help="a git revision")
    parser.add_argument("--figure", type=Path, default=Path("hard_pictures.png"))
    args = parser.parse_args()
    before = module_at(args.before).mnist_style
    rows = [r for r in csv.DictReader((args.set / "labels.csv").open()) if r.get("condition")]
    chosen = []
    for condition in sorted({r["condition"] for r in rows}):
        for source in sorted({r["source"] for r in rows}):
            group = [r for r in rows if (r["source"], r["condition"]) == (source, condition)][:40]
            if not group:
                continue
            # The worst for REV: the least overlap between its digit and the installed one's.
            pairs = [
                (r, digit(before, args.set / r["path"]), digit(pictures.mnist_style, args.set / r["path"]))
                for r in group
            ]
            chosen.append(
                min(pairs, key=lambda p: ((p[1] > 64) & (p[2] > 64)).sum() / max(1, ((p[1] > 64) | (p[2] > 64)).sum()))
            )
    chosen = chosen[:: max(1, len(chosen) // 8)][:8]
    fig, axes = plt.subplots(3, len(chosen), figsize=(1.6 * len(chosen), 5.2), squeeze=False)
    for col, (row, old, new) in enumerate(chosen):
        with Image.open(args.set / row["path"]) as image:
            axes[0, col].imshow(image.convert("RGB"))
        axes[0, col].set_title(f"{row['label']}: {row['source']},\n{row['condition']}", fontsize=7)
        axes[1, col].imshow(old, cmap="gray")
        axes[2, col].imshow(new, cmap="gray")
        for ax in axes[:, col]:
            ax.axis("off")
    for ax, label in zip(axes[:, 0], ("picture", "before", "after")):
        ax.text(-0.12, 0.5, label, transform=ax.transAxes, rotation=90, va="center", ha="right", fontsize=9)
    fig.suptitle("Phone photos, and the 28x28 digit the network sees: before and after", fontsize=10)
    fig.tight_layout()
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.figure, dpi=110)
    print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
