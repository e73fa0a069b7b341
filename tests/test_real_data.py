"""On the real MNIST files (../shared/mnist), skipped when they are absent."""

import pytest
import torch
from helpers.training import bare_trainer

from mnist_lightning.checkpoint import load_checkpoint
from mnist_lightning.data import MNISTDataModule
from mnist_lightning.module import MNISTClassifier


def test_real_split_sizes_and_order(real_mnist):
    dm = MNISTDataModule(data_dir=str(real_mnist))
    dm.setup("fit")
    dm.setup("test")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (54_000, 6_000, 10_000)
    # Validation is the file's last 6,000 labels, read here straight from the IDX bytes.
    raw_labels = (real_mnist / "MNIST" / "raw" / "train-labels-idx1-ubyte").read_bytes()[8:]
    assert dm.val_set.labels.tolist() == list(raw_labels[54_000:])
    assert dm.train_set.labels.tolist() == list(raw_labels[:54_000])
    assert torch.bincount(dm.test_set.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.slow
def test_one_epoch_on_real_mnist_learns(real_checkpoint, real_mnist):
    """One epoch of configs/fast.yaml (the shared real checkpoint) reads over 97% of the test set."""
    model = MNISTClassifier()
    model.load_state_dict(load_checkpoint(real_checkpoint)["state_dict"])
    (result,) = bare_trainer().test(model, MNISTDataModule(data_dir=str(real_mnist)), verbose=False)
    assert result["accuracy/test"] > 0.97
