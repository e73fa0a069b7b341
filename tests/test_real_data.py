"""On the real MNIST files (../shared/mnist), skipped when they are absent."""

import lightning as L
import pytest
import torch
from helpers.training import bare_trainer

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
def test_brief_training_on_real_mnist_learns(real_mnist, tmp_path):
    L.seed_everything(0)
    dm = MNISTDataModule(data_dir=str(real_mnist))
    model = MNISTClassifier()
    trainer = bare_trainer(
        max_epochs=1,
        limit_train_batches=150,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, dm)
    (result,) = trainer.test(model, dm, verbose=False)
    assert result["accuracy/test"] > 0.95
