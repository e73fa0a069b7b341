"""The fault table (docs/faults.md): each test is a row, run through the installed CLI.

A test passes the Row it checked to `record`; with MNIST_LIGHTNING_FAULT_TABLE=DIR set,
each row is also written there as JSON, for scripts/fault_table.py to print the table.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from helpers.faults import Row, Scratch
from helpers.mnist import synthetic_digits, write_idx

from mnist_lightning.failures import STOPPING_SIGNALS


@pytest.fixture(scope="module")
def scratch(synthetic_mnist, best_checkpoint, tmp_path_factory) -> Scratch:
    return Scratch(tmp_path_factory.mktemp("faults"), synthetic_mnist[0], best_checkpoint)


@pytest.fixture(scope="session")
def million_test_images(synthetic_mnist, tmp_path_factory) -> Path:
    """The synthetic MNIST with a test set of a million images (784 MB): for the memory and signal rows."""
    data = tmp_path_factory.mktemp("million")
    shutil.copytree(synthetic_mnist[0], data, dirs_exist_ok=True)
    raw = data / "MNIST" / "raw"
    images, labels = synthetic_digits(1000, seed=1)
    write_idx(raw / "t10k-images-idx3-ubyte", images, repeat=1000)
    write_idx(raw / "t10k-labels-idx1-ubyte", labels, repeat=1000)
    return data


@pytest.fixture
def record(request: pytest.FixtureRequest):
    """Checks what every row shares, and keeps the row for the table."""

    def record(row: Row) -> None:
        assert "Traceback" not in row.says
        if row.exit != 0:  # refused or stopped: one line from the CLI saying why
            assert row.says.startswith(("mnist-lightning: error:", "mnist-lightning: stopped by")), row.says
            assert row.exit in (1, 2, *(128 + signum for signum in STOPPING_SIGNALS))
        table = os.environ.get("MNIST_LIGHTNING_FAULT_TABLE")
        if table:
            node = request.node
            doc = " ".join((node.function.__doc__ or "").split())  # the case; a parametrized one has its id
            param = node.callspec.id if hasattr(node, "callspec") else ""
            case = f"{doc} ({param})" if doc and param else doc or param or node.name
            group = getattr(request.module, "GROUP", request.module.__name__)
            scratch = request.getfixturevalue("scratch")
            entry = {
                "file": node.path.name,
                "order": node.session.items.index(node),
                "input": f"{group}: {case}",
                **{k: scratch.relative(v) if isinstance(v, str) else v for k, v in dataclasses.asdict(row).items()},
            }
            name = hashlib.sha1(node.nodeid.encode()).hexdigest()[:16]
            Path(table, f"{name}.json").write_text(json.dumps(entry))

    return record
