"""Exact resume after SIGKILL, same-seed reproducibility, DDP, and clear errors for bad input."""

from __future__ import annotations

import errno
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import CONFIG, cli, cli_command, only_run, write_idx, write_mnist

from mnist_lightning.checkpoint import load_checkpoint
from mnist_lightning.data import MNISTDataModule
from mnist_lightning.errors import UserError
from mnist_lightning.report import run_scalars

TESTS = Path(__file__).parent
QUIET = ("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false")


def fit_args(data_dir: Path, *extra: str) -> list[str]:
    return ["fit", "-c", str(CONFIG), "--data.data_dir", str(data_dir), "--data.batch_size", "16",
            "--trainer.deterministic", "true", "--seed_everything", "7", *QUIET, *extra]  # fmt: skip


def final_state(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, list[float]]]:
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    return checkpoint["state_dict"], run_scalars(run_dir)


def assert_same_run(a: Path, b: Path) -> None:
    (weights_a, scalars_a), (weights_b, scalars_b) = final_state(a), final_state(b)
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name  # bit for bit
    for tag in ("val_loss", "val_acc"):
        assert scalars_a[tag][-1] == scalars_b[tag][-1], tag


@pytest.fixture(scope="module")
def bigger_mnist(tmp_path_factory) -> Path:
    """Enough synthetic data for a kill to land inside an epoch."""
    data_dir = tmp_path_factory.mktemp("bigger")
    write_mnist(data_dir / "MNIST" / "raw", n_train=3000)
    return data_dir


