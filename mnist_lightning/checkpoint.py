"""Reading checkpoints safely: no pickled code runs, nothing large is unpacked, nothing broken is used.

It needs torch alone, not Lightning: the command refuses a bad checkpoint before Lightning loads (console.py)."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from packaging.version import InvalidVersion, Version

from mnist_lightning.errors import UserError
from mnist_lightning.model import MNISTNet

# A checkpoint of this network with Adam's two moments is about 3 MB; anything that
# unpacks to more than this is not one of ours, and is refused before it is unpacked.
MAX_UNPACKED_BYTES = 64 * 2**20


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at `path`, checked to be a Lightning 2 checkpoint of this network.

    Read with torch.load(weights_only=True) after its unpacked size is checked: a file
    that would run code or unpack to gigabytes is refused before either can happen.
    Every way a file can fail gets one message that names it.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.ckpt")) or sorted(path.glob("checkpoints/*.ckpt"))
        hint = f", e.g. {found[-1]}" if found else ""
        raise UserError(f"--ckpt_path {path} is a folder; give a checkpoint file in it{hint}")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist (look in the run's checkpoints/ folder)")
    size = _unpacked_size(path)
    if size > MAX_UNPACKED_BYTES:
        raise UserError(
            f"refused {path}: it unpacks to {size / 2**20:,.0f} MB, far more than a checkpoint of "
            f"this network (~3 MB); it is not one of this project's checkpoints"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError as err:
        raise UserError(f"not enough memory to read {path}") from err
    except Exception as err:  # a damaged file can break the unpickler in any way
        if isinstance(err, pickle.UnpicklingError) and "unsupported global" in str(err).lower():
            raise UserError(
                f"refused to load {path}: it holds objects other than tensors and plain values, "
                "and unpickling them could run code. Only load it weights-only, or re-save it from trusted code"
            ) from err
        reason = f"{type(err).__name__}: {str(err).split('. ')[0]}"
        raise UserError(f"{path} is not a readable checkpoint: truncated, or not saved by torch ({reason})") from err
    check_checkpoint(path, checkpoint)
    return checkpoint


def _unpacked_size(path: Path) -> int:
    """The bytes torch.load would unpack: a zip's entries as its directory lists them, else the file's size."""
    try:
        with zipfile.ZipFile(path) as archive:
            return sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):  # torch's legacy format, or not a zip: torch.load will tell
        return path.stat().st_size


def check_checkpoint(path: Path, checkpoint: Any) -> None:
    """UserError unless `checkpoint` is a Lightning 2 checkpoint whose weights fit MNISTNet and are finite floats."""
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserError(f"{path} is a torch file but not a Lightning checkpoint (no state_dict)")
    version = checkpoint.get("pytorch-lightning_version")
    try:
        major = Version(str(version)).major
    except InvalidVersion:
        major = None
    if major is None or major < 2:
        written = f"Lightning {version}" if version else "something other than Lightning's Trainer"
        raise UserError(
            f"{path} was written by {written}; this project reads checkpoints of Lightning 2 or later, "
            "written by `mnist-lightning fit`"
        )
    if not isinstance(checkpoint.get("hyper_parameters", {}), dict):
        raise UserError(f"{path}: its hyper_parameters are not a mapping of settings")
    ours = {f"net.{name}": tuple(t.shape) for name, t in MNISTNet().state_dict().items()}
    weights = checkpoint["state_dict"]
    theirs = {name: tuple(t.shape) if isinstance(t, torch.Tensor) else None for name, t in weights.items()}
    if ours != theirs:
        differ = sorted(set(ours) ^ set(theirs)) or [n for n in ours if ours[n] != theirs[n]]
        raise UserError(
            f"{path} holds a different network than this project's MNIST CNN "
            f"(tensors that differ: {', '.join(differ[:3])}{' ...' if len(differ) > 3 else ''})"
        )
    bad = [name for name, t in weights.items() if not t.is_floating_point() or not torch.isfinite(t).all()]
    if bad:
        raise UserError(
            f"{path} has weights that are not finite floating-point numbers ({', '.join(bad[:3])}): "
            "a broken or tampered checkpoint, which would predict nonsense"
        )
