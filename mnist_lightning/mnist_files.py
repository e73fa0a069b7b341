"""MNIST's four IDX files: checked, then read (and downloaded) by torchvision's MNIST."""

from __future__ import annotations

from pathlib import Path

from torchvision.datasets import MNIST

from mnist_lightning.errors import UserError

RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

IDX_MAGIC = {"images": 2051, "labels": 2049}  # IDX: uint8 data, 3 and 1 dimensions


def check_idx(path: Path, kind: str) -> int:
    """The number of items in an MNIST IDX file, or UserError naming the file.

    torchvision parses with bare asserts and no file name; this reads the header
    and compares the file's size with it, which is cheap and tells what is wrong.
    """
    ndim = 3 if kind == "images" else 1
    header_size = 4 + 4 * ndim
    with path.open("rb") as file:
        data = file.read(header_size)
    size = path.stat().st_size
    if len(data) < header_size:
        raise UserError(f"{path} is truncated: {size} bytes, too short even for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic != IDX_MAGIC[kind]:
        raise UserError(f"{path} is not an MNIST {kind} file (magic number {magic}, expected {IDX_MAGIC[kind]})")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if kind == "images" and dims[1:] != [28, 28]:
        raise UserError(f"{path} holds {dims[1]}x{dims[2]} images; MNIST's are 28x28")
    expected = header_size + dims[0] * (784 if kind == "images" else 1)
    if size != expected:
        raise UserError(f"{path} is truncated or damaged: {size} bytes where its header announces {expected}")
    return dims[0]


def raw_dir(data_dir: str | Path) -> Path:
    """Where torchvision's MNIST keeps the four files under its root."""
    return Path(data_dir) / "MNIST" / "raw"


def load_mnist(data_dir: str | Path, train: bool, download: bool) -> MNIST:
    """torchvision's MNIST (download, checksums, parsing), with one clear message on failure."""
    raw = raw_dir(data_dir)
    prefix = "train" if train else "t10k"
    images, labels = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
    if images.is_file() and labels.is_file():
        n_images, n_labels = check_idx(images, "images"), check_idx(labels, "labels")
        if n_images != n_labels:
            raise UserError(f"{images} holds {n_images} images but {labels} holds {n_labels} labels")
    try:
        return MNIST(str(data_dir), train=train, download=download)
    except OSError as err:  # a folder that cannot be created or written, a full disk
        raise UserError(
            f"cannot write MNIST into {raw}: {err.strerror or err}. "
            "Free space, or point --data.data_dir at a writable folder"
        ) from err
    except RuntimeError as err:  # torchvision raises it for a failed download or missing files
        reason = " ".join(str(err).split())[:400] if download else "download is switched off"
        raise UserError(
            f"MNIST is not in {raw} and could not be downloaded ({reason}). "
            f"Put the four files {', '.join(RAW_FILES)} (or their .gz) into {raw}, "
            "or point --data.data_dir at a folder that holds MNIST/raw/."
        ) from err
