"""Seconds per epoch of the project's fit against plain PyTorch loops and Keras, measured in one run.

    python scripts/benchmark.py --data_dir ../shared/mnist [--epochs 10] [--json benchmark.json]
        [--keras_python TF_ENV/bin/python] [--before OTHER_CHECKOUT]

Every system trains the same network on the same 54k/6k split with batch 128 and
Adam(1e-3); an epoch is the training pass plus validation. The project's fit and the
plain loop with our optimizations take turns every 50 training steps (see Interleave);
the notebook's loops, and the peers in their own processes, run an epoch after each
project epoch: Keras running the notebook (--keras_python, a Python with TensorFlow;
docs/speed.md says how to make one) and, with --before CHECKOUT, another version of
the project beside this one, each in a process of its own (scripts/fit_peer.py). The
first epoch of each is warm-up; the table shows the median (and min-max) of the rest. A second phase pairs a bare Trainer
(Lightning's parity setup) with a fresh plain loop the same way; with --keras_python, a
third alternates the project in bf16 (NativeBF16) with Keras' mixed_bfloat16. Run it on
an otherwise idle machine: a second busy process halves the figures on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import MNIST

from mnist_lightning.cli import MNISTCLI
from mnist_lightning.data import MNISTDataModule
from mnist_lightning.errors import UserError
from mnist_lightning.host import tune_host
from mnist_lightning.model import MNISTNet
from mnist_lightning.module import MNISTClassifier

ROOT = Path(__file__).resolve().parents[1]
NCHW, CL, OURS = "plain loop, notebook, NCHW", "plain loop, notebook, channels_last", "plain loop, our optimizations"
BARE = "bare Trainer (logger, checkpoints, progress bar off)"
BATCH, EVAL_BATCH = 128, MNISTDataModule().eval_batch_size  # the project's evaluation batch for every system


class PlainLoop:
    """A hand-written loop. The notebook's loops index preloaded float tensors (the issue's
    baseline). `optimized` is the project's computation without Lightning: MNISTNet as it
    is (pool before ReLU, the unseen pixels skipped, channels_last input and weights,
    Keras' flatten order), denormals flushed, fused Adam, batches gathered
    from uint8 with index_select and scaled (as TensorBatches and the data module do), and
    the epoch's train loss and accuracy summed on the device (as MNISTClassifier does)."""

    def __init__(self, data: dict[str, Tensor], optimized: bool, channels_last: bool) -> None:
        torch.manual_seed(0)
        self.optimized = optimized
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        net = MNISTNet() if optimized else notebook_order(MNISTNet())
        self.net = net.to(memory_format=self.fmt)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3, eps=1e-7, fused=optimized)
        # uint8 for the project's gather; the notebook's loops preload floats, as Keras does
        self.images = {
            split: data[f"x_{split}"] if optimized else data[f"x_{split}"].float().div(255)
            for split in ("train", "val")
        }
        self.labels = {split: data[f"y_{split}"] for split in ("train", "val")}
        self.times: list[float] = []

    def batches(self, split: str, batch_size: int, shuffle: bool) -> Iterator[tuple[Tensor, Tensor]]:
        images, labels = self.images[split], self.labels[split]
        order = torch.randperm(len(labels)) if shuffle else torch.arange(len(labels))
        for idx in order.split(batch_size):
            if self.optimized:
                yield images.index_select(0, idx).mul(1 / 255), labels.index_select(0, idx)
            else:
                yield images[idx], labels[idx]

    def epoch(self) -> None:
        self.start_epoch()
        self.train_steps(len(self.labels["train"]))
        self.finish_epoch()

    def start_epoch(self) -> None:
        self.net.train()
        self.train_batches = self.batches("train", BATCH, shuffle=True)
        self.sums = torch.zeros(2)
        self.elapsed = 0.0

    def train_steps(self, n: int) -> None:
        """The epoch's next `n` training steps (fewer at its end)."""
        with self.timed():
            for x, y in itertools.islice(self.train_batches, n):
                logits = self.net(x.contiguous(memory_format=self.fmt))
                loss = F.cross_entropy(logits, y)
                if self.optimized:
                    self.sums.add_(torch.stack((loss.detach() * len(y), (logits.argmax(1) == y).sum())))
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()

    def finish_epoch(self) -> None:
        """Validation, loss and accuracy as Keras and the project report them; the epoch's time is then complete."""
        with self.timed():
            self.net.eval()
            with torch.inference_mode():
                sums = torch.zeros(2)
                for x, y in self.batches("val", EVAL_BATCH, shuffle=False):
                    logits = self.net(x.contiguous(memory_format=self.fmt))
                    sums += torch.stack((F.cross_entropy(logits, y, reduction="sum"), (logits.argmax(1) == y).sum()))
            self.net.train()
        self.times.append(self.elapsed)
        self.val_loss, self.val_acc = (sums / len(self.labels["val"])).tolist()

    @contextmanager
    def timed(self) -> Iterator[None]:
        torch.set_flush_denormal(self.optimized)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.elapsed += time.perf_counter() - start
            torch.set_flush_denormal(True)  # back to the project's setting (host.tune_host)


