"""Whether a change of the preprocessing changes how MNIST's own test digits, saved as PNG, are read.

    python scripts/same_digits.py --data_dir ../shared/mnist --before REV [--ckpt CKPT]

Each of the 10,000 test digits is saved as a PNG in memory and read by the preprocessing at
REV (git show REV:mnist_lightning/preprocess.py) and by the installed one; prints how many
28x28 digits differ, and with --ckpt, how many predictions differ, one line for each.
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import torch
from PIL import Image
from preprocess_speed import module_at
from torchvision.datasets import MNIST

from mnist_lightning import pictures
from mnist_lightning.module import MNISTClassifier


def as_png(digit: np.ndarray) -> io.BytesIO:
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, "PNG")
    buffer.seek(0)
    return buffer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--before", required=True, help="a git revision")
    parser.add_argument("--ckpt", help="a checkpoint, to compare predictions too")
    args = parser.parse_args()
    before = module_at(args.before).mnist_style
    test = MNIST(args.data_dir, train=False)
    model = MNISTClassifier.load_from_checkpoint(args.ckpt, map_location="cpu").eval() if args.ckpt else None
    differ = 0
    for i in range(len(test)):
        digit = test.data[i].numpy()
        old = before(Image.open(as_png(digit)))
        new = pictures.mnist_style(Image.open(as_png(digit)))
        if np.array_equal(old, new):
            continue
        differ += 1
        if model is not None:
            with torch.no_grad():
                old_p, new_p = (
                    model(torch.from_numpy(x).float().div(255)[None, None]).argmax().item() for x in (old, new)
                )
            print(f"test digit {i} (label {int(test.targets[i])}): read as {old_p} before, {new_p} now")
    print(f"{differ} of {len(test)} test digits give a different 28x28 digit")


if __name__ == "__main__":
    main()
