"""Exports a checkpoint both ways and compares the files with PyTorch on the MNIST test set.

    python scripts/export_parity.py --ckpt_path CKPT --data_dir ../shared/mnist

Prints, for ONNX (run by ONNX Runtime) and .pt2 (torch.export): file size, the largest
difference from the package's own probabilities over the 10,000 test images, how many
predicted digits agree, and images/s at batch 256 beside PyTorch's, measured in turns.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from mnist_lightning.checkpoint import load_checkpoint
from mnist_lightning.mnist_files import load_mnist
from mnist_lightning.module import MNISTClassifier


def images_per_second(run, pixels: np.ndarray, batch: int = 256, rounds: int = 3) -> float:
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(0, len(pixels), batch):
            run(pixels[i : i + batch])
        best = max(best, len(pixels) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--data_dir", default="data")
    args = parser.parse_args()
    pixels = load_mnist(args.data_dir, train=False, download=False).data.numpy()  # uint8 (10000, 28, 28)

    model = MNISTClassifier()
    model.load_state_dict(load_checkpoint(args.ckpt_path)["state_dict"])
    model.eval()

    def pytorch(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x).unsqueeze(1).float() / 255).softmax(1).numpy()

    want = pytorch(pixels)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runners = {}
        for fmt in ("onnx", "pt2"):
            out = Path(tmp, f"mnist.{fmt}")
            command = [
                sys.executable,
                "-m",
                "mnist_lightning",
                "export",
                "--ckpt_path",
                args.ckpt_path,
                "--output",
                str(out),
                "--format",
                fmt,
            ]
            subprocess.run(command, check=True, capture_output=True)
            if fmt == "onnx":
                session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
                runners[fmt] = lambda x, s=session: s.run(None, {"pixels": x})[0]
            else:
                program = torch.export.load(out).module()
                runners[fmt] = lambda x, p=program: p(torch.from_numpy(x)).numpy()
            for batch in (1, 7, 256):  # the batch axis is dynamic
                assert runners[fmt](pixels[:batch]).shape == (batch, 10)
            got = np.concatenate([runners[fmt](pixels[i : i + 256]) for i in range(0, len(pixels), 256)])
            agree = int((got.argmax(1) == want.argmax(1)).sum())
            rows.append((fmt, out.stat().st_size, float(np.abs(got - want).max()), agree))
        speed = {"pytorch": 0.0, **dict.fromkeys(runners, 0.0)}
        for _ in range(3):  # in turns, so that each meets the same machine
            speed["pytorch"] = max(speed["pytorch"], images_per_second(pytorch, pixels, rounds=1))
            for fmt, run in runners.items():
                speed[fmt] = max(speed[fmt], images_per_second(run, pixels, rounds=1))

    print("| format | file size | max abs difference from PyTorch | predicted digits agreeing |")
    print("|---|---|---|---|")
    for fmt, size, diff, agree in rows:
        print(f"| {fmt} | {size / 1e6:.2f} MB | {diff:.2e} | {agree:,} / {len(pixels):,} |")
    print("\n| engine (batch 256, 10,000 test images) | images/s | vs PyTorch |")
    print("|---|---|---|")
    for name, value in speed.items():
        print(f"| {name} | {value:,.0f} | {value / speed['pytorch']:.2f}x |")


if __name__ == "__main__":
    main()