class Peer:
    """A system in its own process that trains one epoch per request (scripts/keras_notebook.py,
    scripts/fit_peer.py): the same interface as PlainLoop.epoch for Interleave."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
        )
        self.info = self._answer("ready")
        self.times: list[float] = []

    def epoch(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("epoch\n")
        self.process.stdin.flush()
        answer = self._answer("seconds")
        self.times.append(answer["seconds"])
        self.val_loss, self.val_acc = answer["val_loss"], answer["val_acc"]

    def _answer(self, key: str) -> dict:
        """The peer's next JSON line holding `key`; other output (libraries' chatter) is passed by."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{") and key in (answer := json.loads(line)):
                return answer
        raise UserError(f"{self.process.args[1]} ended (exit {self.process.wait()}) without an answer")

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Interleave(L.Callback):
    """Times the project's epochs against plain loops, so that all systems meet the same
    machine: on a shared VM the same loop's epoch can drift by tens of percent from minute
    to minute.

    `paired`, the loop the overhead is measured against, runs in chunks of `chunk`
    training steps between the project's own chunks (~1 s each), and validates right
    after the project has; each project epoch is paired with the plain epoch made of
    those chunks. The `others` run a whole epoch after each project epoch. A project
    epoch is timed from its start to the next one's (or to the end of training), less
    the paired loop's time, so it includes validation and the checkpoints, which
    Lightning writes after every other callback's on_train_epoch_end.
    """

    def __init__(
        self, name: str, paired: PlainLoop | None, others: dict[str, PlainLoop | Peer], chunk: int = 50
    ) -> None:
        self.name = name
        self.paired = paired
        self.others = others
        self.chunk = chunk
        self.times: list[float] = []
        self.start: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end_epoch()
        if self.paired:
            self.paired.start_epoch()
        self.start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object, batch: object, batch_idx: int
    ) -> None:
        done = batch_idx + 1
        if self.paired and (done % self.chunk == 0 or done == trainer.num_training_batches):
            before = time.perf_counter()
            self.paired.train_steps(self.chunk)
            assert self.start is not None
            self.start += time.perf_counter() - before  # the project's clock stops meanwhile

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end_epoch()

    def _end_epoch(self) -> None:
        if self.start is None:
            return
        self.times.append(time.perf_counter() - self.start)
        print(f"{self.name}: {self.times[-1]:.2f} s", file=sys.stderr)
        if self.paired:
            self.paired.finish_epoch()
            print(f"  {OURS}: {self.paired.times[-1]:.2f} s", file=sys.stderr)
        for name, loop in self.others.items():
            loop.epoch()
            print(
                f"  {name}: {loop.times[-1]:.2f} s, val loss {loop.val_loss:.4f}, acc {loop.val_acc:.4f}",
                file=sys.stderr,
            )
        self.start = None


def project_fit(
    data_dir: str,
    epochs: int,
    paired: PlainLoop | None,
    others: dict[str, PlainLoop | Peer],
    options: tuple[str, ...] = (),
) -> list[float]:
    """The real thing: LightningCLI with configs/mnist.yaml, its logger, checkpoints and progress bar."""
    timer = Interleave(" ".join(("project fit", *options)), paired, others)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            args = [
                "-c",
                str(ROOT / "configs" / "mnist.yaml"),
                f"--data.data_dir={data_dir}",
                f"--trainer.max_epochs={epochs}",
                *options,
            ]
            cli = MNISTCLI(args=args, run=False)
            cli.trainer.callbacks.append(timer)
            cli.trainer.fit(cli.model, cli.datamodule)
        finally:
            os.chdir(cwd)
    return timer.times


KERAS_BF16 = "mixed_bfloat16"
BF16_OPTIONS = ("--trainer.plugins=mnist_lightning.precision.NativeBF16",)


