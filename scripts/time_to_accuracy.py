"""Wall time from command start to saved checkpoint, and that checkpoint's test accuracy, per seed.

    python scripts/time_to_accuracy.py --data_dir ../shared/mnist [--config configs/fast.yaml] [--seeds 1 2 3] [FIT OPTIONS]

Each seed runs `mnist-lightning fit` as a user would (a fresh process, so start-up
and imports count), then `mnist-lightning test` on its best checkpoint (by validation accuracy).
Where a run validates every epoch (configs/mnist.yaml), it also reports the median
seconds per epoch (training + validation + checkpoints): the spacing of the accuracy/val
events. Any other options go to `fit` as they are (e.g. `--trainer.plugins
mnist_lightning.precision.NativeBF16`). Runs go to a temporary directory (or --keep DIR). Run it on
an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mnist_lightning.logger import scalar_events
from mnist_lightning.mnist_files import RAW_FILES, raw_dir
from mnist_lightning.report import run_scalars

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "mnist_lightning"]


def mnist_lightning(workdir: Path, *args: str) -> Path:
    """Runs one `mnist-lightning` command in workdir; returns the run directory it wrote.

    A failing command ends the script with the end of its stderr (for a user's mistake,
    the CLI's one-line message), not with a traceback of this script.
    """
    command = [*CLI, *args, "--trainer.enable_progress_bar", "false"]
    result = subprocess.run(command, cwd=workdir, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-20:])
        sys.exit(f"time_to_accuracy: `mnist-lightning {' '.join(args)}` failed (exit {result.returncode}):\n{tail}")
    return max(workdir.glob("runs/mnist/*"))  # run names sort by start time; `test` adds to its checkpoint's run


def seconds_per_epoch(run: Path) -> float | None:
    """Median spacing of the run's accuracy/val events; None with fewer than two."""
    walls = [e.wall_time for e in scalar_events(run)["accuracy/val"]]
    return statistics.median(b - a for a, b in itertools.pairwise(walls)) if len(walls) > 1 else None


def run_seed(config: Path, data_dir: str, seed: int, workdir: Path, fit_options: list[str]) -> dict[str, float]:
    start = time.time()
    run = mnist_lightning(
        workdir, "fit", "-c", str(config), "--data.data_dir", data_dir, "--seed_everything", str(seed), *fit_options
    )
    checkpoints = list((run / "checkpoints").glob("*.ckpt"))
    to_checkpoint = max(p.stat().st_mtime for p in checkpoints) - start
    best = next(p for p in checkpoints if p.name != "last.ckpt")
    test = run_scalars(mnist_lightning(workdir, "test", "--ckpt_path", str(best)))
    return {
        "seed": seed,
        "seconds_to_checkpoint": round(to_checkpoint, 1),
        "seconds_per_epoch": seconds_per_epoch(run),
        "best_checkpoint": best.name,
        "test_acc": test["accuracy/test"][-1],
        "test_loss": test["loss/test"][-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "fast.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--keep", type=Path, help="keep the runs in this folder's runs/ (default: a temporary folder)")
    args, fit_options = parser.parse_known_args()
    data_dir = str(Path(args.data_dir).resolve())
    raw = raw_dir(data_dir)
    if not all((raw / name).is_file() or (raw / f"{name}.gz").is_file() for name in RAW_FILES):
        # Checked first: a download inside the first fit would count in its seconds.
        sys.exit(
            f"time_to_accuracy: error: MNIST is not in {raw}; put its four files there first ({', '.join(RAW_FILES)})"
        )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep.resolve() if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            results.append(run_seed(args.config.resolve(), data_dir, seed, workdir, fit_options))
            print(json.dumps(results[-1]), flush=True)
    print("\n| seed | s to checkpoint | s/epoch (median) | best checkpoint | test acc | test loss |")
    print("|---|---|---|---|---|---|")
    for r in results:
        per_epoch = f"{r['seconds_per_epoch']:.2f}" if r["seconds_per_epoch"] else "-"
        print(
            f"| {r['seed']} | {r['seconds_to_checkpoint']:.1f} | {per_epoch} | {r['best_checkpoint']} "
            f"| {r['test_acc'] * 100:.2f}% | {r['test_loss']:.4f} |"
        )
    if len(results) > 1:
        accuracies = [r["test_acc"] * 100 for r in results]
        print(f"| mean ± std | | | | {statistics.mean(accuracies):.2f}% ± {statistics.stdev(accuracies):.2f} | |")


if __name__ == "__main__":
    main()
