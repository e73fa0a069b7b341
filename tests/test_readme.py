"""The README's code blocks, run as written in a fresh folder: the shell lines through bash and
the installed CLI, the Python blocks in a new interpreter. Only what a test cannot run here is
adapted: small synthetic data, one short epoch, a checkpoint where the README says CKPT."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.cli import shell
from PIL import Image

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# Lines left out, each with the reason; every one must still be in the README.
NOT_RUN = {
    "python3 -m venv": "installs the package: the tests run in that install",
    "pip install": "installs extras: the test environment has them",
    "srun ": "needs SLURM (tests/faults/test_signals.py runs the requeue)",
    "mnist-lightning fit -c configs/mnist.yaml --trainer.accelerator gpu": "needs GPUs",
    "mnist-lightning serve": "a server that runs until stopped (tests/test_serve.py)",
    "curl ": "needs that server",
    "python scripts/": "measurements of minutes to hours (tests/test_scripts.py runs each on small data)",
}
SHORT = ("--trainer.max_epochs 1 --trainer.limit_train_batches 2 --trainer.limit_val_batches 2 "
         "--trainer.enable_progress_bar false")  # fmt: skip


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)


def shell_lines() -> list[str]:
    lines = [line for block in blocks("bash") for line in block.splitlines() if line.strip()]
    return [re.sub(r"\s+#.*$", "", line) for line in lines]  # the comments that explain a line


def test_every_line_left_out_is_still_in_the_readme():
    lines = shell_lines()
    for start in NOT_RUN:
        assert any(line.startswith(start) or f" {start}" in line for line in lines), start


@pytest.fixture(scope="module")
def folder(synthetic_mnist, tmp_path_factory) -> Path:
    """A folder as a clone's root: the configs, a picture of a digit and a folder of them."""
    _, arrays = synthetic_mnist
    cwd = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "configs", cwd / "configs")
    (cwd / "my_digits").mkdir()
    for i in range(3):
        Image.fromarray(255 - arrays["t10k-images-idx3-ubyte"][i]).save(cwd / "my_digits" / f"{i}.png")
    shutil.copy(cwd / "my_digits" / "0.png", cwd / "my_digit.png")
    return cwd


def test_the_readme_runs_as_written(folder, synthetic_mnist):
    data_dir, _ = synthetic_mnist
    ckpt = None
    ran = []
    for line in shell_lines():
        if any(line.startswith(start) or f" {start}" in line for start in NOT_RUN):
            continue
        command = line.replace("--data.data_dir ../shared/mnist", "")
        if command.startswith("mnist-lightning fit"):
            command += f" --data.data_dir {data_dir} {SHORT}"
        if "CKPT" in command:
            assert ckpt, f"{line}: no fit above it named a checkpoint"
            command = command.replace("CKPT", ckpt)
        result = shell(command, cwd=folder)
        assert result.returncode == 0, f"{line}\n{result.stderr[-2000:]}"
        best = re.search(r"^Best checkpoint \(val_acc [\d.]+\): (\S+)$", result.stdout, re.MULTILINE)
        ckpt = best.group(1) if best else ckpt  # the checkpoint the last fit named, as a user takes it
        ran.append(line)
    assert sum(line.startswith("mnist-lightning fit") for line in ran) >= 4
    assert {"test", "report", "predict", "export"} <= {line.split()[1] for line in ran}
    assert (folder / "predictions.csv").is_file() and (folder / "mnist.onnx").is_file()

    for code in blocks("python"):
        code = code.replace('MNISTDataModule("data"', f"MNISTDataModule({str(data_dir)!r}")
        code = code.replace("max_epochs=10", "max_epochs=1, limit_train_batches=2, limit_val_batches=2")
        result = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=300,
                                check=False)  # fmt: skip
        assert result.returncode == 0, f"{code}\n{result.stderr[-2000:]}"
        assert result.stdout.strip(), f"this block prints nothing:\n{code}"
