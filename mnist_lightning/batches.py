"""Datasets held as whole tensors, served a batch at a time without collating samples."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

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
        # The indices go through numpy: torch.tensor inspects each Python int (docs/speed.md).
        return self.gather(torch.from_numpy(np.array(indices, dtype=np.int64)))

    def gather(self, index: Tensor) -> Batch:
        """The items at `index` as one batch.

        index_select copies whole rows; `images[index]` copies byte by byte through
        advanced indexing (docs/speed.md).
        """
        return self.images.index_select(0, index), self.labels.index_select(0, index)


class SampledBatches:
    """Batches in a sampler's order, each one `TensorBatches.gather`: the training loader.

    Lightning takes any sized iterable as a dataloader, and calls `set_epoch` on its
    `sampler`. A DataLoader around the same gather adds a Python loop over the indices,
    a fetcher and a collate to every step (docs/speed.md); workers
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


def already_batched(batch: Batch) -> Batch:
    """collate_fn for TensorBatches, whose batches need no collating."""
    return batch
