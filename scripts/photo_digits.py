"""MNIST test digits rendered the way people photograph or scan them, to check `predict`.

    python scripts/photo_digits.py render --data_dir ../shared/mnist --out photos --count 1000
    mnist-lightning predict --ckpt_path CKPT --data.predict_path photos --prediction_writer.output photos.csv
    python scripts/photo_digits.py score --labels photos/labels.csv --predictions photos.csv

Each picture: dark ink on light, slightly tinted paper with a lighting gradient;
the digit upscaled to 100-300 px and placed off-centre on a larger sheet; Gaussian
sensor noise; saved as RGB JPEG (quality 70-90) or PNG, alternately.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets import MNIST


def photograph(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    size = int(rng.integers(100, 301))
    ink = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255
    sheet_h, sheet_w = (np.array([size, size]) * rng.uniform(1.3, 2.2, 2)).astype(int)
    top, left = rng.integers(0, sheet_h - size + 1), rng.integers(0, sheet_w - size + 1)
    darkness = np.zeros((sheet_h, sheet_w), np.float32)
    darkness[top : top + size, left : left + size] = ink
    paper = rng.uniform(190, 245) + np.linspace(-15, 15, sheet_w)[None, :] * rng.uniform(-1, 1)  # lighting
    gray = paper - darkness * (paper - rng.uniform(20, 70)) + rng.normal(0, rng.uniform(4, 14), darkness.shape)
    tint = rng.uniform(0.93, 1.0, 3)  # slightly yellow or blue paper
    rgb = np.clip(gray[..., None] * tint, 0, 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def render(data_dir: str, out: Path, count: int, seed: int) -> None:
    test = MNIST(data_dir, train=False)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "labels.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for i in rng.choice(len(test), count, replace=False):
            name = f"digit{i:05d}.{'jpg' if i % 2 else 'png'}"
            image = photograph(test.data[i].numpy(), rng)
            image.save(out / name, **({"quality": int(rng.integers(70, 91))} if i % 2 else {}))
            writer.writerow([name, int(test.targets[i])])
    print(f"wrote {count} pictures and labels.csv to {out}")


def score(labels: Path, predictions: Path) -> None:
    truth = {row["path"]: row["label"] for row in csv.DictReader(labels.open())}
    rows = list(csv.DictReader(predictions.open()))
    correct = sum(truth[Path(r["path"]).name] == r["prediction"] for r in rows)
    print(f"{correct}/{len(rows)} correct: {correct / len(rows):.2%} (of {len(truth)} pictures)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    r = commands.add_parser("render")
    r.add_argument("--data_dir", default="data")
    r.add_argument("--out", type=Path, default=Path("photos"))
    r.add_argument("--count", type=int, default=1000)
    r.add_argument("--seed", type=int, default=0)
    s = commands.add_parser("score")
    s.add_argument("--labels", type=Path, required=True)
    s.add_argument("--predictions", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "render":
        render(args.data_dir, args.out, args.count, args.seed)
    else:
        score(args.labels, args.predictions)


if __name__ == "__main__":
    main()