def start_peers(args: argparse.Namespace) -> dict[str, Peer]:
    """The systems that run in processes of their own: Keras (float32 and mixed_bfloat16) and another checkout."""
    peers = {}
    if args.keras_python:
        for policy in ("float32", KERAS_BF16):
            peer = Peer(
                [
                    args.keras_python,
                    str(ROOT / "scripts" / "keras_notebook.py"),
                    "--data_dir",
                    args.data_dir,
                    "--policy",
                    policy,
                ]
            )
            info = peer.info
            peers[f"Keras {info['keras']} (TensorFlow {info['tensorflow']}), notebook, {policy}"] = peer
    if args.before:  # both versions as peers, so that they are measured the same way
        for checkout, role in ((args.before.resolve(), "before"), (ROOT, "this checkout")):
            commit = (
                subprocess.run(
                    ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout.strip()
                or checkout.name
            )
            peer = Peer(
                [
                    sys.executable,
                    str(ROOT / "scripts" / "fit_peer.py"),
                    "--data_dir",
                    args.data_dir,
                    "--epochs",
                    str(args.epochs),
                ],
                env={"PYTHONPATH": str(checkout)},
            )
            peers[f"project fit in a process of its own, {role} ({commit})"] = peer
    return peers


def bare_fit(data_dir: str, epochs: int, loop: PlainLoop) -> list[float]:
    """Lightning's own parity setup (its tests/parity_pytorch): our module and data in a Trainer
    with logger, checkpoints, progress bar and summary off. Beside the project's fit it tells
    what Lightning's loop costs apart from what our logging and checkpoints cost."""
    timer = Interleave("bare Trainer", loop, {})
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(MNISTClassifier(), MNISTDataModule(data_dir=data_dir))
    return timer.times


def notebook_order(net: MNISTNet) -> nn.Sequential:
    """The notebook as a plain PyTorch port writes it, with the same layers: conv -> relu
    -> pool, and nn.Flatten (whose (C, H, W) order is a view of an NCHW batch). Our
    in-place ReLUs stay: they only make this baseline faster."""
    layers = [net[i] for i in (0, 2, 1, 3, 5, 4, 6, 7, 8, 9, 10)]
    layers[6] = nn.Flatten()
    return nn.Sequential(*layers)


def images_per_second(batches: Callable[[], object], n_images: int, repeats: int = 3) -> float:
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _batch in batches():
            pass
        best = max(best, n_images / (time.perf_counter() - start))
    return best


def data_paths(data_dir: str) -> dict[str, float]:
    """One epoch of training batches (the first 90%: 54k images of MNIST), as float tensors
    on the host, both ways."""
    dm = MNISTDataModule(data_dir=data_dir)
    dm.setup("fit")
    ours, n_images = dm.train_dataloader(), len(dm.train_set)
    tv = MNIST(data_dir, train=True, transform=transforms.ToTensor())
    tv_loader = DataLoader(torch.utils.data.Subset(tv, range(n_images)), batch_size=BATCH, shuffle=True)

    def our_batches():
        for batch in ours:
            yield dm.on_after_batch_transfer(batch, 0)

    return {
        "torchvision": images_per_second(lambda: tv_loader, n_images, repeats=1),
        "ours": images_per_second(our_batches, n_images),
    }


def test_throughput(data_dir: str) -> dict[str, float]:
    """Images/s over the test set (10k images): Lightning's `test` and a plain inference loop."""
    dm = MNISTDataModule(data_dir=data_dir)
    model = MNISTClassifier()
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(model, dm, verbose=False)  # warm-up
    start = time.perf_counter()
    trainer.test(model, dm, verbose=False)
    n_images = len(dm.test_set)
    lightning_ips = n_images / (time.perf_counter() - start)
    x = dm.test_set.images.float().div(255)
    net = model.net.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for xb in x.split(EVAL_BATCH):
            net(xb)  # MNISTNet lays the batch out channels_last itself
    return {"project test": lightning_ips, "plain loop": n_images / (time.perf_counter() - start)}


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": L.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def overhead(lightning: list[float], plain: list[float]) -> dict[str, float]:
    """Median, min and max of epoch-by-epoch ratios, and the median difference in seconds
    (the unit of Lightning's own parity test), warm-up epoch left out."""
    pairs = list(zip(lightning[1:], plain[1:]))
    ratios = [a / b - 1 for a, b in pairs]
    return {
        "median": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "median_seconds": statistics.median(a - b for a, b in pairs),
    }


def summary(times: list[float]) -> dict[str, float]:
    timed = times[1:] or times
    return {"median": statistics.median(timed), "min": min(timed), "max": max(timed), "epochs": len(timed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per system, the first being warm-up")
    parser.add_argument("--json", default="benchmark.json", help="where to write the full results")
    parser.add_argument("--keras_python", help="a Python with TensorFlow: Keras runs the notebook as a peer")
    parser.add_argument("--before", type=Path, help="a checkout of another version of the project, run as a peer")
    args = parser.parse_args()
    args.data_dir = str(Path(args.data_dir).resolve())  # project_fit runs in a temporary directory

    # The project's process-wide settings (mnist_lightning.host) hold for every system
    # here, baselines included: they share one process. That flatters the baselines.
    tune_host()
    info = machine()
    dm = MNISTDataModule(data_dir=args.data_dir)
    dm.setup("fit")
    data = {
        "x_train": dm.train_set.images,
        "y_train": dm.train_set.labels,
        "x_val": dm.val_set.images,
        "y_val": dm.val_set.labels,
    }
    loops = {
        OURS: PlainLoop(data, optimized=True, channels_last=True),
        NCHW: PlainLoop(data, optimized=False, channels_last=False),
        CL: PlainLoop(data, optimized=False, channels_last=True),
    }
    peers = start_peers(args)
    print("timing the project's fit, interleaved with the plain loops and peers ...", file=sys.stderr)
    fp32_peers = {k: v for k, v in peers.items() if KERAS_BF16 not in k}
    project_times = project_fit(
        args.data_dir, args.epochs, loops[OURS], {NCHW: loops[NCHW], CL: loops[CL], **fp32_peers}
    )
    epochs = {name: summary(loops[name].times) for name in (NCHW, CL, OURS)}
    epochs.update({name: summary(peer.times) for name, peer in fp32_peers.items()})
    epochs["project fit (configs/mnist.yaml)"] = summary(project_times)
    if any(KERAS_BF16 in k for k in peers):
        print("timing the project's fit in bf16, interleaved with Keras' mixed_bfloat16 ...", file=sys.stderr)
        bf16_peers = {k: v for k, v in peers.items() if KERAS_BF16 in k}
        bf16_times = project_fit(args.data_dir, args.epochs, None, bf16_peers, BF16_OPTIONS)
        epochs.update({name: summary(peer.times) for name, peer in bf16_peers.items()})
        epochs["project fit, bf16 (" + " ".join(BF16_OPTIONS) + ")"] = summary(bf16_times)
    for peer in peers.values():
        peer.close()
    print("timing a bare Trainer, interleaved with the optimized plain loop ...", file=sys.stderr)
    second_plain = PlainLoop(data, optimized=True, channels_last=True)
    bare_times = bare_fit(args.data_dir, args.epochs, second_plain)
    epochs[BARE] = summary(bare_times)
    print("timing data paths and test throughput ...", file=sys.stderr)
    loaders, tests = data_paths(args.data_dir), test_throughput(args.data_dir)

    base_nchw, base_cl = epochs[NCHW]["median"], epochs[CL]["median"]
    print(
        f"\n{info['cpu']}, {info['cores']} cores, torch {info['torch']} ({info['torch_threads']} threads), "
        f"lightning {info['lightning']}, {info['date']}"
    )
    keras = next((s["median"] for name, s in epochs.items() if name.startswith("Keras") and "float32" in name), None)
    print("\n| system | s/epoch (train + val), median [min-max] | vs plain NCHW | vs plain channels_last | vs Keras |")
    print("|---|---|---|---|---|")
    for name, s in epochs.items():
        vs_keras = f"{keras / s['median']:.2f}x" if keras else "-"
        print(
            f"| {name} | {s['median']:.2f} [{s['min']:.2f}-{s['max']:.2f}] | {base_nchw / s['median']:.2f}x | "
            f"{base_cl / s['median']:.2f}x | {vs_keras} |"
        )
    # Each Lightning epoch is paired with the plain epoch whose chunks ran between its own
    # (Interleave): the ratio of such neighbours is robust to the machine's drifting load.
    overheads = {
        "project fit": overhead(project_times, loops[OURS].times),
        "bare Trainer": overhead(bare_times, second_plain.times),
    }
    for name, o in overheads.items():
        print(
            f"\nLightning overhead, {name} vs plain loop with our optimizations (median of epoch-by-epoch "
            f"ratios): {o['median'] * 100:+.1f}% [{o['min'] * 100:+.1f}% to {o['max'] * 100:+.1f}%], "
            f"{o['median_seconds']:+.2f} s/epoch"
        )
    print(
        f"\n| data path ({len(data['y_train']):,} training images, host float batches) | images/s | ratio |"
        "\n|---|---|---|"
    )
    for name, ips in loaders.items():
        print(f"| {name} | {ips:,.0f} | {ips / loaders['torchvision']:.1f}x |")
    print("\n| test-set evaluation | images/s |\n|---|---|")
    for name, ips in tests.items():
        print(f"| {name} | {ips:,.0f} |")
    results = {
        "machine": info,
        "epochs": epochs,
        "data_paths": loaders,
        "test_throughput": tests,
        "lightning_overhead": overheads,
    }
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    try:
        main()
    except UserError as err:  # missing MNIST files and the like: the message, not a traceback
        sys.exit(f"benchmark: error: {err}")
