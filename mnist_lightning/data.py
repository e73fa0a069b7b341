"""MNIST as whole uint8 tensors, served a batch at a time."""

from __future__ import annotations

import fnmatch
import glob
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torchvision.datasets import MNIST

from mnist_lightning.augment import Distortion
from mnist_lightning.errors import UserError
from mnist_lightning.preprocess import mnist_style

# The statistics of the MNIST training set, for the optional `standardize`.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

Batch = tuple[Tensor, Tensor]


class TensorBatches(Dataset[Batch]):
    """Images and labels held as tensors; `__getitems__` gathers a whole batch at once.

    torchvision's MNIST turns every sample into a PIL image and back, which took half
    an epoch of compute; one gather per batch costs about as much as one of those
    conversions (docs/speed.md).
    """

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images = images.unsqueeze(1)  # N x 1 x 28 x 28, still uint8
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Batch:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> Batch:
        # The indices go through numpy: torch.tensor inspects each Python int, ~3x slower.
        return self.gather(torch.from_numpy(np.array(indices, dtype=np.int64)))

    def gather(self, index: Tensor) -> Batch:
        """The items at `index` as one batch.

        index_select copies whole rows; `images[index]` copies byte by byte through
        advanced indexing, ~4x slower.
        """
        return self.images.index_select(0, index), self.labels.index_select(0, index)


class SampledBatches:
    """Batches in a sampler's order, each one `TensorBatches.gather`: the training loader.

    Lightning takes any sized iterable as a dataloader, and calls `set_epoch` on its
    `sampler`. A DataLoader around the same gather adds a Python loop over the indices,
    a fetcher and a collate to every step (0.5% of an epoch, docs/speed.md); workers
    could only add copying between processes to a gather that takes microseconds.
    """

    def __init__(self, dataset: TensorBatches, batch_size: int, sampler: Sampler[int]) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.sampler = sampler

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        # A generator, so the order is drawn at the first batch, as a DataLoader's
        # is: Lightning creates the iterator before it calls set_epoch.
        order = torch.from_numpy(np.fromiter(self.sampler, np.int64, len(self.sampler)))
        yield from map(self.dataset.gather, order.split(self.batch_size))


def _already_batched(batch: Batch) -> Batch:
    """collate_fn for TensorBatches, whose batches need no collating."""
    return batch


@rank_zero_only
def warn(message: str) -> None:
    """A line on stderr for a picture or folder that is skipped, once under DDP."""
    print(f"mnist-lightning: warning: {message}", file=sys.stderr)


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
        raise UserError(f"cannot write MNIST into {raw}: {err.strerror or err}. "
                        "Free space, or point --data.data_dir at a writable folder") from err  # fmt: skip
    except RuntimeError as err:  # torchvision raises it for a failed download or missing files
        reason = " ".join(str(err).split())[:400] if download else "download is switched off"
        raise UserError(
            f"MNIST is not in {raw} and could not be downloaded ({reason}). "
            f"Put the four files {', '.join(RAW_FILES)} (or their .gz) into {raw}, "
            "or point --data.data_dir at a folder that holds MNIST/raw/."
        ) from err


def find_files(path: str) -> list[Path]:
    """A file, every file under a directory, or a glob pattern's matches, sorted; each file once.

    Symbolic links to folders are followed, but never into a folder already walked, so
    link loops end; a file reached by two routes is read once. Unreadable folders are
    named in a warning.
    """
    if not path.strip():
        raise UserError("--data.predict_path is empty: give an image file, a folder or a glob pattern")
    given = Path(path).expanduser()
    if given.is_file():
        return [given]
    if given.exists() and not given.is_dir():  # a FIFO, a device, a socket: reading it could block or never end
        raise UserError(f"--data.predict_path {path} is not a picture file or a folder (a device, FIFO or socket)")
    if given.is_dir():
        root, pattern = given, None
    else:
        parts = given.parts
        magic = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
        root, pattern = Path(*parts[:magic]) if magic else Path("."), parts[magic:]
    files = sorted(f for f in _walk(root) if pattern is None or _matches(f.relative_to(root).parts, pattern))
    if not files:
        raise UserError(f"--data.predict_path {path}: no such file, or no files in that directory or pattern")
    return files


