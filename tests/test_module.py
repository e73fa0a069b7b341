"""The training recipe: its epoch metrics against an independent computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers.training import bare_trainer

from mnist_lightning.data import MNISTDataModule
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
    trainer = bare_trainer(
        max_epochs=1,
        num_sanity_val_steps=1,
        limit_val_batches=0 if stage == "train" else None,
    )
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
    assert trainer.callback_metrics[f"loss/{stage}"].item() == pytest.approx(expected_loss, rel=1e-4)
    assert trainer.callback_metrics[f"accuracy/{stage}"].item() == pytest.approx(expected_acc, abs=1e-6)
    assert not model.epoch_metrics[f"{stage}_acc"].update_called  # reset for the next epoch


def test_a_fit_that_logs_no_steps_trains(synthetic_mnist):
    """--trainer.log_every_n_steps 0 (Lightning's "never") trains and logs the epoch's metrics."""
    trainer = bare_trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=1,
        log_every_n_steps=0,
    )
    trainer.fit(MNISTClassifier(), MNISTDataModule(str(synthetic_mnist[0]), batch_size=32))
    assert "loss/train" in trainer.callback_metrics and "loss/train_step" not in trainer.callback_metrics
