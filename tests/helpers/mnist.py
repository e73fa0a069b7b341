"""Small synthetic MNIST-format files, so fast tests need neither network nor real data."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np

REAL_MNIST = Path(__file__).resolve().parents[3] / "shared" / "mnist"
N_TRAIN, N_TEST = 400, 100


def write_idx(path: Path, array: np.ndarray, repeat: int = 1) -> None:
    """The IDX format MNIST ships in: magic (0, 0, uint8 type, ndim), big-endian dims, data; the
    array `repeat` times over (written block by block: a big file without a big array)."""
    shape = (array.shape[0] * repeat, *array.shape[1:])
    data = array.astype(np.uint8).tobytes()
    with path.open("wb") as file:
        file.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *shape))
        for _ in range(repeat):
            file.write(data)


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
