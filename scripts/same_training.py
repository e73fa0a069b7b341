"""Whether two checkpoints hold the same training, bit for bit: the weights, the optimizer's and
the schedule's state, the settings and the loop's position.

    python scripts/same_training.py A.ckpt B.ckpt

The files themselves differ where they name their run folder (the checkpoint callbacks' paths).
Exit status 0 when the training is the same, 1 when it is not.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

COMPARED = (
    "state_dict",
    "optimizer_states",
    "lr_schedulers",
    "hyper_parameters",
    "datamodule_hyper_parameters",
    "epoch",
    "global_step",
)


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where a and b differ: tensors compared bit for bit (NaNs at the same places are equal)."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        same = (
            a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a.contiguous().view(-1).view(torch.uint8), b.contiguous().view(-1).view(torch.uint8))
        )
        return [] if same else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b), key=str)
        return [
            d
            for k in keys
            for d in (differences(a.get(k), b.get(k), f"{where}/{k}") if k in a and k in b else [f"{where}/{k}"])
        ]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [where]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs=2)
    first, second = (
        torch.load(path, map_location="cpu", weights_only=True) for path in parser.parse_args().checkpoints
    )
    found = [d for key in COMPARED for d in differences(first.get(key), second.get(key), key)]
    tensors = sum(t.numel() for t in first["state_dict"].values())
    print(
        f"{'different: ' + ', '.join(found[:10]) if found else 'the same training'} "
        f"(weights: {tensors:,} numbers; epoch {first.get('epoch')}, step {first.get('global_step')})"
    )
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
