"""How long `mnist-lightning` takes to start: `--help` and two refused commands, median of N runs.

    python scripts/startup_time.py [--runs 5] [--before DIR]

With --before, another checkout of the project (e.g. `git worktree add DIR <commit>`) runs
the same commands, alternating with this one so that both meet the same machine load;
the table gives each median and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "--help": ["--help"],
    "refused by the parser": ["fit", "--model.lr", "-1"],
    "refused checkpoint": ["test", "--ckpt_path", "nowhere.ckpt"],
}
HERE = Path(__file__).resolve().parents[1]


def seconds(args: list[str], checkout: Path, cwd: str) -> float:
    """One start of the CLI from `checkout`: `python -m mnist_lightning`, the package first on the path."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mnist_lightning", *args], cwd=cwd, env=env, capture_output=True, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", type=Path, help="another checkout to compare with")
    args = parser.parse_args()
    checkouts = {"this checkout": HERE, **({"before": args.before.resolve()} if args.before else {})}
    times: dict[tuple[str, str], list[float]] = {(c, k): [] for c in checkouts for k in COMMANDS}
    with tempfile.TemporaryDirectory() as cwd:
        for _ in range(args.runs):
            for command, argv in COMMANDS.items():
                for name, checkout in checkouts.items():  # alternating: both meet the same load
                    times[(name, command)].append(seconds(argv, checkout, cwd))
    print(
        "| command | " + " | ".join(f"{name}, median s" for name in checkouts) + (" | ratio |" if args.before else " |")
    )
    print("|---" * (len(checkouts) + 1 + bool(args.before)) + "|")
    for command, argv in COMMANDS.items():
        medians = [statistics.median(times[(name, command)]) for name in checkouts]
        ratio = f" | {medians[0] / medians[1]:.2f} |" if args.before else " |"
        print(f"| `mnist-lightning {' '.join(argv)}` | " + " | ".join(f"{m:.2f}" for m in medians) + ratio)


if __name__ == "__main__":
    main()
