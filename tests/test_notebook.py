"""The walkthrough notebook runs, cell by cell, on small synthetic data: it cannot rot."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"


@pytest.mark.slow
def test_walkthrough_notebook_runs(synthetic_mnist, tmp_path, monkeypatch):
    data_dir, _ = synthetic_mnist
    monkeypatch.setenv("MNIST_DATA_DIR", str(data_dir))  # the kernel inherits this environment
    monkeypatch.setenv("MNIST_EPOCHS", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises on an error

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    figures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(figures) == 4  # sample grid, learning curves, confusion matrix, your digit
    assert "test accuracy" in text and "prediction:" in text
    assert "warn" not in text.lower() and "deprecated" not in text
    assert (tmp_path / "my_digit.png").is_file() and list((tmp_path / "runs" / "notebook").iterdir())
