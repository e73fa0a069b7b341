"""The walkthrough notebook runs, cell by cell, on small synthetic data, and tells its story: it cannot rot."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"


@pytest.mark.slow
def test_walkthrough_notebook_runs_and_shows_each_step(synthetic_mnist, tmp_path, monkeypatch):
    data_dir, _ = synthetic_mnist
    folder = tmp_path / "notebooks"
    folder.mkdir()
    shutil.copy(NOTEBOOK, folder)
    monkeypatch.setenv("MNIST_DATA_DIR", str(data_dir))  # the kernel inherits this environment
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MNIST_EPOCHS", "2")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, resources={"metadata": {"path": str(folder)}}).execute()  # raises on an error

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    figures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(figures) == 5  # a batch, the learning curves, the confusion matrix, the mistakes, your digit
    assert "images: (128, 1, 28, 28) torch.uint8" in text and "Total params: 225,034" in text
    for shown in ("def training_step", "def configure_optimizers", "nn.Conv2d(1, 32, kernel_size=3)"):
        assert shown in text, shown  # the code it explains is on screen
    assert "epoch  2: training accuracy" in text and "test accuracy" in text and "prediction:" in text
    results = [output for output in outputs if output.output_type == "execute_result"]
    assert results == []  # no stray values such as seed_everything's 42
    assert "warn" not in text.lower() and "Seed set" not in text
    assert sorted(p.name for p in folder.iterdir()) == ["walkthrough.ipynb"]  # nothing written beside it
    (run,) = (tmp_path / "runs" / "mnist").iterdir()
    assert f"Run: ../runs/mnist/{run.name}" in text and list((run / "checkpoints").glob("epoch*.ckpt"))
