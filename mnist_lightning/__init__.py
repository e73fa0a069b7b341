"""The MNIST CNN of the Keras notebook, in PyTorch Lightning.

The classes work with any Lightning Trainer; `mnist_lightning.trainer()` is the one
`mnist-lightning fit` uses (run folder under runs/, TensorBoard, checkpoints, CPU settings):

    import mnist_lightning
    from mnist_lightning import MNISTClassifier, MNISTDataModule
    trainer = mnist_lightning.trainer(max_epochs=10)
    trainer.fit(MNISTClassifier(), MNISTDataModule("data"))
"""

from __future__ import annotations

import importlib

# Imported on first use, so that `mnist_lightning.preprocess` alone (numpy, Pillow, OpenCV)
# serves a consumer of an exported model who has no PyTorch.
_CLASSES = {"MNISTClassifier": "module", "MNISTDataModule": "data", "MNISTNet": "model", "trainer": "training"}
__all__ = list(_CLASSES)


def __getattr__(name: str) -> object:
    if name in _CLASSES:
        return getattr(importlib.import_module(f"mnist_lightning.{_CLASSES[name]}"), name)
    raise AttributeError(f"module 'mnist_lightning' has no attribute {name!r}")
