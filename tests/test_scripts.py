"""scripts/time_to_accuracy.py end to end, on the synthetic files and a two-epoch config."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import CONFIG

SCRIPT = CONFIG.parents[1] / "scripts" / "time_to_accuracy.py"


def test_time_to_accuracy_reports_each_seed(synthetic_mnist, tmp_path):
    config = tmp_path / "short.yaml"
    short = CONFIG.read_text().replace("max_epochs: 10", "max_epochs: 2").replace("batch_size: 128", "batch_size: 32")
    assert "max_epochs: 2" in short and "batch_size: 32" in short
    config.write_text(short)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--data_dir", str(synthetic_mnist[0]), "--config", str(config), "--seeds", "3"],
        check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads(result.stdout.splitlines()[0])
    assert row["seed"] == 3 and 0 < row["seconds_to_checkpoint"] < 300
    assert row["seconds_per_epoch"] > 0  # two val_acc events, one spacing
    assert row["best_checkpoint"].startswith("epoch0") and row["best_checkpoint"].endswith(".ckpt")
    assert 0 <= row["test_acc"] <= 1 and row["test_loss"] > 0
    assert f"| 3 | {row['seconds_to_checkpoint']:.1f} |" in result.stdout  # the table for the README
    assert not (tmp_path / "runs").exists()  # runs go to a temporary directory
