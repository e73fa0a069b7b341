"""`mnist-lightning export`: a checkpoint as a file that runs without this package.

The exported graph takes what a consumer has, a batch of 28x28 MNIST-style pixels
(uint8, 0-255, white digit on black), scales it as training did, and returns the ten
probabilities: ONNX for ONNX Runtime and other engines, or a torch.export
ExportedProgram (.pt2) for PyTorch.
"""

from __future__ import annotations

import io
import json
import zipfile
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from mnist_lightning.checkpoint import load_checkpoint
from mnist_lightning.errors import UserError
from mnist_lightning.files import write_atomically, write_bytes
from mnist_lightning.model import MNISTNet

if TYPE_CHECKING:  # serve's worker process unpickles Probabilities from here: it needs no Lightning
    from mnist_lightning.data import MNISTDataModule
    from mnist_lightning.module import MNISTClassifier

FORMATS = ("onnx", "pt2")
INPUT = "pixels"
OUTPUT = "probabilities"


class Probabilities(nn.Module):
    """MNISTNet behind the data module's scaling and a softmax: uint8 pixels (N, 28, 28) -> (N, 10)."""

    def __init__(self, net: MNISTNet, scale: float, shift: float) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False).to(memory_format=torch.contiguous_format)
        self.scale, self.shift = scale, shift

    def forward(self, pixels: Tensor) -> Tensor:
        images = pixels.unsqueeze(1).float() * self.scale + self.shift
        return self.net(images).softmax(dim=1)


def from_checkpoint(model: MNISTClassifier, datamodule: MNISTDataModule, ckpt_path: str) -> Probabilities:
    """The checkpoint's network behind its data's scaling (the CLI built model and data from its settings)."""
    model.load_state_dict(load_checkpoint(ckpt_path)["state_dict"])
    return Probabilities(model.net, datamodule.scale, datamodule.shift)


def metadata(ckpt_path: str, scale: float, shift: float) -> dict[str, str]:
    """What the file says about itself: labels, input, source checkpoint, package version."""
    return {
        "labels": ",".join(str(d) for d in range(10)),
        "input": f"{INPUT}: uint8 [batch, 28, 28], MNIST-style (white digit on black, 0-255)",
        "output": f"{OUTPUT}: float32 [batch, 10], the probability of each digit 0-9",
        "scaling": f"pixels * {scale!r} + {shift!r}, inside the graph",
        "source_checkpoint": str(Path(ckpt_path).resolve()),
        "producer": f"mnist-lightning {version('mnist-lightning')}",
    }


def export(model: Probabilities, path: Path, fmt: str, info: dict[str, str]) -> Path:
    """Writes `model` to `path` (atomically) as ONNX or an ExportedProgram, with a dynamic batch axis."""
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    # An example batch of 2: torch.export specialises sizes 0 and 1, which would freeze the axis.
    example = (torch.zeros(2, 28, 28, dtype=torch.uint8),)
    batch = torch.export.Dim("batch", min=1, max=65_536)
    with torch.no_grad():
        program = torch.export.export(model, example, dynamic_shapes=({0: batch},))
    if fmt == "pt2":
        buffer = io.BytesIO()
        torch.export.save(program, buffer, extra_files={"metadata.json": json.dumps(info, indent=2)})
        return write_bytes(path, buffer.getvalue())
    onnx_program = torch.onnx.export(
        program, example, input_names=[INPUT], output_names=[OUTPUT], dynamo=True, verbose=False
    )
    onnx_program.model.metadata_props.update(info)
    return write_atomically(path, lambda tmp: onnx_program.save(str(tmp)))


def read_pt2_metadata(path: str | Path) -> dict[str, str]:
    """The metadata.json that `export` stored in a .pt2 file (a zip archive)."""
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("extra/metadata.json"))
        return json.loads(archive.read(name))
