"""`mnist-lightning fit`, one epoch per request: a peer for benchmark.py, e.g. another version of the project.

    PYTHONPATH=/path/to/other/checkout python scripts/fit_peer.py --data_dir ../shared/mnist [FIT OPTIONS]

Runs the `mnist_lightning` package found first on the path with configs/mnist.yaml (of
this script's checkout) in a temporary directory. Before each training epoch it waits
for a line `epoch` on standard input; once the epoch is done (training, validation,
checkpoints) it answers with one JSON line: {"seconds", "val_loss", "val_acc"}. Its
first line, {"ready": ...}, comes once the data is loaded and the model built.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import lightning as L

import mnist_lightning
from mnist_lightning.cli import MNISTCLI
from mnist_lightning.host import tune_host

ROOT = Path(__file__).resolve().parents[1]


class OnRequest(L.Callback):
    """Holds each epoch until asked for, and reports it once the next would start."""

    def __init__(self) -> None:
        self.start: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer)
        if sys.stdin.readline().strip() != "epoch":
            raise SystemExit(0)
        self.start = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer)

    def _report(self, trainer: L.Trainer) -> None:
        if self.start is None:
            print(json.dumps({"ready": True, "package": str(Path(mnist_lightning.__file__).parent)}), flush=True)
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        print(
            json.dumps(
                {
                    "seconds": time.perf_counter() - self.start,
                    # (versions before the names TensorBoard shows logged val_loss and val_acc)
                    "val_loss": metrics.get("loss/val", metrics.get("val_loss")),
                    "val_acc": metrics.get("accuracy/val", metrics.get("val_acc")),
                }
            ),
            flush=True,
        )
        self.start = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--epochs", type=int, default=100)
    args, fit_options = parser.parse_known_args()
    data_dir = str(Path(args.data_dir).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        cli_args = [
            "-c",
            str(ROOT / "configs" / "mnist.yaml"),
            f"--data.data_dir={data_dir}",
            f"--trainer.max_epochs={args.epochs}",
            "--trainer.enable_progress_bar=false",
            *fit_options,
        ]
        tune_host()  # what `mnist-lightning` does before it builds the CLI
        cli = MNISTCLI(args=cli_args, run=False)
        cli.trainer.callbacks.append(OnRequest())
        cli.trainer.fit(cli.model, cli.datamodule)


if __name__ == "__main__":
    main()
