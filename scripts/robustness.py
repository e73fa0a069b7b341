"""Accuracy of checkpoints on a robustness set (scripts/robustness_set.py), per source, with the worst cases.

    python scripts/robustness.py --set robustness --ckpt reference=RUN1/checkpoints/BEST.ckpt \\
        --ckpt best=RUN2/checkpoints/BEST.ckpt [--figure docs/robustness.png]

Each checkpoint classifies the set through `mnist-lightning predict`, as a user's
pictures would be. The tables give accuracy per source and per style, the most common
confusions, and how many answers `predict` marked doubtful (and how often those were
right), and for the photographed sources the same per condition (even light, uneven
light, shadow, an object at the edge); the figure shows each checkpoint's most confident
mistakes, the picture as given beside the 28x28 digit the network saw.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from PIL import Image

from mnist_lightning.pictures import read_digit

CLI = [sys.executable, "-m", "mnist_lightning"]


def predict(ckpt: Path, pictures: Path) -> dict[str, dict[str, str]]:
    """`mnist-lightning predict` on the set: its CSV rows by picture path (relative to the set)."""
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "predictions.csv"
        command = [
            *CLI,
            "predict",
            "--ckpt_path",
            str(ckpt),
            "--data.predict_path",
            str(pictures.resolve()),
            "--prediction_writer.output",
            str(output),
            "--trainer.enable_progress_bar",
            "false",
        ]
        result = subprocess.run(command, cwd=tmp, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            sys.exit(f"robustness: predict with {ckpt} failed:\n{result.stderr[-2000:]}")
        return {
            str(Path(r["path"]).resolve().relative_to(pictures.resolve())): r for r in csv.DictReader(output.open())
        }


def accuracy(rows: list[dict[str, str]]) -> str:
    right = sum(r["prediction"] == r["label"] for r in rows)
    return f"{100 * right / len(rows):.1f}% ({len(rows) - right} wrong of {len(rows)})" if rows else "-"


def report(name: str, rows: list[dict[str, str]]) -> None:
    print(f"\n### {name}\n\n| source | accuracy | doubtful | accuracy where not doubtful |\n|---|---|---|---|")
    for source in sorted({r["source"] for r in rows}) + ["all"]:
        part = [r for r in rows if source in ("all", r["source"])]
        doubtful = [r for r in part if r["doubtful"] == "true"]
        print(f"| {source} | {accuracy(part)} | {len(doubtful)} | {accuracy([r for r in part if r not in doubtful])} |")
    photographed = [r for r in rows if r.get("condition")]
    if photographed:
        print(
            "\n| condition (photographed sources) | accuracy | doubtful | accuracy where not doubtful |\n|---|---|---|---|"
        )
        for condition in sorted({r["condition"] for r in photographed}) + ["all"]:
            part = [r for r in photographed if condition in ("all", r["condition"])]
            doubtful = [r for r in part if r["doubtful"] == "true"]
            sure = [r for r in part if r["doubtful"] != "true"]
            print(f"| {condition} | {accuracy(part)} | {len(doubtful)} | {accuracy(sure)} |")
    styles = Counter((r["source"], r["style"]) for r in rows)
    worst = sorted(
        styles,
        key=lambda s: sum(r["prediction"] == r["label"] for r in rows if (r["source"], r["style"]) == s) / styles[s],
    )[:6]
    print(
        "\nweakest styles: "
        + "; ".join(
            f"{src}/{style} {accuracy([r for r in rows if (r['source'], r['style']) == (src, style)])}"
            for src, style in worst
        )
    )
    confusions = Counter(f"{r['label']}→{r['prediction']}" for r in rows if r["prediction"] != r["label"])
    print("most common confusions (true→predicted): " + ", ".join(f"{k} ×{n}" for k, n in confusions.most_common(8)))


def worst_cases(results: dict[str, list[dict[str, str]]], pictures: Path, figure: Path, n: int = 8) -> None:
    """Each checkpoint's n most confident mistakes: the picture as given, and as the network saw it."""
    fig, axes = plt.subplots(2 * len(results), n, figsize=(1.4 * n, 3.1 * len(results)), squeeze=False)
    for row, (name, rows) in enumerate(results.items()):
        wrong = sorted((r for r in rows if r["prediction"] != r["label"]), key=lambda r: -float(r["confidence"]))[:n]
        for col in range(n):
            top, bottom = axes[2 * row, col], axes[2 * row + 1, col]
            top.axis("off")
            bottom.axis("off")
            if col >= len(wrong):
                continue
            r = wrong[col]
            top.imshow(Image.open(pictures / r["path"]).convert("RGBA"))
            top.set_title(f"{r['label']} read as {r['prediction']}\n{float(r['confidence']):.2f}", fontsize=8)
            bottom.imshow(read_digit(pictures / r["path"]), cmap="gray")
        axes[2 * row, 0].text(
            -0.15,
            0.5,
            name,
            transform=axes[2 * row, 0].transAxes,
            rotation=90,
            va="center",
            ha="right",
            fontsize=10,
            fontweight="bold",
        )
    fig.suptitle("Most confident mistakes: the picture given (top), the 28x28 digit the network saw (bottom)")
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=100)
    print(f"\nwrote {figure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, default=Path("robustness"), help="made by scripts/robustness_set.py")
    parser.add_argument("--ckpt", action="append", required=True, help="NAME=CHECKPOINT; give it once per model")
    parser.add_argument("--figure", type=Path, default=Path("robustness_worst.png"))
    args = parser.parse_args()
    labels = list(csv.DictReader((args.set / "labels.csv").open()))
    results = {}
    for spec in args.ckpt:
        name, _, ckpt = spec.partition("=")
        predicted = predict(Path(ckpt), args.set)
        missing = [r["path"] for r in labels if r["path"] not in predicted]
        if missing:
            sys.exit(f"robustness: {name} gave no answer for {len(missing)} picture(s), e.g. {missing[0]}")
        results[name] = [
            {**r, **{k: predicted[r["path"]][k] for k in ("prediction", "confidence", "doubtful")}} for r in labels
        ]
        report(name, results[name])
    worst_cases(results, args.set, args.figure)


if __name__ == "__main__":
    main()
