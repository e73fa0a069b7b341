"""Small synthetic MNIST-format files, so fast tests need neither network nor real data."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import shutil
import struct
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from torchvision.datasets import MNIST

REAL_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "mnist"
N_TRAIN, N_TEST = 400, 100


def write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format MNIST ships in: magic (0, 0, uint8 type, ndim), big-endian dims, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise plus a bright bar whose row encodes the label: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for image, label in zip(images, labels):
        row = 2 + 2 * int(label)
        image[row : row + 2, 4:24] = 255
    return images, labels


def write_mnist(root: Path, compress: bool = False, n_train: int = N_TRAIN) -> dict[str, np.ndarray]:
    """Writes the four files into root (raw layout, or .gz for a download server)."""
    arrays = {}
    for prefix, n, seed in (("train", n_train, 0), ("t10k", N_TEST, 1)):
        images, labels = synthetic_digits(n, seed)
        arrays[f"{prefix}-images-idx3-ubyte"] = images
        arrays[f"{prefix}-labels-idx1-ubyte"] = labels
    root.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(root / name, array)
        if compress:
            (root / f"{name}.gz").write_bytes(gzip.compress((root / name).read_bytes()))
            (root / name).unlink()
    return arrays


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def synthetic_mnist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """(data_dir, arrays): data_dir/MNIST/raw holds the four uncompressed files."""
    data_dir = tmp_path_factory.mktemp("mnist")
    arrays = write_mnist(data_dir / "MNIST" / "raw")
    return data_dir, arrays


@pytest.fixture
def real_mnist() -> Path:
    if not (REAL_MNIST / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST not found at {REAL_MNIST} (the project's shared/ folder)")
    return REAL_MNIST


CONFIG = Path(__file__).resolve().parents[1] / "configs" / "mnist.yaml"


def cli_command(*args: str) -> list[str]:
    """The installed `mnist-lightning` script with arguments, as a user would type it."""
    script = shutil.which("mnist-lightning") or str(Path(sys.executable).with_name("mnist-lightning"))
    return [script, *args]


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **(env or {})}
    return subprocess.run(cli_command(*args), check=False, cwd=cwd, capture_output=True, text=True, timeout=300, env=environ)


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    """LightningCLI called in-process sees pytest's own arguments in sys.argv, and warns."""
    monkeypatch.setattr(sys, "argv", ["mnist-lightning"])


def only_run(cwd: Path) -> Path:
    """The one run directory under cwd/runs/mnist (failing when there are none or several)."""
    found = sorted((cwd / "runs" / "mnist").iterdir())
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="session")
def fitted_run(synthetic_mnist, tmp_path_factory):
    """One short fit on the synthetic files, shared by the tests below."""
    data_dir, _ = synthetic_mnist
    cwd = tmp_path_factory.mktemp("cwd")
    result = cli(
        "fit", "-c", str(CONFIG), "--data.data_dir", str(data_dir), "--data.batch_size", "32",
        "--model.lr", "0.003", "--trainer.max_epochs", "3", "--trainer.log_every_n_steps", "5",
        "--trainer.enable_progress_bar", "false", cwd=cwd,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd, only_run(cwd), result


@pytest.fixture(scope="session")
def best_checkpoint(fitted_run) -> Path:
    return next((fitted_run[1] / "checkpoints").glob("epoch*.ckpt"))


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
