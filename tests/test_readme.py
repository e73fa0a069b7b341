"""The README's code blocks, run as written in a fresh folder: each shell line through bash and
the installed CLI, each Python block in a new interpreter. Only what a test cannot run here is
adapted: small synthetic data, one short epoch, the shared trained checkpoint where it says CKPT."""

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
# One epoch of two batches, validated (configs/fast.yaml validates every third epoch).
SHORT = (
    "--trainer.max_epochs 1 --trainer.limit_train_batches 2 --trainer.limit_val_batches 2 "
    "--trainer.check_val_every_n_epoch 1 --trainer.enable_progress_bar false"
)


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)


def shell_lines() -> list[str]:
    lines = [line for block in blocks("bash") for line in block.splitlines() if line.strip()]
    return [re.sub(r"\s+#.*$", "", line) for line in lines]  # the comments that explain a line


def left_out(line: str) -> bool:
    return any(line.startswith(start) or f" {start}" in line for start in NOT_RUN)


def test_every_line_left_out_is_still_in_the_readme():
    for start in NOT_RUN:
        assert any(line.startswith(start) or f" {start}" in line for line in shell_lines()), start


def test_the_readme_shows_each_command_a_user_needs():
    commands = {line.split()[1] for line in shell_lines() if line.startswith("mnist-lightning ")}
    assert {"fit", "test", "report", "predict", "export", "serve"} <= commands


@pytest.fixture
def folder(synthetic_mnist, tmp_path) -> Path:
    """A folder as a clone's root: the configs, a picture of a digit and a folder of them."""
    _, arrays = synthetic_mnist
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    (tmp_path / "my_digits").mkdir()
    for i in range(3):
        Image.fromarray(255 - arrays["t10k-images-idx3-ubyte"][i]).save(tmp_path / "my_digits" / f"{i}.png")
    shutil.copy(tmp_path / "my_digits" / "0.png", tmp_path / "my_digit.png")
    return tmp_path


def run_line(line: str, folder: Path, data_dir: Path, ckpt: Path) -> subprocess.CompletedProcess[str]:
    command = line.replace("--data.data_dir ../shared/mnist", "").replace("CKPT", str(ckpt))
    if command.startswith("mnist-lightning fit"):
        command += f" --data.data_dir {data_dir} {SHORT}"
    return shell(command, cwd=folder)


@pytest.fixture(scope="module")
def written() -> dict[str, Path]:
    """The files the shell lines wrote (by name), for the Python blocks that read them."""
    return {}


@pytest.mark.parametrize("line", [line for line in shell_lines() if not left_out(line)])
def test_a_shell_line_runs_as_written(line, folder, synthetic_mnist, best_checkpoint, written):
    result = run_line(line, folder, synthetic_mnist[0], best_checkpoint)
    assert result.returncode == 0, result.stderr[-2000:]
    if line.startswith("mnist-lightning fit"):
        assert re.search(
            r"^Best checkpoint \(accuracy/val [\d.]+\): runs/mnist/\S+\.ckpt$", result.stdout, re.MULTILINE
        )
    if "--output " in line:
        name = line.split("--output ")[1].split()[0]
        assert (folder / name).is_file()
        written[name] = folder / name


@pytest.mark.parametrize("code", blocks("python"), ids=lambda code: code.splitlines()[0])
def test_a_python_block_runs_as_written(code, folder, synthetic_mnist, best_checkpoint, written):
    data_dir = synthetic_mnist[0]
    for needed in re.findall(r'"(\w+\.(?:onnx|pt2))"', code):  # a file a line above it writes
        if needed in written:  # that line's test ran here already
            shutil.copy(written[needed], folder / needed)
            continue
        (line,) = [line for line in shell_lines() if f"--output {needed}" in line]
        assert run_line(line, folder, data_dir, best_checkpoint).returncode == 0
    code = code.replace('MNISTDataModule("data"', f"MNISTDataModule({str(data_dir)!r}")
    code = code.replace("max_epochs=10", "max_epochs=1, limit_train_batches=2, limit_val_batches=2")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip(), "the block prints nothing"
