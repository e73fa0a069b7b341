"""The fault table's machinery: a scratch folder with data and a trained checkpoint, and the
checks every row makes (the one line a user reads, the exit status, what survived)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from helpers.cli import CONFIG, QUIET, cli, fit_args, last_line, runs_in

REPOSITORY = CONFIG.parents[1]
from helpers.mnist import synthetic_digits, write_mnist

MEMORY_CAP_KB = 5_000_000  # `ulimit -v` for the memory cases: torch itself needs ~4 GB of address space


@dataclass
class Row:
    """One row of docs/faults.md."""

    command: str
    exit: int
    says: str
    survived: str


@dataclass
class Scratch:
    """A scratch folder beside the shared synthetic data and trained run."""

    root: Path
    data: Path  # the shared synthetic MNIST: read only, copy it to damage it
    best: Path  # the shared run's best checkpoint: read only, copy it to change it

    @property
    def run(self) -> Path:
        return self.best.parents[1]

    @property
    def big_data(self) -> Path:
        """6,000 training images: a fit long enough to be stopped."""
        data = self.root / "big"
        if not data.exists():
            write_mnist(data / "MNIST" / "raw", n_train=6000)
        return data

    def folder(self, name: str) -> Path:
        path = self.root / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def cli(self, *args: str, cwd: Path | None = None, **kwargs) -> subprocess.CompletedProcess[str]:
        return cli(*args, cwd=cwd or self.root, **kwargs)

    def fit_args(self, *extra: str, data: Path | None = None) -> list[str]:
        return fit_args(data or self.data, "--trainer.log_every_n_steps", "5", *QUIET, *extra, batch_size=32)

    def checkpoint(self, name: str, change: Callable[[dict], object]) -> Path:
        """A copy of the best checkpoint, changed by change(checkpoint)."""
        checkpoint = torch.load(self.best, weights_only=True)
        change(checkpoint)
        path = self.root / "ckpts" / name
        path.parent.mkdir(exist_ok=True)
        torch.save(checkpoint, path)
        return path

    def pictures(self, n: int = 6) -> Path:
        """n test digits as PNG files, white on black as in MNIST."""
        folder = self.root / f"pictures{n}"
        if not folder.exists():
            folder.mkdir()
            images, labels = synthetic_digits(n, seed=1)
            for i, (image, label) in enumerate(zip(images, labels)):
                Image.fromarray(image).resize((84, 84)).save(folder / f"{i:04d}_label{label}.png")
        return folder

    def relative(self, text: str) -> str:
        """Paths as the table shows them: relative to the scratch folder (the shared run's folder,
        the repository), the shared synthetic MNIST as `data`."""
        for folder, shown in ((self.root, ""), (self.best.parents[4], ""), (self.data, "data"), (REPOSITORY, "")):
            text = text.replace(f"{folder}/", f"{shown}/" if shown else "").replace(str(folder), shown or ".")
        return text

    def shown(self, args: list[str] | tuple[str, ...]) -> str:
        """The command as the table shows it: paths relative to the scratch folder, without QUIET."""
        text = " ".join(["mnist-lightning", *args]).replace(str(self.root) + "/", "")
        return text.replace(" " + " ".join(QUIET), "")


def one_line(result: subprocess.CompletedProcess[str], exit: int, *fragments: str) -> None:
    """The failure ends in one line naming the problem, with `exit`, and no traceback."""
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == exit, (result.returncode, result.stderr[-2000:])
    for fragment in fragments:
        assert fragment in last_line(result), (fragment, last_line(result))


def check_refused(
    s: Scratch,
    args: list[str],
    exit: int,
    *fragments: str,
    survived: str = "nothing written",
    cwd: Path | None = None,
    **kwargs,
) -> Row:
    """Runs args, which must fail with `exit` and one line holding each fragment, leaving no run behind."""
    cwd = cwd or s.folder("cwd")
    result = s.cli(*args, cwd=cwd, **kwargs)
    one_line(result, exit, *fragments)
    if "runs" not in survived:
        assert not runs_in(cwd), "a failed command left a run"
    return Row(s.shown(args), result.returncode, last_line(result), survived)


def predict(
    s: Scratch, path: str, *extra: str, cwd: Path | None = None, **kwargs
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    """`predict` of the pictures at path: the result and the CSV's rows (without the header)."""
    cwd = cwd or s.folder("predict")
    result = s.cli(
        "predict", "--ckpt_path", str(s.best), "--data.predict_path", path, *QUIET, *extra, cwd=cwd, **kwargs
    )
    return result, csv_rows(cwd / "predictions.csv")


def csv_rows(csv: Path) -> list[list[str]]:
    """The rows of a predictions CSV without its header (names as the OS gives them); none if it is missing."""
    lines = csv.read_text(errors="surrogateescape").splitlines()[1:] if csv.is_file() else []
    return [line.split(",") for line in lines]
