"""Fault table: MNIST files that are missing or damaged."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers.faults import Row, Scratch, check_refused
from helpers.mnist import write_idx

GROUP = "data"
pytestmark = pytest.mark.slow


def test_no_mnist_and_downloads_off(scratch: Scratch, record):
    """no MNIST and downloads off"""
    cwd = scratch.folder("cwd")
    row = check_refused(
        scratch, [*scratch.fit_args(data=Path("data")), "--data.download", "false"], 1, "Put the four files", cwd=cwd
    )
    assert list(cwd.iterdir()) == []  # no empty data/MNIST/raw, no empty runs/mnist left behind
    record(Row(row.command, row.exit, row.says, "nothing: no empty data/ or runs/ folder either"))


def test_data_dir_is_a_file(scratch: Scratch, record):
    """--data.data_dir is a file"""
    (scratch.root / "afile").write_text("x")
    record(
        check_refused(
            scratch, scratch.fit_args("--data.download", "true", data=scratch.root / "afile"), 1, "--data.data_dir"
        )
    )


def _cut(f: Path) -> None:
    f.write_bytes(f.read_bytes()[:5000])


def _magic(f: Path) -> None:
    f.write_bytes(b"\0\0\x08\x01" + f.read_bytes()[4:])


def _small(f: Path) -> None:
    write_idx(f, np.zeros((5, 20, 20), np.uint8))


def _few_labels(f: Path) -> None:
    write_idx(f.with_name("train-labels-idx1-ubyte"), np.zeros(7, np.uint8))


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        pytest.param(_cut, "truncated or damaged", id="training images cut short"),
        pytest.param(_magic, "not an MNIST images", id="training images with a wrong magic number"),
        pytest.param(_small, "20x20 images", id="20x20 images"),
        pytest.param(_few_labels, "labels", id="fewer labels than images"),
    ],
)
def test_damaged_files(scratch: Scratch, record, damage: Callable[[Path], None], fragment: str):
    data = scratch.root / f"damaged-{damage.__name__}"
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(scratch.data, data)
    damaged = data / "MNIST" / "raw" / "train-images-idx3-ubyte"
    damage(damaged)
    before = {p.name: p.read_bytes() for p in damaged.parent.iterdir()}
    record(
        check_refused(
            scratch,
            scratch.fit_args("--data.download", "false", data=data),
            1,
            fragment,
            survived="the files untouched",
        )
    )
    assert {p.name: p.read_bytes() for p in damaged.parent.iterdir()} == before