def _walk(root: Path) -> Iterator[Path]:
    """The files under root, following folder links but entering each real folder and reading each file once."""
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()

    def unreadable(err: OSError) -> None:
        warn(f"skipped the folder {err.filename}: {err.strerror}")

    for folder, dirs, names in os.walk(root, followlinks=True, onerror=unreadable):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in seen_dirs:
            dirs.clear()
            continue
        seen_dirs.add((stat.st_dev, stat.st_ino))
        dirs.sort()
        for name in sorted(names):
            file = Path(folder, name)
            try:
                info = file.stat()
            except OSError:  # a dangling link
                continue
            if file.is_file() and (info.st_dev, info.st_ino) not in seen_files:
                seen_files.add((info.st_dev, info.st_ino))
                yield file


def _matches(parts: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """Whether path components match a glob's components; `**` spans any number of folders."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_matches(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _matches(parts[1:], pattern[1:])


# Pictures above this many pixels are skipped: a small compressed file can hold a huge
# image (12000x12000 is 3.7 GB to decode), and no photo of one digit needs more.
MAX_PIXELS = 40_000_000
# JPEGs above this are decoded at a reduced scale (Pillow's draft: 1/2 to 1/8, nearly free);
# the digit is cropped and shrunk to 20 px anyway.
DRAFT_PIXELS = 4_000_000


class TooManyPixels(ValueError):
    """A picture larger than the pixels a reader accepts."""


def read_digit(source: str | Path | BinaryIO, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """One picture (a file or a file object) as a 28x28 uint8 MNIST digit, made as MNIST was.

    Raises TooManyPixels (judged from the header, before decoding), NoDigit (blank), or what
    Pillow raises for a file it cannot read (any exception: a damaged file can break a decoder in any way).
    """
    with Image.open(source) as image:
        if image.width * image.height > max_pixels:
            raise TooManyPixels(f"{image.width}x{image.height} pixels, more than the {max_pixels:,} read")
        if image.format == "JPEG" and image.width * image.height > DRAFT_PIXELS:
            image.draft(image.mode, (1024, 1024))
        return mnist_style(image)


def frames(path: Path) -> int:
    """How many frames (GIF) or pages (TIFF) a picture file holds; 1 when it cannot tell."""
    try:
        with Image.open(path) as image:
            return getattr(image, "n_frames", 1)
    except Exception:  # noqa: BLE001  # read_digit has named the file already
        return 1


def read_digits(path: str) -> tuple[TensorBatches, list[Path]]:
    """People's digit pictures as MNIST digits; files that cannot be read are named and skipped."""
    files = find_files(path)
    digits, kept = [], []
    for file in files:
        try:
            digits.append(torch.from_numpy(read_digit(file)))
            kept.append(file)
        except MemoryError:
            warn(f"skipped {file}: not enough memory to decode it")
            continue
        except Exception as err:  # noqa: BLE001  # Pillow's decoders fail in many ways; one file must not end the command
            warn(f"skipped {file}: {' '.join(str(err).split()) or type(err).__name__}")
            continue
        if (count := frames(file)) > 1:
            warn(f"{file}: read the first of its {count} frames")
    if not kept:
        raise UserError(f"none of the {len(files)} file(s) under {path} could be read as a digit image")
    # The label slot carries each digit's row number in `kept`.
    return TensorBatches(torch.stack(digits), torch.arange(len(kept))), kept


class MNISTDataModule(L.LightningDataModule):
    """The data: MNIST, or your own pictures for predict.

    Split as the notebook's Keras `validation_split`: validation is the last
    `val_split` of the official training set, the test set is only used by `test`.
    `predict` runs on `predict_path` (an image file, a directory or a glob), or on
    the test set when it is not given.

    Batches leave the loaders as uint8 and are scaled after the transfer to the
    device (`on_after_batch_transfer`): 4x fewer bytes to move, and one multiply
    both converts and scales. `num_workers` serves the evaluation and
    prediction loaders; training batches are gathered in this process (SampledBatches).

    Args:
        data_dir: Folder holding MNIST/raw/ (torchvision's layout); downloaded there if missing.
        batch_size: Training batch size; 128 in the notebook.
        eval_batch_size: Batch size of validation, test and predict.
        val_split: Share of the training set held out for validation, its last images.
        standardize: Subtract MNIST's mean and divide by its deviation after scaling by 1/255.
        download: Download missing MNIST files; false refuses instead.
        num_workers: Loader processes for evaluation and predict; 0 loads in the main process.
        predict_path: Pictures for predict: a file, a folder or a glob; default the MNIST test set.
        augment: Random distortions of training images, each kind's largest amount, e.g.
            {rotation: 10, scale: 0.1, shift: 2, shear: 10, thickness: 0.5, elastic: 1}
            (degrees, relative size, pixels, degrees, stroke weight, pixels); off by default.
    """

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        eval_batch_size: int = 250,
        val_split: float = 0.1,
        standardize: bool = False,
        download: bool = True,
        num_workers: int = 0,
        predict_path: str | None = None,
        augment: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise UserError(f"batch sizes must be at least 1, got {batch_size} and {eval_batch_size}")
        if not 0 < val_split < 1:
            raise UserError(f"val_split must lie strictly between 0 and 1, got {val_split}")
        if num_workers < 0:
            raise UserError(f"num_workers must be 0 or more, got {num_workers}")
        # predict_path is not kept in checkpoints: a later `predict` must not silently read old pictures.
        self.save_hyperparameters(ignore="predict_path")
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_split = val_split
        self.download = download
        self.num_workers = num_workers
        self.predict_path = predict_path
        self.distortion = Distortion(augment) if augment else None
        self.distorted_epoch: int | None = None
        # x * scale + shift == (x / 255 - mean) / std.
        mean, std = (MNIST_MEAN, MNIST_STD) if standardize else (0.0, 1.0)
        self.scale, self.shift = 1.0 / (255.0 * std), -mean / std
        self.train_set: TensorBatches | None = None
        self.val_set: TensorBatches | None = None
        self.test_set: TensorBatches | None = None
        self.predict_set: TensorBatches | None = None
        self.predict_files: list[Path] = []

    def prepare_data(self) -> None:
        """Downloads what is missing (on one process per node, so a DDP job downloads once).

        Files already there are left to `setup`, which parses them once.
        """
        predicting_files = self.predict_path is not None and self.trainer is not None and self.trainer.predicting
        raw = raw_dir(self.data_dir)
        if not predicting_files and not all((raw / name).is_file() for name in RAW_FILES):
            created = [folder for folder in (raw, raw.parent, Path(self.data_dir)) if not folder.exists()]
            try:
                for train in (True, False):
                    load_mnist(self.data_dir, train, self.download)
            except UserError:
                for folder in created:  # a failed download leaves no empty folders behind
                    if folder.is_dir() and not any(folder.iterdir()):
                        folder.rmdir()
                raise

    def setup(self, stage: str) -> None:
        if stage in ("fit", "validate") and self.train_set is None:
            full = load_mnist(self.data_dir, train=True, download=False)
            n_val = int(len(full) * self.val_split)
            if n_val == 0 or n_val == len(full):
                raise UserError(f"--data.val_split {self.val_split} of {len(full)} training images leaves "
                                f"{n_val} for validation and {len(full) - n_val} for training; both need at least one")  # fmt: skip
            n_train = len(full) - n_val
            self.train_set = TensorBatches(full.data[:n_train], full.targets[:n_train])
            self.val_set = TensorBatches(full.data[n_train:], full.targets[n_train:])
        if stage == "predict" and self.predict_path is not None:
            self.predict_set, self.predict_files = read_digits(self.predict_path)
        elif stage in ("test", "predict") and self.test_set is None:
            test = load_mnist(self.data_dir, train=False, download=False)
            self.test_set = TensorBatches(test.data, test.targets)

    def train_dataloader(self) -> SampledBatches:
        assert self.train_set is not None
        # Our own DistributedSampler, also for one process: its order is a pure
        # function of (seed, epoch) (Lightning calls set_epoch), and under DDP it
        # gives each rank a disjoint shard.
        trainer = self.trainer
        sampler = DistributedSampler(
            self.train_set,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
            shuffle=True,
            seed=int(os.environ.get("PL_GLOBAL_SEED", "0")),  # set by seed_everything
        )
        return SampledBatches(self.train_set, self.batch_size, sampler)

    def val_dataloader(self) -> DataLoader[Batch]:
        assert self.val_set is not None
        return self._loader(self.val_set, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader[Batch]:
        assert self.test_set is not None
        return self._loader(self.test_set, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader[Batch]:
        if self.predict_set is not None:
            return self._loader(self.predict_set, self.eval_batch_size)
        return self.test_dataloader()

    def predict_table(self) -> tuple[list[str], list[list[object]]]:
        """What identifies each predicted row: the file's path, or the test set's index and label."""
        if self.predict_set is not None:
            return ["path"], [[str(f)] for f in self.predict_files]
        assert self.test_set is not None
        return ["index", "label"], [[i, int(y)] for i, y in enumerate(self.test_set.labels)]

    def _loader(self, dataset: TensorBatches, batch_size: int) -> DataLoader[Batch]:
        world_size = self.trainer.world_size if self.trainer else 1
        # Under DDP each image exactly once, rank r taking images r, r + W, ...: Lightning's
        # default for validation and test pads the ranks' shares with repeated images.
        sampler = None  # in order: DataLoader's default sampler without shuffle
        if world_size > 1:
            sampler = UnrepeatedDistributedSampler(dataset, world_size, self.trainer.global_rank, shuffle=False)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=_already_batched,
            # Its own generator: every new iterator draws a seed, and drawing it
            # from the global RNG would shift dropout's random stream in a way a
            # resumed run cannot reproduce (see callbacks.RNGState).
            generator=torch.Generator(),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def in_dataset_order(self, local: Tensor) -> Tensor:
        """The rows every rank computed for its share of an evaluation set, gathered on
        every rank into the dataset's order (the inverse of UnrepeatedDistributedSampler)."""
        world_size = self.trainer.world_size if self.trainer else 1
        if world_size == 1:
            return local
        parts: list[Tensor | None] = [None] * world_size
        torch.distributed.all_gather_object(parts, local.cpu())
        whole = torch.empty(sum(len(p) for p in parts), *local.shape[1:], dtype=local.dtype)
        for rank, part in enumerate(parts):
            whole[rank::world_size] = part
        return whole

    def on_after_batch_transfer(self, batch: Batch | Tensor, dataloader_idx: int) -> Batch | Tensor:
        if isinstance(batch, Tensor):  # the model summary's example input: float already
            return batch
        images, labels = batch
        scaled = images.mul(self.scale)  # uint8 * float scalar gives float32
        if self.distortion is not None and self.trainer is not None and self.trainer.training:
            scaled = self._distort(scaled)
        # Adding a zero shift would be a second pass over the batch.
        return (scaled.add_(self.shift) if self.shift else scaled), labels

    def _distort(self, images: Tensor) -> Tensor:
        """Augments a training batch; the draws start afresh from (seed, epoch, rank) each epoch, like the data order."""
        assert self.distortion is not None and self.trainer is not None
        if self.distorted_epoch != self.trainer.current_epoch:
            self.distorted_epoch = self.trainer.current_epoch
            seed = int(os.environ.get("PL_GLOBAL_SEED", "0"))
            self.distortion.reseed(seed, self.distorted_epoch, self.trainer.global_rank)
        return self.distortion(images)
