"""Fault table: evaluations on two processes give one process's results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.cli import QUIET, in_process
from helpers.faults import Row, Scratch, csv_rows, predict

GROUP = "ddp"
pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parents[1]


def _ddp(*args: str) -> list[str]:
    return [*args, "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]


def test_predict_on_two_processes_a_folder(scratch: Scratch, record):
    """`predict` on 2 processes, a folder of 7 pictures"""
    pictures, one = scratch.pictures(7), scratch.folder("p1")
    in_process("predict", "--ckpt_path", str(scratch.best), "--data.predict_path", str(pictures), *QUIET, cwd=one)
    two, rows_two = predict(scratch, str(pictures), *_ddp(), cwd=scratch.folder("p2"))
    assert two.returncode == 0, two.stderr[-2000:]
    rows_one = csv_rows(one / "predictions.csv")
    assert rows_two == rows_one and len(rows_one) == 7
    record(
        Row(
            "mnist-lightning predict ... --data.predict_path pictures/ --trainer.devices 2 --trainer.strategy ddp",
            0,
            "(predicts)",
            "predictions.csv equal to one process's, row for row",
        )
    )


def test_predict_on_two_processes_the_test_set(scratch: Scratch, record, test_set_predictions):
    """`predict` on 2 processes, the test set"""
    cwd = scratch.folder("t2")
    two = scratch.cli(*_ddp("predict", "--ckpt_path", str(scratch.best), *QUIET), cwd=cwd)
    assert two.returncode == 0, two.stderr[-2000:]
    assert (cwd / "predictions.csv").read_text() == test_set_predictions[1].read_text()  # one process's
    record(
        Row(
            "mnist-lightning predict --ckpt_path CKPT --trainer.devices 2 --trainer.strategy ddp",
            0,
            "(predicts)",
            "predictions.csv equal to one process's",
        )
    )


def test_test_and_report_on_two_processes(scratch: Scratch, record, best_report):
    """`test` and `report` on 2 processes"""
    out = scratch.folder("report2")
    args = ["report", "--ckpt_path", str(scratch.best), "--output_dir", str(out), *QUIET]
    result = scratch.cli(*_ddp(*args), cwd=out)
    assert result.returncode == 0, result.stderr[-2000:]
    one, two = (json.loads((folder / "metrics.json").read_text()) for folder in (best_report[0], out))
    # The loss is a float32 sum, added in another order on two processes.
    loss_one, loss_two = one.pop("test_loss"), two.pop("test_loss")
    assert abs(loss_one - loss_two) <= 1e-6 * abs(loss_one), (loss_one, loss_two)
    assert one == two
    record(
        Row(
            "mnist-lightning report --ckpt_path CKPT --trainer.devices 2 --trainer.strategy ddp",
            0,
            "(reports)",
            "metrics.json equal to one process's (loss within 1e-6: float sums in another order)",
        )
    )
