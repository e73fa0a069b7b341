"""mnist_lightning.trainer(): the Trainer of `mnist-lightning fit`, from Python (in-process, a few batches), and its atomic checkpoint writer."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

import mnist_lightning
from mnist_lightning import MNISTClassifier, MNISTDataModule
from mnist_lightning.logger import RunLogger
from mnist_lightning.report import epoch_series
from mnist_lightning.training import AtomicCheckpointIO

SHORT = {
    "limit_train_batches": 3,
    "limit_val_batches": 1,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "log_every_n_steps": 1,
}


def fit(runs_dir: Path, data_dir: Path, ckpt_path: str | None = None, **kwargs) -> Path:
    trainer = mnist_lightning.trainer(runs_dir=runs_dir, **{**SHORT, **kwargs})
    trainer.fit(MNISTClassifier(lr=0.003), MNISTDataModule(str(data_dir), batch_size=32), ckpt_path=ckpt_path)
    return Path(trainer.logger.log_dir)


def test_a_python_fit_writes_a_run_as_the_command_line_does(synthetic_mnist, tmp_path, capsys, monkeypatch):
    runs_dir = tmp_path / "my runs"  # a space: the printed commands quote it
    (tmp_path / "far" / "away").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "far" / "away")  # two folders up from here: the paths are printed absolute
    run = fit(runs_dir, synthetic_mnist[0], max_epochs=2)
    assert run.parent == runs_dir / "mnist" and re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", run.name)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names[-1] == "last.ckpt" and re.fullmatch(r"epoch0[01]-val_acc[01]\.\d{4}\.ckpt", names[0])
    assert list(run.glob("events.out.tfevents.*"))
    output = capsys.readouterr().out
    assert f"Run: {shlex.quote(str(run))}" in output
    test_line = next(line for line in output.splitlines() if "mnist-lightning test" in line)
    assert shlex.split(test_line)[-1] == str(run / "checkpoints" / names[0])  # pasted into a shell, the path is whole


def test_the_curves_of_a_run_that_validates_every_second_epoch(synthetic_mnist, tmp_path):
    series = epoch_series(fit(tmp_path, synthetic_mnist[0], max_epochs=4, check_val_every_n_epoch=2))
    assert sorted(series["loss/train"]) == [1, 2, 3, 4]
    assert sorted(series["accuracy/val"]) == sorted(series["loss/val"]) == [2, 4]


@pytest.mark.filterwarnings("ignore:Checkpoint directory")  # a resume continues in its run's folder, by design
def test_the_curves_of_a_resumed_run_continue_at_its_epochs(synthetic_mnist, tmp_path):
    data_dir = synthetic_mnist[0]
    run = fit(tmp_path, data_dir, max_epochs=2)
    same_run = RunLogger(str(tmp_path), name="mnist", version=run.name, default_hp_metric=False)
    resumed = fit(tmp_path, data_dir, ckpt_path=str(run / "checkpoints" / "last.ckpt"), max_epochs=4, logger=same_run)
    assert resumed == run
    series = epoch_series(run)
    assert sorted(series["accuracy/train"]) == sorted(series["accuracy/val"]) == [1, 2, 3, 4]


@pytest.mark.parametrize("flag", [False, True])
def test_the_trainer_takes_the_trainers_own_arguments(flag, tmp_path):
    trainer = mnist_lightning.trainer(runs_dir=tmp_path, max_epochs=3, enable_checkpointing=True, deterministic=flag)
    assert trainer.max_epochs == 3 and len(trainer.checkpoint_callbacks) == 2
    # The logger makes the run's folder (one mkdir, so two trainers never share one).
    assert [p.name for p in (tmp_path / "mnist").iterdir()] == [Path(trainer.logger.log_dir).name]


def test_a_fit_that_never_validated_says_no_checkpoint_was_saved(synthetic_mnist, tmp_path, capsys):
    fit(tmp_path, synthetic_mnist[0], max_epochs=1, check_val_every_n_epoch=3)
    assert "No checkpoint was saved" in capsys.readouterr().out


def test_checkpoints_are_written_beside_the_target_then_renamed(tmp_path, monkeypatch):
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
