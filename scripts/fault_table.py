"""Tries the installed CLI with bad inputs and faults, and prints the fault table of docs/faults.md.

Every case runs `mnist-lightning` as a user would, in a scratch folder with small
synthetic MNIST files, then checks what the user saw, the exit status and what
survived. tests/test_faults.py runs the same cases as tests.

    python scripts/fault_table.py                 # all cases, a Markdown table
    python scripts/fault_table.py --only ckpt     # the cases whose name contains "ckpt"
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import synthetic_digits, write_idx, write_mnist

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
MEMORY_CAP_KB = 5_000_000  # `ulimit -v` for the memory cases: torch itself needs ~4 GB of address space


@dataclass
class Row:
    command: str
    exit: int
    says: str
    survived: str


@dataclass
class Case:
    group: str
    name: str
    run: Callable[[Scratch], Row]


CASES: list[Case] = []


def case(group: str, name: str) -> Callable[[Callable[[Scratch], Row]], Callable[[Scratch], Row]]:
    def register(fn: Callable[[Scratch], Row]) -> Callable[[Scratch], Row]:
        CASES.append(Case(group, name, fn))
        return fn

    return register


def cli_path() -> str:
    return shutil.which("mnist-lightning") or str(Path(sys.executable).with_name("mnist-lightning"))


@dataclass
class Scratch:
    """A scratch folder with synthetic data and one trained run, made on first use."""

    root: Path
    _run: Path | None = field(default=None, init=False)

    @property
    def data(self) -> Path:
        data = self.root / "data"
        if not data.exists():
            write_mnist(data / "MNIST" / "raw")
        return data

    @property
    def big_data(self) -> Path:
        data = self.root / "big"
        if not data.exists():
            write_mnist(data / "MNIST" / "raw", n_train=6000)
        return data

    def folder(self, name: str) -> Path:
        path = self.root / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def cli(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            memory_kb: int | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:  # fmt: skip
        command = [cli_path(), *args]
        if memory_kb:
            command = ["bash", "-c", f'ulimit -v {memory_kb}; exec "$@"', "bash", *command]
        return subprocess.run(command, cwd=cwd or self.root, env={**os.environ, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout, check=False)  # fmt: skip

    def fit_args(self, *extra: str, data: Path | None = None) -> list[str]:
        return ["fit", "-c", str(CONFIGS / "mnist.yaml"), "--data.data_dir", str(data or self.data),
                "--data.batch_size", "32", "--trainer.log_every_n_steps", "5", *QUIET, *extra]  # fmt: skip

    @property
    def run(self) -> Path:
        """A 2-epoch run on the synthetic data."""
        if self._run is None:
            cwd = self.folder("trained")
            result = self.cli(*self.fit_args("--trainer.max_epochs", "2"), cwd=cwd)
            assert result.returncode == 0, result.stderr[-2000:]
            self._run = runs_in(cwd)[-1]
        return self._run

    @property
    def best(self) -> Path:
        return next(p for p in sorted((self.run / "checkpoints").glob("*.ckpt")) if p.name != "last.ckpt")

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


def runs_in(cwd: Path) -> list[Path]:
    return sorted(p for p in (cwd / "runs" / "mnist").glob("*") if p.is_dir())


def said(result: subprocess.CompletedProcess[str]) -> str:
    """The last line on stderr: what a user reads first."""
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(nothing)"


def shown(args: list[str] | tuple[str, ...], scratch: Scratch) -> str:
    text = " ".join(["mnist-lightning", *args]).replace(str(scratch.root) + "/", "")
    return text.replace(" " + " ".join(QUIET), "")


def one_line(result: subprocess.CompletedProcess[str], exit: int, *fragments: str) -> None:
    """The failure ends in one line naming the problem, with `exit`, and no traceback."""
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == exit, (result.returncode, result.stderr[-2000:])
    for fragment in fragments:
        assert fragment in said(result), (fragment, said(result))


def refused(scratch: Scratch, args: list[str], exit: int, *fragments: str, survived: str = "nothing written",
            cwd: Path | None = None, **kwargs) -> Row:  # fmt: skip
    cwd = cwd or scratch.folder("cwd")
    result = scratch.cli(*args, cwd=cwd, **kwargs)
    one_line(result, exit, *fragments)
    if exit and "runs" not in survived:
        assert not runs_in(cwd) if (cwd / "runs").is_dir() else True, "a failed command left a run"
    return Row(shown(args, scratch), result.returncode, said(result), survived)


# --- checkpoints given to test/validate/predict/report


def _test(path: Path | str) -> list[str]:
    return ["test", "--ckpt_path", str(path), *QUIET]


@case("checkpoint", "missing file")
def _(s: Scratch) -> Row:
    return refused(s, _test(s.root / "nowhere.ckpt"), 1, "does not exist")


@case("checkpoint", "a folder")
def _(s: Scratch) -> Row:
    return refused(s, _test(s.run), 1, "is a folder", str(s.run / "checkpoints"))


@case("checkpoint", "truncated to half")
def _(s: Scratch) -> Row:
    path = s.root / "half.ckpt"
    path.write_bytes(s.best.read_bytes()[: s.best.stat().st_size // 2])
    return refused(s, _test(path), 1, "not a readable checkpoint")


@case("checkpoint", "empty file")
def _(s: Scratch) -> Row:
    (s.root / "empty.ckpt").write_bytes(b"")
    return refused(s, _test(s.root / "empty.ckpt"), 1, "not a readable checkpoint")


@case("checkpoint", "random bytes")
def _(s: Scratch) -> Row:
    (s.root / "noise.ckpt").write_bytes(np.random.default_rng(0).bytes(10_000))
    return refused(s, _test(s.root / "noise.ckpt"), 1, "not a readable checkpoint")


@case("checkpoint", "pickled code (an object that runs `touch` when loaded)")
def _(s: Scratch) -> Row:
    marker = s.root / "pwned"
    path = s.root / "evil.ckpt"
    torch.save({"state_dict": {}, "x": _Evil(str(marker))}, path)
    row = refused(s, _test(path), 1, "refused to load", "could run code")
    assert not marker.exists(), "the pickled code ran"
    return Row(row.command, row.exit, row.says, "the code did not run")


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@case("checkpoint", "5 MB file whose tensor unpacks to 3 GB, under `ulimit -v`")
def _(s: Scratch) -> Row:
    path = s.root / "bomb.ckpt"
    buffer = io.BytesIO()
    torch.save(torch.load(s.best, weights_only=True), buffer)
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        prefix = src.infolist()[0].filename.split("/")[0]
        with dst.open(f"{prefix}/data/bomb", "w", force_zip64=True) as entry:
            chunk = bytes(64 * 2**20)
            for _ in range(48):
                entry.write(chunk)
    row = refused(s, _test(path), 1, "refused", "unpacks to 3,0", memory_kb=MEMORY_CAP_KB)
    return Row(row.command + f"  (ulimit -v {MEMORY_CAP_KB})", row.exit, row.says, "nothing unpacked")


@case("checkpoint", "no `pytorch-lightning_version` key")
def _(s: Scratch) -> Row:
    return refused(s, _test(s.checkpoint("noversion.ckpt", lambda c: c.pop("pytorch-lightning_version"))), 1,
                   "written by something other than Lightning")  # fmt: skip


@case("checkpoint", "tagged Lightning 1.0.0")
def _(s: Scratch) -> Row:
    return refused(s, _test(s.checkpoint("old.ckpt", lambda c: c.update({"pytorch-lightning_version": "1.0.0"}))), 1,
                   "written by Lightning 1.0.0")  # fmt: skip


@case("checkpoint", "another network (a layer of another shape)")
def _(s: Scratch) -> Row:
    path = s.checkpoint("other.ckpt", lambda c: c["state_dict"].update({"net.7.weight": torch.zeros(64, 1600)}))
    return refused(s, _test(path), 1, "different network", "net.7.weight")


@case("checkpoint", "a missing layer")
def _(s: Scratch) -> Row:
    return refused(s, _test(s.checkpoint("missing.ckpt", lambda c: c["state_dict"].pop("net.10.bias"))), 1,
                   "different network", "net.10.bias")  # fmt: skip


for _kind, _value in (("NaN", float("nan")), ("infinite", float("inf"))):

    @case("checkpoint", f"{_kind} weights")
    def _(s: Scratch, value: float = _value, kind: str = _kind) -> Row:
        path = s.checkpoint(f"{kind}.ckpt", lambda c: c["state_dict"]["net.0.weight"].view(-1).__setitem__(0, value))
        return refused(s, _test(path), 1, "not finite floating-point", "net.0.weight")


# (case, file name, the edit of a good checkpoint, what the one line must say)
EDITED_CHECKPOINTS = [
    ("integer weights", "int.ckpt", lambda c: c["state_dict"].update({"net.10.bias": torch.zeros(10, dtype=torch.long)}),
     ("not finite floating-point", "net.10.bias")),
    ("data settings with an unknown key", "key.ckpt", lambda c: c["datamodule_hyper_parameters"].update({"colour": "red"}),
     ("saved settings do not fit", "colour")),
    ("data settings of a wrong type", "type.ckpt",
     lambda c: c["datamodule_hyper_parameters"].update({"batch_size": "many"}), ("saved settings do not fit", "batch_size")),
    ("model settings of a wrong type", "lr.ckpt", lambda c: c["hyper_parameters"].update({"lr": "fast"}),
     ("saved settings do not fit", "lr")),
]  # fmt: skip
for _name, _file, _edit, _said in EDITED_CHECKPOINTS:
    case("checkpoint", _name)(lambda s, f=_file, e=_edit, sd=_said: refused(s, _test(s.checkpoint(f, e)), 1, *sd))


@case("checkpoint", "a torch file that is not a checkpoint")
def _(s: Scratch) -> Row:
    torch.save(torch.zeros(3), s.root / "tensor.pt")
    return refused(s, _test(s.root / "tensor.pt"), 1, "not a Lightning checkpoint")


@case("checkpoint", "`test` without --ckpt_path")
def _(s: Scratch) -> Row:
    return refused(s, ["test", *QUIET], 1, "needs a trained network", "the best of the newest run is",
                   cwd=s.run.parents[2], survived="runs untouched")  # fmt: skip


# --- data


@case("data", "no MNIST and downloads off")
def _(s: Scratch) -> Row:
    return refused(s, [*s.fit_args(data=s.root / "nothing"), "--data.download", "false"], 1, "Put the four files")


@case("data", "--data.data_dir is a file")
def _(s: Scratch) -> Row:
    (s.root / "afile").write_text("x")
    return refused(s, s.fit_args("--data.download", "true", data=s.root / "afile"), 1, "--data.data_dir")


def _damaged(s: Scratch, name: str, damage: Callable[[Path], None], *fragments: str) -> Row:
    data = s.root / f"damaged-{name}"
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(s.data, data)
    damage(data / "MNIST" / "raw" / "train-images-idx3-ubyte")
    return refused(s, s.fit_args("--data.download", "false", data=data), 1, *fragments, survived="the files untouched")


@case("data", "training images cut short")
def _(s: Scratch) -> Row:
    return _damaged(s, "cut", lambda f: f.write_bytes(f.read_bytes()[:5000]), "truncated or damaged")


@case("data", "training images with a wrong magic number")
def _(s: Scratch) -> Row:
    return _damaged(s, "magic", lambda f: f.write_bytes(b"\0\0\x08\x01" + f.read_bytes()[4:]), "not an MNIST images")


@case("data", "20x20 images")
def _(s: Scratch) -> Row:
    return _damaged(s, "size", lambda f: write_idx(f, np.zeros((5, 20, 20), np.uint8)), "20x20 images")


@case("data", "fewer labels than images")
def _(s: Scratch) -> Row:
    labels = lambda f: write_idx(f.with_name("train-labels-idx1-ubyte"), np.zeros(7, np.uint8))
    return _damaged(s, "count", labels, "labels")


# --- settings


# (case, fit options, exit status, what the one line must say)
REFUSED_SETTINGS = [
    ("an unknown option", ["--data.batch_sise", "64"], 2, "batch_sise"),
    ("a wrong type", ["--data.batch_size", "many"], 2, "batch_size"),
    ("batch size 0", ["--data.batch_size", "0"], 1, "batch sizes must be at least 1"),
    ("negative learning rate", ["--model.lr", "-0.1"], 1, "need lr > 0"),
    ("val_split 1.5", ["--data.val_split", "1.5"], 1, "val_split must lie strictly between 0 and 1"),
    ("val_split so small that no image is left for validation", ["--data.val_split", "0.001"], 1, "leaves 0 for validation"),
    ("--trainer.max_epochs -2", ["--trainer.max_epochs", "-2"], 1, "max_epochs"),
]
for _name, _options, _status, _said in REFUSED_SETTINGS:
    case("settings", _name)(lambda s, o=_options, st=_status, sd=_said: refused(s, s.fit_args(*o), st, sd))


@case("settings", "--trainer.accelerator gpu without a GPU")
def _(s: Scratch) -> Row:
    if torch.cuda.is_available():
        return Row("(a GPU is present)", 0, "", "skipped")
    return refused(s, s.fit_args("--trainer.accelerator", "gpu"), 1, "gpu", "--trainer")


@case("settings", "bf16-mixed with gradient clipping")
def _(s: Scratch) -> Row:
    cwd = s.folder("clip")
    args = s.fit_args("--trainer.max_epochs", "1", "--trainer.precision", "bf16-mixed", "--trainer.gradient_clip_val", "1")
    result = s.cli(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (runs_in(cwd)[0] / "checkpoints" / "last.ckpt").is_file()
    return Row(shown(args, s), 0, "(trains)", "a run with last.ckpt")


@case("settings", "a config file with a YAML syntax error")
def _(s: Scratch) -> Row:
    bad = s.root / "bad.yaml"
    bad.write_text("trainer:\n  max_epochs: [1\n")
    return refused(s, ["fit", "-c", str(bad)], 1, "bad.yaml", "line 3")


@case("settings", "a config file that does not exist")
def _(s: Scratch) -> Row:
    return refused(s, ["fit", "-c", str(s.root / "nope.yaml")], 2, "nope.yaml")


@case("settings", "a batch too big for memory, under `ulimit -v`")
def _(s: Scratch) -> Row:
    args = _test(s.best) + ["--data.data_dir", str(_many_test_images(s)), "--data.eval_batch_size", "1000000"]
    row = refused(s, args, 1, "out of memory", "--data.eval_batch_size", memory_kb=MEMORY_CAP_KB)
    return Row(row.command + f"  (ulimit -v {MEMORY_CAP_KB})", row.exit, row.says, row.survived)


def _many_test_images(s: Scratch) -> Path:
    """A test set of a million images (one is repeated: the file is small to write, big in memory)."""
    data = s.root / "million"
    if not data.exists():
        shutil.copytree(s.data, data)
        raw = data / "MNIST" / "raw"
        images, labels = synthetic_digits(1000, seed=1)
        write_idx(raw / "t10k-images-idx3-ubyte", np.tile(images, (1000, 1, 1)))
        write_idx(raw / "t10k-labels-idx1-ubyte", np.tile(labels, 1000))
    return data


# --- where outputs go


@case("outputs", "runs/ is a file")
def _(s: Scratch) -> Row:
    cwd = s.folder("runsfile")
    (cwd / "runs").write_text("a file")
    row = refused(s, s.fit_args("--trainer.max_epochs", "1"), 1, "cannot write", "save_dir", cwd=cwd)
    assert (cwd / "runs").read_text() == "a file"
    return Row(row.command, row.exit, row.says, "the file untouched")


@case("outputs", "report --output_dir inside a file")
def _(s: Scratch) -> Row:
    (s.root / "afile").write_text("x")
    args = ["report", "--ckpt_path", str(s.best), "--output_dir", str(s.root / "afile" / "report"), *QUIET]
    return refused(s, args, 1, "--output_dir", survived="runs untouched")


@case("outputs", "--prediction_writer.output inside a file")
def _(s: Scratch) -> Row:
    (s.root / "afile").write_text("x")
    args = ["predict", "--ckpt_path", str(s.best), "--prediction_writer.output", str(s.root / "afile" / "p.csv"), *QUIET]
    return refused(s, args, 1, "--prediction_writer.output")


@case("outputs", "an output file name of 250 bytes")
def _(s: Scratch) -> Row:
    cwd = s.folder("long")
    args = ["predict", "--ckpt_path", str(s.best), "--prediction_writer.output", "p" * 246 + ".csv", *QUIET]
    result = s.cli(*args, cwd=cwd)
    assert result.returncode == 0 and (cwd / ("p" * 246 + ".csv")).is_file(), result.stderr[-2000:]
    return Row("mnist-lightning predict --ckpt_path CKPT --prediction_writer.output ppp…p.csv (250 bytes)", 0,
               "(writes it)", "the predictions")  # fmt: skip


@case("outputs", "an output file name of 256 bytes")
def _(s: Scratch) -> Row:
    args = ["predict", "--ckpt_path", str(s.best), "--prediction_writer.output", "p" * 252 + ".csv", *QUIET]
    row = refused(s, args, 1, "File name too long")
    return Row("mnist-lightning predict --ckpt_path CKPT --prediction_writer.output ppp…p.csv (256 bytes)", row.exit,
               row.says, row.survived)  # fmt: skip


def _tmpfs(s: Scratch, name: str, size: str) -> Path | None:
    """A small RAM file system: a real full disk. None where mounting is not allowed."""
    path = s.folder(name)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=False, capture_output=True).returncode == 0
    return path if ok else None


@case("outputs", "disk full while writing a checkpoint (a 2 MB file system)")
def _(s: Scratch) -> Row:
    disk = _tmpfs(s, "fulldisk", "2m")
    if disk is None:
        return Row("(mounting a tmpfs is not allowed here)", 0, "", "skipped")
    try:
        cwd = s.folder("full")
        args = s.fit_args("--trainer.max_epochs", "1", "--trainer.logger.init_args.save_dir", str(disk))
        row = refused(s, args, 1, "No space left on device", cwd=cwd)
        assert not [p for p in disk.rglob("*") if p.name.startswith(".mnist-lightning-")], "a temporary file was left"
        return Row(row.command, row.exit, row.says, "no partial file")
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@case("outputs", "disk full while writing predictions")
def _(s: Scratch) -> Row:
    disk = _tmpfs(s, "fullcsv", "64k")
    if disk is None:
        return Row("(mounting a tmpfs is not allowed here)", 0, "", "skipped")
    try:
        old = disk / "predictions.csv"
        old.write_text("old\n")
        (disk / "filler").write_bytes(b"x" * (60 * 1024))
        args = ["predict", "--ckpt_path", str(s.best), "--prediction_writer.output", str(old), *QUIET]
        row = refused(s, args, 1, "No space left on device", "--prediction_writer.output")
        assert old.read_text() == "old\n"
        return Row(row.command, row.exit, row.says, "the old predictions.csv, whole")
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# --- pictures


def _predict(s: Scratch, path: str, *extra: str, cwd: Path | None = None, **kwargs) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:  # fmt: skip
    cwd = cwd or s.folder("predict")
    result = s.cli("predict", "--ckpt_path", str(s.best), "--data.predict_path", path, *QUIET, *extra, cwd=cwd, **kwargs)
    csv = cwd / "predictions.csv"
    rows = [line.split(",") for line in csv.read_text().splitlines()[1:]] if csv.is_file() else []
    return result, rows


def _right(rows: list[list[str]]) -> int:
    """Rows whose prediction is the label in the file's name."""
    return sum(row[0].split("label")[1][0] == row[1] for row in rows if "label" in row[0])


