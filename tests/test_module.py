"""The training recipe: its epoch metrics against an independent computation, resuming with new settings,
and the stop on a NaN loss."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from mnist_lightning.data import MNISTDataModule
from mnist_lightning.errors import UserError
from mnist_lightning.module import MNISTClassifier


@pytest.mark.parametrize("stage", ["train", "val", "test", "val after fit"])
def test_epoch_metrics_are_per_image_means(synthetic_mnist, stage):
    """Batches of 64 (train: 360 images) and 24 (val: 40, test: 100) end short: a mean of batch means would differ.
    After a fit, validation counts its epoch's images only, not the sanity check's before training."""
    data_dir, _ = synthetic_mnist
    data = MNISTDataModule(data_dir=str(data_dir), batch_size=64, eval_batch_size=24)
    # A learning rate of 1e-9 leaves the weights as they were to ~1e-7, and without
    # dropout the training pass computes what an evaluation pass computes.
    model = MNISTClassifier(lr=1e-9, dropout=0.0)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=1,
                        limit_val_batches=0 if stage == "train" else None)  # fmt: skip
    if stage in ("train", "val after fit"):
        trainer.fit(model, data)
        stage = stage.split()[0]
    else:
        getattr(trainer, {"val": "validate", "test": "test"}[stage])(model, data, verbose=False)

    dataset = getattr(data, f"{stage}_set")
    with torch.inference_mode():
        logits = model(dataset.images.float() / 255)
    expected_loss = F.cross_entropy(logits, dataset.labels).item()
    expected_acc = (logits.argmax(1) == dataset.labels).float().mean().item()
    assert trainer.callback_metrics[f"{stage}_loss"].item() == pytest.approx(expected_loss, rel=1e-4)
    assert trainer.callback_metrics[f"{stage}_acc"].item() == pytest.approx(expected_acc, abs=1e-6)
    assert not model.epoch_metrics[f"{stage}_acc"].update_called  # reset for the next epoch




def fit_briefly(data_dir, root, model: MNISTClassifier, epochs: int, ckpt_path=None) -> L.Trainer:
    """A few batches an epoch, in this process; the last state saved as root/last.ckpt."""
    trainer = L.Trainer(max_epochs=epochs, limit_train_batches=4, limit_val_batches=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=root)  # fmt: skip
    trainer.fit(model, MNISTDataModule(data_dir=str(data_dir), batch_size=32), ckpt_path=ckpt_path)
    trainer.save_checkpoint(root / "last.ckpt")
    return trainer


def test_resuming_with_a_new_learning_rate_gives_it_to_the_optimizer(synthetic_mnist, tmp_path, caplog):
    fit_briefly(synthetic_mnist[0], tmp_path, MNISTClassifier(lr=0.003), epochs=1)
    resumed = MNISTClassifier(lr=0.01, eps=1e-6)
    with caplog.at_level("INFO"):
        trainer = fit_briefly(synthetic_mnist[0], tmp_path, resumed, epochs=2, ckpt_path=tmp_path / "last.ckpt")
    group = trainer.optimizers[0].param_groups[0]
    assert (group["lr"], group["eps"]) == (0.01, 1e-6)  # the checkpoint's optimizer state had 0.003 and 1e-7
    assert "Resuming with new settings: lr 0.003 -> 0.01, eps 1e-07 -> 1e-06" in caplog.text


def test_resuming_without_changes_says_nothing(synthetic_mnist, tmp_path, caplog):
    fit_briefly(synthetic_mnist[0], tmp_path, MNISTClassifier(), epochs=1)
    with caplog.at_level("INFO"):
        fit_briefly(synthetic_mnist[0], tmp_path, MNISTClassifier(), epochs=2, ckpt_path=tmp_path / "last.ckpt")
    assert "Resuming" not in caplog.text


def test_a_1cycle_schedule_resumed_for_longer_is_rebuilt_as_if_it_had_always_been_that_long(synthetic_mnist, tmp_path):
    fit_briefly(synthetic_mnist[0], tmp_path, MNISTClassifier(lr=0.01, one_cycle=True), epochs=1)
    trainer = fit_briefly(synthetic_mnist[0], tmp_path, MNISTClassifier(lr=0.01, one_cycle=True), epochs=3,
                          ckpt_path=tmp_path / "last.ckpt")  # fmt: skip
    # The same schedule computed independently: 12 steps in all, stepped 12 times.
    reference = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=0.01, total_steps=12)
    lrs = []
    for _ in range(12):
        lrs.append(reference.param_groups[0]["lr"])
        reference.step()
        schedule.step()
    resumed = trainer.lr_scheduler_configs[0].scheduler
    assert resumed.total_steps == 12 and resumed.last_epoch == 12
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(reference.param_groups[0]["lr"])
    assert lrs[4] > lrs[11]  # it warmed up and came down: the schedule was not restarted at step 4


def test_a_1cycle_run_cannot_be_resumed_without_it(synthetic_mnist, tmp_path):
    fit_briefly(synthetic_mnist[0], tmp_path, MNISTClassifier(one_cycle=True), epochs=1)
    with pytest.raises(UserError, match="one_cycle true"):
        fit_briefly(synthetic_mnist[0], tmp_path, MNISTClassifier(one_cycle=False), epochs=2, ckpt_path=tmp_path / "last.ckpt")


def test_a_nan_loss_stops_training_before_the_epoch_is_saved(synthetic_mnist, tmp_path):
    from helpers.poison import PoisonWeights

    trainer = L.Trainer(max_epochs=3, limit_train_batches=6, limit_val_batches=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[PoisonWeights(epoch=1, batch=2)], default_root_dir=tmp_path)  # fmt: skip
    with pytest.raises(UserError, match="became NaN or infinite in epoch 1"):
        trainer.fit(MNISTClassifier(), MNISTDataModule(data_dir=str(synthetic_mnist[0]), batch_size=32))
    # Lightning's checkpoint of epoch 0 is the last one: epoch 1's broken weights were never saved.
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["epoch=0-step=6.ckpt"]


def test_a_fit_that_logs_no_steps_trains(synthetic_mnist):
    """--trainer.log_every_n_steps 0 (Lightning's "never") trains and logs the epoch's metrics."""
    trainer = L.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1, log_every_n_steps=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(MNISTClassifier(), MNISTDataModule(str(synthetic_mnist[0]), batch_size=32))
    assert "train_loss" in trainer.callback_metrics and "train_loss_step" not in trainer.callback_metrics
