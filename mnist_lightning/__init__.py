"""The MNIST CNN of the Keras notebook, in PyTorch Lightning.

The classes work with a plain Lightning Trainer as well as through `mnist-lightning`:

    from mnist_lightning import MNISTClassifier, MNISTDataModule
    trainer = lightning.Trainer(max_epochs=10)
    trainer.fit(MNISTClassifier(), MNISTDataModule("data"))
"""

from mnist_lightning import quiet
from mnist_lightning.data import MNISTDataModule
from mnist_lightning.model import MNISTNet
from mnist_lightning.module import MNISTClassifier

__all__ = ["MNISTClassifier", "MNISTDataModule", "MNISTNet"]

quiet.install()