def _picture_case(s: Scratch, name: str, save: Callable[[np.ndarray, Path], None]) -> Row:
    """Each digit in the format under test and as an 8-bit PNG: both must become the same MNIST digit."""
    from mnist_lightning.preprocess import mnist_style

    folder = s.folder(name)
    images, _ = synthetic_digits(6, seed=1)
    for i, image in enumerate(images):
        big = np.kron(image, np.ones((3, 3))) / 255
        save(big, folder / f"{i}")
        Image.fromarray((big * 255).round().astype(np.uint8)).save(folder / f"{i}_8bit.png")
    result, rows = _predict(s, str(folder))
    assert result.returncode == 0 and "skipped" not in result.stderr, result.stderr[-2000:]
    assert len(rows) == 12, rows
    files = sorted(folder.iterdir())
    for twin in (f for f in files if "_8bit" not in f.name):
        with Image.open(twin) as a, Image.open(folder / f"{twin.stem}_8bit.png") as b:
            difference = np.abs(mnist_style(a).astype(int) - mnist_style(b).astype(int)).max()
        assert difference <= 2, (twin.name, difference)
    return Row(shown(["predict", "--ckpt_path", "CKPT", "--data.predict_path", name + "/"], s), 0,
               "(predicts them)", "all 6 read; each the same 28x28 digit as its 8-bit twin (within 2 of 255)")  # fmt: skip


