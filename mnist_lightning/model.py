"""The notebook's CNN, layer for layer (225,034 parameters)."""

from __future__ import annotations

from torch import nn


class MNISTNet(nn.Sequential):
    """Conv 32 -> pool -> conv 64 -> pool -> dense 128 -> dropout -> dense 10.

    Returns logits: the notebook's final softmax is folded into the loss
    (cross-entropy on logits is the numerically stable form of the same thing).
    """

    def __init__(self, keras_init: bool = True, dropout: float = 0.5) -> None:
        super().__init__(
            nn.Conv2d(1, 32, kernel_size=3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 5 * 5, 128),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(128, 10),
        )
        if keras_init:
            self.apply(_glorot_uniform_zero_bias)


def _glorot_uniform_zero_bias(module: nn.Module) -> None:
    """Keras' default initialisation, which the notebook's accuracy was reached with.

    Keras and PyTorch compute the same fans for conv kernels (receptive field x
    channels), so xavier_uniform_ is exactly glorot_uniform.
    """
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)
