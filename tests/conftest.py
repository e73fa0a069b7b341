"""Fixtures shared by every test: synthetic MNIST files, one trained run, a local download mirror.

Tests that start the CLI, a server or a training of more than a few dozen batches are marked
`slow`; `pytest -m "not slow"` is the fast tier.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers.cli import CONFIGS, QUIET, cli, fit_args, in_process, only_run
from helpers.mnist import REAL_MNIST, md5, write_mnist
from helpers.training import bare_trainer
from torchvision.datasets import MNIST


@pytest.fixture(scope="session")
def synthetic_mnist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """(data_dir, arrays): data_dir/MNIST/raw holds the four uncompressed files."""
    data_dir = tmp_path_factory.mktemp("mnist")
    arrays = write_mnist(data_dir / "MNIST" / "raw")
    return data_dir, arrays


def _real_mnist() -> Path:
    if not (REAL_MNIST / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST not found at {REAL_MNIST} (the project's shared/ folder)")
    return REAL_MNIST


@pytest.fixture
def real_mnist() -> Path:
    return _real_mnist()


@pytest.fixture(scope="session")
def real_checkpoint(tmp_path_factory) -> Path:
    """A network that reads real handwriting: one epoch of configs/fast.yaml on real MNIST (cli.main in
    this process; the installed command's fits are the other tests')."""
    cwd = tmp_path_factory.mktemp("real")
    fast = str(CONFIGS / "fast.yaml")
    real = str(_real_mnist())
    # fast.yaml validates every third epoch: a one-epoch run must validate to save its best checkpoint
    one_epoch = ("--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1")
    in_process("fit", "-c", fast, "--data.data_dir", real, *one_epoch, *QUIET, cwd=cwd)
    return next((only_run(cwd) / "checkpoints").glob("epoch*.ckpt"))


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    """LightningCLI called in-process sees pytest's own arguments in sys.argv, and warns."""
    monkeypatch.setattr(sys, "argv", ["mnist-lightning"])


@pytest.fixture(scope="session")
def fitted_run(synthetic_mnist, tmp_path_factory):
    """(cwd, run, result): one 3-epoch `fit` through the installed CLI, shared by every CLI test.

    Tests may add evaluations to the run; none may change what it trained."""
    data_dir, _ = synthetic_mnist
    cwd = tmp_path_factory.mktemp("cwd")
    options = ["--model.lr", "0.003", "--trainer.max_epochs", "3", "--trainer.log_every_n_steps", "5"]
    result = cli(*fit_args(data_dir, *options, "--trainer.enable_progress_bar", "false", batch_size=32), cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd, only_run(cwd), result


@pytest.fixture(scope="session")
def best_checkpoint(fitted_run) -> Path:
    """The shared run's best checkpoint (by val_acc)."""
    return next((fitted_run[1] / "checkpoints").glob("epoch*.ckpt"))


@pytest.fixture(scope="session")
def test_set_predictions(best_checkpoint, tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`predict` of the shared run's best checkpoint without a path (the test set): its result and CSV."""
    cwd = tmp_path_factory.mktemp("test_set")
    result = cli("predict", "--ckpt_path", str(best_checkpoint), "--trainer.enable_progress_bar", "false", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, cwd / "predictions.csv"


@pytest.fixture(scope="session")
def best_report(best_checkpoint, tmp_path_factory) -> tuple[Path, str]:
    """`report` of the shared run's best checkpoint into a folder of its own: the folder, what it printed."""
    out = tmp_path_factory.mktemp("report")
    printed = in_process("report", "--ckpt_path", str(best_checkpoint), "--output_dir", str(out), cwd=out)
    return out, printed


@pytest.fixture(scope="session")
def tiny_checkpoint(synthetic_mnist, tmp_path_factory) -> Path:
    """A checkpoint trained in-process on 8 batches: for fast tests that need saved weights, not a good network."""

    from mnist_lightning import MNISTClassifier, MNISTDataModule

    root = tmp_path_factory.mktemp("tiny")
    trainer = bare_trainer(
        max_epochs=1,
        limit_train_batches=8,
        limit_val_batches=2,
        default_root_dir=root,
    )
    trainer.fit(MNISTClassifier(lr=0.003), MNISTDataModule(str(synthetic_mnist[0]), batch_size=32))
    trainer.save_checkpoint(root / "tiny.ckpt")
    return root / "tiny.ckpt"


@pytest.fixture
def mnist_server(tmp_path, monkeypatch):
    """A local HTTP mirror of synthetic .gz files; torchvision is pointed at it."""
    served = tmp_path / "server"
    arrays = write_mnist(served, compress=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    resources = [(f"{name}.gz", md5(served / f"{name}.gz")) for name in arrays]
    monkeypatch.setattr(MNIST, "mirrors", [url])
    monkeypatch.setattr(MNIST, "resources", resources)
    yield SimpleNamespace(url=url, arrays=arrays, served=served)
    server.shutdown()
