"""The original notebook's model and training under Keras, one epoch per request: a peer for benchmark.py.

    /path/to/tf-env/bin/python scripts/keras_notebook.py --data_dir ../shared/mnist [--policy mixed_bfloat16]

Runs in an environment with TensorFlow (see docs/speed.md, "Keras as a peer"); it needs
nothing from this project. It reads MNIST's raw files, holds out the last 10% of the
training set as the notebook's `validation_split=0.1` does, builds the notebook's
network (225,034 parameters) and compiles it with Adam and categorical cross-entropy.
Then, for every line `epoch` on standard input, it trains one epoch of batch 128 with
validation and answers with one JSON line: {"seconds", "val_loss", "val_acc"}. Its first
line, {"ready": ...}, comes once the data is loaded and the model built.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf


def idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format) as a numpy array, gzipped or not."""
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def notebook_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax", dtype="float32"),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--policy", default="float32", help="Keras dtype policy, e.g. mixed_bfloat16")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(args.policy)
    raw = Path(args.data_dir) / "MNIST" / "raw"
    x = idx(raw / "train-images-idx3-ubyte").astype("float32")[..., None] / 255
    y = keras.utils.to_categorical(idx(raw / "train-labels-idx1-ubyte"), 10)
    n_train = len(x) - len(x) // 10  # validation_split=0.1 takes the last 10%
    model = notebook_model()
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    print(
        json.dumps(
            {
                "ready": True,
                "parameters": model.count_params(),
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "policy": args.policy,
            }
        ),
        flush=True,
    )
    for epoch, line in enumerate(sys.stdin):
        if line.strip() != "epoch":
            break
        start = time.perf_counter()
        history = model.fit(
            x[:n_train],
            y[:n_train],
            batch_size=128,
            epochs=epoch + 1,
            initial_epoch=epoch,
            validation_data=(x[n_train:], y[n_train:]),
            verbose=0,
        )
        seconds = time.perf_counter() - start
        print(
            json.dumps(
                {
                    "seconds": seconds,
                    "val_loss": history.history["val_loss"][-1],
                    "val_acc": history.history["val_accuracy"][-1],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
