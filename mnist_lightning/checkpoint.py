"""Reading checkpoints without running any code that may be pickled inside them."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mnist_lightning.errors import UserError
from mnist_lightning.files import write_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it, then renames it into place.

    Lightning's writer stages the file in the system temp directory (through fsspec)
    and moves it from there; when /tmp is another file system (tmpfs, often) that
    move is a copy, and a kill during it leaves last.ckpt cut short.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        write_atomically(path, lambda tmp: torch.save(checkpoint, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """torch.load with weights_only=True: tensors and plain containers only.

    A checkpoint that needs arbitrary classes to unpickle is refused before any of
    its code can run, and every way a file can fail to be a checkpoint gets one
    message that names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist (look in the run's checkpoints/ folder)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file can break the unpickler in any way
        if isinstance(err, pickle.UnpicklingError) and "Unsupported global" in str(err):
            raise UserError(
                f"refused to load {path}: it holds objects other than tensors and plain values, "
                "and unpickling them could run code. Only load it weights-only, or re-save it from trusted code"
            ) from err
        reason = f"{type(err).__name__}: {str(err).split('. ')[0]}"
        raise UserError(f"{path} is not a readable checkpoint: truncated, or not saved by torch ({reason})") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"{path} is a torch file but not a Lightning checkpoint (no state_dict)")
    return checkpoint
