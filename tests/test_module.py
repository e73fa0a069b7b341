"""The training recipe's bookkeeping, checked against an independent computation."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnist_lightning.data import MNISTDataModule
from mnist_lightning.model import MNISTNet
from mnist_lightning.module import MNISTClassifier


@pytest.mark.parametrize("stage", ["train", "val", "test"])
def test_epoch_metrics_are_per_image_means(synthetic_mnist, stage):
    """Batches of 64 (train: 360 images) and 24 (val: 40, test: 100) end short: a mean of batch means would differ."""
    data_dir, _ = synthetic_mnist
    data = MNISTDataModule(data_dir=str(data_dir), batch_size=64, eval_batch_size=24)
    # A learning rate of 1e-9 leaves the weights as they were to ~1e-7, and without
    # dropout the training pass computes what an evaluation pass computes.
    model = MNISTClassifier(lr=1e-9, dropout=0.0)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0 if stage == "train" else None)  # fmt: skip
    if stage == "train":
        trainer.fit(model, data)
    else:
        getattr(trainer, {"val": "validate", "test": "test"}[stage])(model, data, verbose=False)

    dataset = getattr(data, f"{stage}_set")
    with torch.inference_mode():
        logits = model(dataset.images.float() / 255)
    expected_loss = F.cross_entropy(logits, dataset.labels).item()
    expected_acc = (logits.argmax(1) == dataset.labels).float().mean().item()
    assert trainer.callback_metrics[f"{stage}_loss"].item() == pytest.approx(expected_loss, rel=1e-4)
    assert trainer.callback_metrics[f"{stage}_acc"].item() == pytest.approx(expected_acc, abs=1e-6)
    assert model.seen[stage] == 0 and not model.sums.any()  # reset for the next epoch


def test_fast_setattr_keeps_module_registration():
    """Only Lightning's hook name skips nn.Module's checks; layers, parameters and buffers still register."""
    model = MNISTClassifier()
    model._current_fx_name = "training_step"
    assert model._current_fx_name == "training_step"
    assert "_current_fx_name" not in model._modules and "_current_fx_name" not in model._parameters
    model.extra = torch.nn.Linear(2, 2)
    model.scale = torch.nn.Parameter(torch.ones(1))
    assert "extra" in model._modules and "scale" in dict(model.named_parameters())
    with pytest.raises(TypeError):
        model.net = "not a module"  # nn.Module's own check, still in force for every other name


def test_checkpoint_from_before_keras_flatten_order_loads_as_the_same_network(best_checkpoint):
    """Older checkpoints (no "flatten" mark) had the dense layer read (C, H, W) features."""
    checkpoint = torch.load(best_checkpoint, weights_only=True)
    assert checkpoint["flatten"] == "HWC"
    weight = checkpoint["state_dict"]["net.7.weight"]
    moments = checkpoint["optimizer_states"][0]["state"][4]

    def to_chw(t):
        return t.unflatten(1, (5, 5, 64)).permute(0, 3, 1, 2).flatten(1)

    old = torch.load(best_checkpoint, weights_only=True)
    del old["flatten"]
    old["state_dict"]["net.7.weight"] = to_chw(weight)
    old_moments = old["optimizer_states"][0]["state"][4]
    for key in ("exp_avg", "exp_avg_sq"):
        old_moments[key] = to_chw(moments[key])
    # What the earlier code computed with those weights: the same net with nn.Flatten.
    old_net = MNISTNet()
    old_net[6] = nn.Flatten()
    old_net.load_state_dict({k.removeprefix("net."): v for k, v in old["state_dict"].items()})

    model = MNISTClassifier()
    model.on_load_checkpoint(old)
    model.load_state_dict(old["state_dict"])
    assert torch.equal(model.net[7].weight, weight)
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(old_moments[key], moments[key])
    images = torch.rand(8, 1, 28, 28)
    torch.testing.assert_close(model.eval()(images), old_net.eval()(images))