@pytest.fixture(scope="module")
def uninterrupted(bigger_mnist, tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("uninterrupted")
    result = cli(*fit_args(bigger_mnist, "--trainer.max_epochs", "3"), cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run(cwd)


def test_same_seed_gives_identical_weights_and_metrics(bigger_mnist, uninterrupted, tmp_path):
    result = cli(*fit_args(bigger_mnist, "--trainer.max_epochs", "3"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(uninterrupted, only_run(tmp_path))


def test_sigkill_mid_epoch_then_resume_is_bit_exact(bigger_mnist, uninterrupted, tmp_path):
    process = subprocess.Popen(cli_command(*fit_args(bigger_mnist, "--trainer.max_epochs", "3")), cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob("runs/mnist/*/checkpoints/last.ckpt")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.7)  # into the second epoch
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    last = only_run(tmp_path) / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["epoch"] < 2  # it really was cut short

    result = cli(*fit_args(bigger_mnist, "--trainer.max_epochs", "3", "--ckpt_path", str(last)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(uninterrupted, only_run(tmp_path))  # the same run, continued


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(synthetic_mnist, tmp_path):
    result = cli(*fit_args(synthetic_mnist[0], "--trainer.max_epochs", "3", "--trainer.callbacks+=poison.PoisonWeights"),
                 cwd=tmp_path, env={"PYTHONPATH": str(TESTS)})  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "became NaN or infinite in epoch 1" in result.stderr and "last good checkpoint, last.ckpt, is intact" in result.stderr
    checkpoint = load_checkpoint(only_run(tmp_path) / "checkpoints" / "last.ckpt")
    assert checkpoint["epoch"] == 0
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())


def test_two_process_ddp_matches_one_process_evaluation(synthetic_mnist, tmp_path):
    data_dir = synthetic_mnist[0]
    result = cli(*fit_args(data_dir, "-c", str(CONFIG.with_name("ddp.yaml")), "--trainer.max_epochs", "2"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(tmp_path)  # one run directory, written by rank 0 only
    ddp_scalars = run_scalars(run)
    validate = cli("validate", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), *QUIET, cwd=tmp_path)
    assert validate.returncode == 0, validate.stderr[-3000:]
    single = run_scalars(only_run(tmp_path))  # validate adds its results to the same run
    assert ddp_scalars["val_acc"][-1] == single["validate_acc"][0]
    assert ddp_scalars["val_loss"][-1] == pytest.approx(single["validate_loss"][0], rel=1e-5)


def test_lightning_picks_up_slurm_from_its_variables(monkeypatch, tmp_path):
    from lightning.fabric.plugins.environments import SLURMEnvironment

    from mnist_lightning.cli import MNISTCLI

    for name, value in {"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_NAME": "mnist",
                        "SLURM_JOB_ID": "1234", "SLURM_NODELIST": "node[1-2]", "SLURM_PROCID": "3",
                        "SLURM_LOCALID": "1", "SLURM_NODEID": "1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    cli_ = MNISTCLI(args=["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.num_nodes", "2",
                          "--trainer.strategy", "ddp"], run=False)  # fmt: skip
    environment = cli_.trainer.strategy.cluster_environment
    assert isinstance(environment, SLURMEnvironment)
    assert (cli_.trainer.global_rank, cli_.trainer.world_size, cli_.trainer.node_rank) == (3, 4, 1)


# --- bad input: a short message naming the problem, exit status 1, no traceback, nothing damaged


def copy_mnist(synthetic_mnist, tmp_path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(synthetic_mnist[0], target)
    return target


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: f.write_bytes(f.read_bytes()[:5000]), "is truncated or damaged"),
        (lambda f: f.write_bytes(f.read_bytes()[:10]), "too short even for an IDX header"),
        (lambda f: f.write_bytes(b"\x00\x00\x08\x01" + f.read_bytes()[4:]), "not an MNIST images file"),
        (lambda f: write_idx(f, torch.zeros(5, 20, 20, dtype=torch.uint8).numpy()), "20x20 images"),
    ],
)
def test_damaged_idx_files_are_named(synthetic_mnist, tmp_path, damage, message):
    data_dir = copy_mnist(synthetic_mnist, tmp_path)
    images = data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte"
    damage(images)
    with pytest.raises(UserError, match=message) as err:
        MNISTDataModule(data_dir=str(data_dir), download=False).setup("fit")
    assert str(images) in str(err.value)


def test_image_and_label_counts_must_agree(synthetic_mnist, tmp_path):
    data_dir = copy_mnist(synthetic_mnist, tmp_path)
    write_idx(data_dir / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", torch.zeros(7, dtype=torch.uint8).numpy())
    with pytest.raises(UserError, match="holds 100 images but .* holds 7 labels"):
        MNISTDataModule(data_dir=str(data_dir)).setup("test")


def test_checksum_mismatch_on_download_is_reported(tmp_path, mnist_server, monkeypatch):
    from torchvision.datasets import MNIST

    monkeypatch.setattr(MNIST, "resources", [(name, "0" * 32) for name, _ in MNIST.resources])
    with pytest.raises(UserError, match="could not be downloaded .*corrupted"):
        MNISTDataModule(data_dir=str(tmp_path / "data")).prepare_data()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data.batch_sise", "64"], "batch_sise"),  # unknown key
        (["--data.batch_size", "many"], "batch_size"),  # wrong type
        (["--data.batch_size", "0"], "batch sizes must be at least 1"),
        (["--model.lr", "-0.1"], "need lr > 0"),
        (["--data.val_split", "1.5"], "val_split must lie strictly between 0 and 1"),
    ],
)
def test_bad_config_values_get_one_message(synthetic_mnist, tmp_path, args, message):
    result = cli("fit", "--data.data_dir", str(synthetic_mnist[0]), *args, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert message in result.stderr


def test_checkpoint_of_another_architecture_is_refused(best_checkpoint, tmp_path):
    checkpoint = torch.load(best_checkpoint, weights_only=True)
    checkpoint["state_dict"]["net.7.weight"] = torch.zeros(64, 1600)
    other = tmp_path / "other.ckpt"
    torch.save(checkpoint, other)
    result = cli("test", "--ckpt_path", str(other), *QUIET, cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "different network" in result.stderr and "net.7.weight" in result.stderr


def test_unwritable_output_directory(synthetic_mnist, tmp_path):
    (tmp_path / "runs").write_text("a file where the runs directory should be")
    result = cli(*fit_args(synthetic_mnist[0], "--trainer.max_epochs", "1"), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot write" in result.stderr
    assert (tmp_path / "runs").read_text().startswith("a file")  # nothing damaged


def test_disk_full_while_writing_predictions_keeps_the_old_file(best_checkpoint, tmp_path, monkeypatch, capsys):
    from mnist_lightning import cli as cli_module
    from mnist_lightning import predict

    old = tmp_path / "predictions.csv"
    old.write_text("index,label,prediction,confidence,doubtful\n")

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(predict, "write_text", full)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli_module.main(["predict", "--ckpt_path", str(best_checkpoint), *QUIET])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "No space left on device" in err and "--prediction_writer.output" in err
    assert old.read_text() == "index,label,prediction,confidence,doubtful\n"


def test_checkpoints_are_written_beside_the_target_then_renamed(tmp_path, monkeypatch):
    from mnist_lightning.checkpoint import AtomicCheckpointIO
    from mnist_lightning.cli import MNISTCLI

    monkeypatch.chdir(tmp_path)
    trainer = MNISTCLI(args=["--trainer.accelerator", "cpu"], run=False).trainer
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)

    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}}, target)

    real_write_bytes = Path.write_bytes

    def killed_mid_write(self, data):
        real_write_bytes(self, b"half a checkpoint")
        raise KeyboardInterrupt  # stands in for the process dying

    monkeypatch.setattr(Path, "write_bytes", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(2)}}, target)
    assert torch.equal(torch.load(target, weights_only=True)["state_dict"]["w"], torch.ones(2))  # the old one, whole
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".ckpt" or p.name.startswith(".")] == ["last.ckpt"]