@case("pictures", "16-bit PNGs")
def _(s: Scratch) -> Row:
    return _picture_case(s, "png16", lambda a, p: Image.fromarray((a * 65535).astype(np.uint16)).save(f"{p}.png"))


@case("pictures", "32-bit integer TIFFs")
def _(s: Scratch) -> Row:
    return _picture_case(s, "tif32", lambda a, p: Image.fromarray((a * 2e9).astype(np.int32)).save(f"{p}.tif"))


@case("pictures", "32-bit float TIFFs (0-1)")
def _(s: Scratch) -> Row:
    return _picture_case(s, "tiff", lambda a, p: Image.fromarray(a.astype(np.float32)).save(f"{p}.tif"))


@case("pictures", "dark ink on white paper, 16-bit")
def _(s: Scratch) -> Row:
    return _picture_case(s, "paper16", lambda a, p: Image.fromarray(((1 - a) * 60000).astype(np.uint16)).save(f"{p}.png"))


@case("pictures", "a 12,000 x 12,000 PNG (492 KB) among digits")
def _(s: Scratch) -> Row:
    folder = s.folder("huge")
    shutil.copytree(s.pictures(), folder, dirs_exist_ok=True)
    Image.new("L", (12000, 12000)).save(folder / "huge.png", optimize=True)
    result, rows = _predict(s, str(folder), memory_kb=MEMORY_CAP_KB)
    assert result.returncode == 0 and len(rows) == 6, result.stderr[-2000:]
    assert "skipped" in result.stderr and "huge.png" in result.stderr
    return Row(shown(["predict", "--ckpt_path", "CKPT", "--data.predict_path", "huge/"], s) + f"  (ulimit -v {MEMORY_CAP_KB})",
               0, _warning(result, "huge.png"), "the 6 digits predicted")  # fmt: skip


