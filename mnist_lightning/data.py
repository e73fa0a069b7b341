"""The DataModule: MNIST (or your pictures, for predict) as whole uint8 tensors, a batch at a time."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import lightning as L
import torch
from jsonargparse.typing import NonNegativeInt, OpenUnitInterval, PositiveInt
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler

from mnist_lightning.augment import Distortion
from mnist_lightning.batches import Batch, SampledBatches, TensorBatches, already_batched
from mnist_lightning.errors import UserError
from mnist_lightning.mnist_files import RAW_FILES, load_mnist, raw_dir
from mnist_lightning.pictures import find_files, frames, read_digit

# The statistics of the MNIST training set, for the optional `standardize`.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


@rank_zero_only
def warn(message: str) -> None:
    """A line on stderr for a picture or folder that is skipped, once under DDP."""
    print(f"mnist-lightning: warning: {message}", file=sys.stderr)


def read_digits(path: str) -> tuple[TensorBatches, list[Path]]:
    """People's digit pictures as MNIST digits; files that cannot be read are named and skipped."""
    files = find_files(path, warn)
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
        batch_size: PositiveInt = 128,
        eval_batch_size: PositiveInt = 250,
        val_split: OpenUnitInterval = 0.1,
        standardize: bool = False,
        download: bool = True,
        num_workers: NonNegativeInt = 0,
        predict_path: str | None = None,
        augment: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        if (
            batch_size < 1 or eval_batch_size < 1 or not 0 < val_split < 1 or num_workers < 0
        ):  # the CLI's types check it first
            raise UserError(
                "need batch sizes >= 1, 0 < val_split < 1 and num_workers >= 0; "
                f"got {batch_size}, {eval_batch_size}, {val_split}, {num_workers}"
            )
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
                raise UserError(
                    f"--data.val_split {self.val_split} of {len(full)} training images leaves "
                    f"{n_val} for validation and {len(full) - n_val} for training; both need at least one"
                )
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
            collate_fn=already_batched,
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
