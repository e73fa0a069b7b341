"""The scripts end to end on the synthetic files: time_to_accuracy (two epochs), the benchmark, and
same_training on checkpoints that are and are not the same."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.cli import CONFIG

SCRIPTS = CONFIG.parents[1] / "scripts"
pytestmark = pytest.mark.slow  # each script runs in a process of its own


def run_script(name: str, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def test_time_to_accuracy_reports_each_seed(synthetic_mnist, tmp_path):
    """Two epochs of the reference config: options the script does not know go to `fit`."""
    result = run_script(
        "time_to_accuracy.py",
        "--data_dir",
        str(synthetic_mnist[0]),
        "--config",
        str(CONFIG),
        "--seeds",
        "3",
        "--trainer.max_epochs",
        "2",
        "--data.batch_size",
        "32",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads(result.stdout.splitlines()[0])
    assert row["seed"] == 3 and 0 < row["seconds_to_checkpoint"] < 300
    assert row["seconds_per_epoch"] > 0  # two val_acc events, one spacing
    assert row["best_checkpoint"][:7] in ("epoch00", "epoch01") and row["best_checkpoint"].endswith(".ckpt")
    assert 0 <= row["test_acc"] <= 1 and row["test_loss"] > 0
    assert f"| 3 | {row['seconds_to_checkpoint']:.1f} |" in result.stdout  # the table for the README
    assert not (tmp_path / "runs").exists()  # runs go to a temporary directory


def test_benchmark_measures_every_system(synthetic_mnist, tmp_path):
    """Two epochs a system (the first is warm-up) on the synthetic files: every row of the table and the JSON."""
    result = run_script(
        "benchmark.py",
        "--data_dir",
        str(synthetic_mnist[0]),
        "--epochs",
        "2",
        "--json",
        "b.json",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]  # the fit's run directory is temporary
    results = json.loads((tmp_path / "b.json").read_text())
    epochs = results["epochs"]
    assert len(epochs) == 5 and all(s["epochs"] == 1 and s["median"] > 0 for s in epochs.values())
    assert set(results["lightning_overhead"]) == {"project fit", "bare Trainer"}
    assert all(v > 0 for v in [*results["data_paths"].values(), *results["test_throughput"].values()])
    assert results["machine"]["torch"] and results["machine"]["cores"]
    for name in epochs:  # the printed table has a row for each system, with its ratios
        assert f"| {name} | {epochs[name]['median']:.2f} " in result.stdout
    assert result.stdout.count("Lightning overhead") == 2
    assert "| torchvision |" in result.stdout and "| ours |" in result.stdout


@pytest.mark.parametrize("script", ["benchmark.py", "time_to_accuracy.py"])
def test_scripts_tell_missing_data_in_one_message(script, tmp_path):
    result = run_script(script, "--data_dir", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "MNIST is not in" in result.stderr and "nowhere" in result.stderr


def test_robustness_set_and_evaluation(best_checkpoint, tmp_path):
    """A tiny robustness set (one picture per digit and source), labelled, then evaluated through predict."""
    made = run_script("robustness_set.py", "--output", "set", "--per_digit", "1", cwd=tmp_path)
    if "no handwriting fonts" in made.stderr:
        pytest.skip("Debian's handwriting fonts are not installed (see scripts/robustness_set.py)")
    assert made.returncode == 0, made.stderr[-3000:]
    rows = (tmp_path / "set" / "labels.csv").read_text().splitlines()
    sources = {row.split(",")[2] for row in rows[1:]}
    assert rows[0] == "path,label,source,style,condition" and {"fonts", "canvas"} <= sources
    assert len(rows) - 1 == 10 * len(sources) and all((tmp_path / "set" / r.split(",")[0]).is_file() for r in rows[1:])
    result = run_script(
        "robustness.py", "--set", "set", "--ckpt", f"tiny={best_checkpoint}", "--figure", "worst.png", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for source in [*sources, "all"]:
        assert f"| {source} | " in result.stdout
    assert "most common confusions" in result.stdout and (tmp_path / "worst.png").stat().st_size > 1000


def test_same_training_tells_a_copy_from_a_changed_checkpoint(tiny_checkpoint, tmp_path):
    import torch

    copy, changed = tmp_path / "copy.ckpt", tmp_path / "changed.ckpt"
    copy.write_bytes(tiny_checkpoint.read_bytes())
    checkpoint = torch.load(tiny_checkpoint, weights_only=True)
    checkpoint["state_dict"]["net.0.bias"][3] += 1e-7  # one number, by less than float32 can show at 4 digits
    checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] = 0.5
    torch.save(checkpoint, changed)
    same = run_script("same_training.py", str(tiny_checkpoint), str(copy), cwd=tmp_path)
    assert same.returncode == 0 and same.stdout.startswith("the same training"), same.stdout + same.stderr
    other = run_script("same_training.py", str(tiny_checkpoint), str(changed), cwd=tmp_path)
    assert other.returncode == 1 and "state_dict/net.0.bias" in other.stdout, other.stdout + other.stderr
    assert "optimizer_states[0]/param_groups[0]/lr" in other.stdout