def _warning(result: subprocess.CompletedProcess[str], name: str) -> str:
    return next((line.strip() for line in result.stderr.splitlines() if name in line and "skipped" in line), "")[-150:]


@case("pictures", "a damaged PNG and a text file among digits")
def _(s: Scratch) -> Row:
    folder = s.folder("junk")
    shutil.copytree(s.pictures(), folder, dirs_exist_ok=True)
    (folder / "broken.png").write_bytes((s.pictures() / min(os.listdir(s.pictures()))).read_bytes()[:60])
    (folder / "notes.txt").write_text("hello")
    result, rows = _predict(s, str(folder))
    assert result.returncode == 0 and len(rows) == 6, result.stderr[-2000:]
    assert "broken.png" in result.stderr and "notes.txt" in result.stderr
    return Row(shown(["predict", "--ckpt_path", "CKPT", "--data.predict_path", "junk/"], s), 0,
               _warning(result, "broken.png"), "the 6 digits predicted")  # fmt: skip


@case("pictures", "a blank picture among digits")
def _(s: Scratch) -> Row:
    folder = s.folder("blank")
    shutil.copytree(s.pictures(), folder, dirs_exist_ok=True)
    Image.new("L", (50, 50), 255).save(folder / "white.png")
    result, rows = _predict(s, str(folder))
    assert result.returncode == 0 and len(rows) == 6 and "no digit found" in result.stderr, result.stderr[-2000:]
    return Row(shown(["predict", "--ckpt_path", "CKPT", "--data.predict_path", "blank/"], s), 0,
               _warning(result, "white.png"), "the 6 digits predicted")  # fmt: skip


