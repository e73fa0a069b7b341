"""Time to turn one picture into the 28x28 digit, before and after a change of the preprocessing.

    python scripts/preprocess_speed.py --before REV [--rounds 40]

The preprocessing at REV (git show REV:mnist_lightning/preprocess.py) and the installed one read
the same pictures in turns: a 28x28 PNG (MNIST's size) and a 12 MP phone JPEG of a digit on
squared paper with a shadow (scripts/paper_photos.py), each opened and decoded as `predict` does.
Prints p50 and p99 in milliseconds, and the ratio after/before.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from paper_photos import photographed
from PIL import Image
from robustness_set import DIGITS

from mnist_lightning import pictures


def module_at(rev: str):
    source = subprocess.run(
        ["git", "show", f"{rev}:mnist_lightning/preprocess.py"], capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "preprocess_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("preprocess_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pictures_to_time() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    small = Image.new("L", (28, 28), 0)
    small.paste(255, (10, 5, 16, 23))
    photo = photographed(DIGITS[4]["open top"], "squared", "shadow", rng).resize((4032, 3024))
    files = {}
    for name, image, fmt in (("28x28 PNG", small, "PNG"), ("12 MP JPEG", photo, "JPEG")):
        buffer = io.BytesIO()
        image.save(buffer, fmt, quality=90)
        files[name] = buffer.getvalue()
    return files


def read(source: bytes | Path, mnist_style) -> np.ndarray:
    """A picture (its bytes or its path) opened as pictures.read_digit opens it, made a digit by mnist_style."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        if image.format == "JPEG" and image.width * image.height > pictures.DRAFT_PIXELS:
            image.draft(image.mode, (1024, 1024))
        return mnist_style(image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="a git revision")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    systems = {"before": module_at(args.before).mnist_style, "after": pictures.mnist_style}
    print("| picture | before p50 / p99 (ms) | after p50 / p99 (ms) | after/before (p50) |\n|---|---|---|---|")
    for name, data in pictures_to_time().items():
        times: dict[str, list[float]] = {k: [] for k in systems}
        for _ in range(args.rounds):
            for system, mnist_style in systems.items():  # in turns, so that load on the machine hits both
                start = time.perf_counter()
                read(data, mnist_style)
                times[system].append(1000 * (time.perf_counter() - start))
        p = {k: np.percentile(v, [50, 99]) for k, v in times.items()}
        print(
            f"| {name} | {p['before'][0]:.1f} / {p['before'][1]:.1f} | {p['after'][0]:.1f} / {p['after'][1]:.1f} "
            f"| {p['after'][0] / p['before'][0]:.2f} |"
        )


if __name__ == "__main__":
    main()