def _looped(s: Scratch) -> Path:
    folder = s.folder("loops")
    shutil.copytree(s.pictures(), folder / "a", dirs_exist_ok=True)
    (folder / "a" / "up").symlink_to("..")
    (folder / "a" / "self").symlink_to(".")
    (folder / "b").symlink_to("a")
    return folder


@case("pictures", "`DIR/**/*.png` over folder links that loop")
def _(s: Scratch) -> Row:
    folder = _looped(s)
    result, rows = _predict(s, f"{folder}/**/*.png", timeout=120)
    assert result.returncode == 0 and len(rows) == 6, (result.stderr[-2000:], len(rows))
    return Row(shown(["predict", "--ckpt_path", "CKPT", "--data.predict_path", "'loops/**/*.png'"], s), 0,
               "(predicts each file once)", "6 rows for 6 files")  # fmt: skip


@case("pictures", "a folder with looping links")
def _(s: Scratch) -> Row:
    folder = _looped(s)
    result, rows = _predict(s, str(folder), timeout=120)
    assert result.returncode == 0 and len(rows) == 6, (result.stderr[-2000:], len(rows))
    return Row(shown(["predict", "--ckpt_path", "CKPT", "--data.predict_path", "loops/"], s), 0,
               "(predicts each file once)", "6 rows for 6 files")  # fmt: skip


@case("pictures", "--data.predict_path \"\"")
def _(s: Scratch) -> Row:
    row = refused(s, ["predict", "--ckpt_path", str(s.best), "--data.predict_path", "", *QUIET], 1, "is empty")
    return Row(row.command + ' ""', row.exit, row.says, row.survived)


@case("pictures", "a pattern that matches nothing")
def _(s: Scratch) -> Row:
    return refused(s, ["predict", "--ckpt_path", str(s.best), "--data.predict_path", str(s.root / "*.jpeg"), *QUIET], 1,
                   "no such file")  # fmt: skip


@case("pictures", "a checkpoint that carries an old predict_path")
def _(s: Scratch) -> Row:
    path = s.checkpoint("pp.ckpt", lambda c: c["datamodule_hyper_parameters"].update({"predict_path": str(s.pictures())}))
    cwd = s.folder("pp")
    result = s.cli("predict", "--ckpt_path", str(path), *QUIET, cwd=cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (cwd / "predictions.csv").read_text().startswith("index,label,"), "it read the old pictures"
    return Row(shown(["predict", "--ckpt_path", "pp.ckpt"], s), 0, "(predicts the test set)", "the test set's 100 rows")


# --- signals, runs, resume


def _start(s: Scratch, cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([cli_path(), *args], cwd=cwd, env={**os.environ, **(env or {})}, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, f"it ended first: {process.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _long_fit(s: Scratch) -> list[str]:
    return s.fit_args("--trainer.max_epochs", "50", data=s.big_data)


for _signal in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):

    @case("signals", f"{_signal.name} during `fit`")
    def _(s: Scratch, signum: signal.Signals = _signal) -> Row:
        cwd = s.folder(f"sig{signum}")
        process = _start(s, cwd, *_long_fit(s))
        _wait_for(lambda: bool(list(cwd.glob("runs/mnist/*/checkpoints/last.ckpt"))), process)
        time.sleep(1)
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
        result = subprocess.CompletedProcess([], process.returncode, "", err)
        one_line(result, 128 + signum, f"stopped by {signum.name}", "last.ckpt", "Resume: mnist-lightning fit -c")
        (run,) = runs_in(cwd)
        resumed = s.cli(*said(result).split("Resume: mnist-lightning ")[1].split(), "--trainer.max_epochs", "2", *QUIET,
                        cwd=cwd)  # fmt: skip
        assert resumed.returncode == 0 and runs_in(cwd) == [run], resumed.stderr[-2000:]
        return Row(f"kill -{signum.name[3:]} during `mnist-lightning fit`", result.returncode, said(result),
                   "last.ckpt of the last epoch; the printed command resumes it in the same run")  # fmt: skip


@case("signals", "SIGTERM before the first epoch ends")
def _(s: Scratch) -> Row:
    cwd = s.folder("early")
    process = _start(s, cwd, *_long_fit(s))
    _wait_for(lambda: bool(list(cwd.glob("runs/mnist/*/events*"))), process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    result = subprocess.CompletedProcess([], process.returncode, "", err)
    one_line(result, 143, "before the first epoch ended; nothing was saved")
    assert not runs_in(cwd), "an empty run was left"
    return Row("kill -TERM during the first epoch of `fit`", 143, said(result), "no run folder left")


@case("signals", "SIGTERM during `report`")
def _(s: Scratch) -> Row:
    cwd = s.folder("report")
    data = _many_test_images(s)
    process = _start(s, cwd, "report", "--ckpt_path", str(s.best), "--data.data_dir", str(data),
                     "--output_dir", str(cwd / "report"), *QUIET)  # fmt: skip
    time.sleep(12)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    result = subprocess.CompletedProcess([], process.returncode, "", err)
    one_line(result, 143, "stopped by SIGTERM", "report did not finish")
    assert not (cwd / "report").exists()
    return Row("kill -TERM during `mnist-lightning report` (1M test images)", 143, said(result), "no half report")


@case("signals", "SLURM preemption: SIGUSR1, then SIGTERM, then the requeued job")
def _(s: Scratch) -> Row:
    cwd = s.folder("slurm")
    bin_dir = cwd / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {cwd}/scontrol.log\n')
    (bin_dir / "scontrol").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "mnist", "SLURM_JOB_ID": "4242",
           "SLURM_NODELIST": "localhost", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}  # fmt: skip
    args = s.fit_args("--trainer.max_epochs", "4", data=s.big_data)
    process = _start(s, cwd, *args, env=env)
    run = cwd / "runs" / "mnist" / "slurm-4242"
    _wait_for(lambda: (run / "checkpoints" / "last.ckpt").is_file(), process)
    process.send_signal(signal.SIGUSR1)
    _wait_for(lambda: bool(list(run.glob("hpc_ckpt_*.ckpt"))) and (cwd / "scontrol.log").is_file(), process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    result = subprocess.CompletedProcess([], process.returncode, "", err)
    one_line(result, 143, "stopped by SIGTERM", "requeue")
    assert (cwd / "scontrol.log").read_text().split() == ["requeue", "4242"]
    requeued = s.cli(*args, cwd=cwd, env=env)
    assert requeued.returncode == 0, requeued.stderr[-2000:]
    assert "hpc_ckpt_1.ckpt" in requeued.stderr and runs_in(cwd) == [run]
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 3
    return Row("SLURM job: kill -USR1, then kill -TERM, then the same command again (requeued)", 143, said(result),
               "hpc_ckpt_1.ckpt; `scontrol requeue 4242` called; the requeued job resumed it in the same run to the end")  # fmt: skip


@case("runs", "two `fit` started at the same moment in one folder")
def _(s: Scratch) -> Row:
    cwd = s.folder("twin")
    processes = [_start(s, cwd, *s.fit_args("--trainer.max_epochs", "1", "--seed_everything", str(i))) for i in (1, 2)]
    assert [p.wait(timeout=300) for p in processes] == [0, 0]
    runs = runs_in(cwd)
    assert len(runs) == 2, runs
    seeds = sorted((run / "config.yaml").read_text().split("seed_everything: ")[1].split()[0] for run in runs)
    assert seeds == ["1", "2"] and all((run / "checkpoints" / "last.ckpt").is_file() for run in runs)
    return Row("two `mnist-lightning fit` at once, same folder", 0, "(both train)",
               f"two runs ({runs[0].name}, {runs[1].name}), each with its own config and last.ckpt")  # fmt: skip


def _resumable(s: Scratch, name: str, config: str, *extra: str) -> tuple[Path, Path]:
    cwd = s.folder(name)
    result = s.cli("fit", "-c", str(CONFIGS / config), "--data.data_dir", str(s.data), "--trainer.max_epochs", "1",
                   "--trainer.check_val_every_n_epoch", "1", "--trainer.log_every_n_steps", "1", *QUIET, *extra, cwd=cwd)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = runs_in(cwd)
    return cwd, run


@case("resume", "`fit --ckpt_path last.ckpt --model.lr 0.01`")
def _(s: Scratch) -> Row:
    cwd, run = _resumable(s, "lr", "mnist.yaml")
    args = ["fit", "-c", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
            "--trainer.max_epochs", "2", "--model.lr", "0.01", *QUIET]  # fmt: skip
    result = s.cli(*args, cwd=cwd)
    assert result.returncode == 0 and "Resuming with new settings: lr 0.001 -> 0.01" in result.stderr, result.stderr[-2000:]
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["optimizer_states"][0]["param_groups"][0]["lr"] == 0.01 and saved["hyper_parameters"]["lr"] == 0.01
    return Row(shown(args, s), 0, "Resuming with new settings: lr 0.001 -> 0.01", "the same run, trained on at lr 0.01")


@case("resume", "a 1cycle run resumed with more epochs")
def _(s: Scratch) -> Row:
    cwd, run = _resumable(s, "cycle", "fast.yaml")
    args = ["fit", "-c", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
            "--trainer.max_epochs", "2", *QUIET]  # fmt: skip
    result = s.cli(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(x for x in result.stderr.splitlines() if "1cycle schedule" in x)
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    schedule = saved["lr_schedulers"][0]
    assert saved["epoch"] == 1 and schedule["total_steps"] == schedule["last_epoch"]  # it ended where it should
    return Row(shown(args, s), 0, line.strip(), "the same run, 2 epochs, schedule rebuilt for 2")


@case("resume", "a 1cycle run resumed with one_cycle false")
def _(s: Scratch) -> Row:
    cwd, run = _resumable(s, "toggle", "fast.yaml")
    args = ["fit", "-c", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
            "--trainer.max_epochs", "2", "--model.one_cycle", "false", *QUIET]  # fmt: skip
    return refused(s, args, 1, "one_cycle true", cwd=cwd, survived="runs: the run untouched")


@case("resume", "NaN loss in epoch 2")
def _(s: Scratch) -> Row:
    cwd = s.folder("nan")
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "tests")}
    args = s.fit_args("--trainer.max_epochs", "3", "--trainer.callbacks+=poison.PoisonWeights")
    row = refused(s, args, 1, "NaN or infinite", "last.ckpt, is intact", cwd=cwd, env=env, survived="runs: last.ckpt of epoch 1")
    return row


@case("resume", "evaluating on a run: a report written twice into one folder")
def _(s: Scratch) -> Row:
    out = s.folder("twice")
    loose = out / "model.ckpt"  # outside a run: no curves to draw
    (out / "learning_curves.png").write_bytes(b"an older report's curves")
    shutil.copy(s.best, loose)
    args = ["report", "--ckpt_path", str(loose), "--output_dir", str(out), *QUIET]
    result = s.cli(*args, cwd=out)
    assert result.returncode == 0 and not (out / "learning_curves.png").exists(), result.stderr[-2000:]
    return Row(shown(args, s), 0, "No training curves ... learning_curves.png skipped", "no stale learning_curves.png")


# --- several processes


def _ddp(*args: str) -> list[str]:
    return [*args, "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]


@case("ddp", "`predict` on 2 processes, a folder of 7 pictures")
def _(s: Scratch) -> Row:
    pictures = s.pictures(7)
    one, rows_one = _predict(s, str(pictures), cwd=s.folder("p1"))
    two, rows_two = _predict(s, str(pictures), *_ddp()[0:], cwd=s.folder("p2"))
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    assert rows_two == rows_one and len(rows_one) == 7
    return Row("mnist-lightning predict ... --data.predict_path pictures/ --trainer.devices 2 --trainer.strategy ddp", 0,
               "(predicts)", "predictions.csv equal to one process's, row for row")  # fmt: skip


@case("ddp", "`predict` on 2 processes, the test set")
def _(s: Scratch) -> Row:
    cwd1, cwd2 = s.folder("t1"), s.folder("t2")
    assert s.cli("predict", "--ckpt_path", str(s.best), *QUIET, cwd=cwd1).returncode == 0
    two = s.cli(*_ddp("predict", "--ckpt_path", str(s.best), *QUIET), cwd=cwd2)
    assert two.returncode == 0, two.stderr[-2000:]
    assert (cwd1 / "predictions.csv").read_text() == (cwd2 / "predictions.csv").read_text()
    return Row("mnist-lightning predict --ckpt_path CKPT --trainer.devices 2 --trainer.strategy ddp", 0, "(predicts)",
               "predictions.csv equal to one process's")  # fmt: skip


@case("ddp", "`test` and `report` on 2 processes")
def _(s: Scratch) -> Row:
    outs = []
    for devices in ("1", "2"):
        out = s.folder(f"report{devices}")
        args = ["report", "--ckpt_path", str(s.best), "--output_dir", str(out), *QUIET]
        result = s.cli(*(_ddp(*args) if devices == "2" else args), cwd=out)
        assert result.returncode == 0, result.stderr[-2000:]
        outs.append(out)
    one, two = (json.loads((out / "metrics.json").read_text()) for out in outs)
    # The loss is a float32 sum, added in another order on two processes.
    loss_one, loss_two = one.pop("test_loss"), two.pop("test_loss")
    assert abs(loss_one - loss_two) <= 1e-6 * abs(loss_one), (loss_one, loss_two)
    assert one == two
    return Row("mnist-lightning report --ckpt_path CKPT --trainer.devices 2 --trainer.strategy ddp", 0, "(reports)",
               "metrics.json equal to one process's (loss within 1e-6: float sums in another order)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the cases whose group or name contains this")
    args = parser.parse_args()
    chosen = [c for c in CASES if args.only in c.group or args.only in c.name]
    print("| # | Input | Command | What the user sees | Exit | What survived |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Scratch(Path(tmp))
        for i, c in enumerate(chosen, 1):
            try:
                row = c.run(scratch)
            except Exception as err:  # noqa: BLE001  # the table shows a failing case instead of stopping
                row = Row("", -1, "", f"**FAILED**: {type(err).__name__}: {' '.join(str(err).split())[:300]}")
            cells = [str(i), f"{c.group}: {c.name}", f"`{row.command}`", row.says.replace("|", "\\|"), str(row.exit), row.survived]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
