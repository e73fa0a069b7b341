"""NativeBF16: bf16 arithmetic only where the CPU has it, float32 weights always."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from mnist_lightning.data import MNISTDataModule
from mnist_lightning.module import MNISTClassifier
from mnist_lightning.precision import NativeBF16


@pytest.mark.parametrize("native", [True, False], ids=["avx512-bf16", "no-bf16"])
def test_bf16_arithmetic_only_on_cpus_with_native_bf16(native, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    plugin = NativeBF16()
    model = MNISTClassifier()
    with plugin.forward_context():
        logits = model(torch.rand(2, 1, 28, 28))
    assert logits.dtype == (torch.bfloat16 if native else torch.float32)
    assert plugin.precision == ("bf16-mixed" if native else "32-true")


@pytest.mark.parametrize("native", [True, False], ids=["avx512-bf16", "no-bf16"])
def test_fit_with_gradient_clipping_keeps_float32_weights(native, synthetic_mnist, monkeypatch):
    """Lightning's MixedPrecision refuses gradient clipping with a fused optimizer (ours)."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    data_dir, _ = synthetic_mnist
    model = MNISTClassifier()
    before = model.net[0].weight.detach().clone()
    trainer = L.Trainer(
        max_epochs=1,
        plugins=[NativeBF16()],
        gradient_clip_val=0.5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, MNISTDataModule(data_dir=str(data_dir), batch_size=64))
    assert trainer.callback_metrics["accuracy/val"].isfinite()
    assert trainer.precision == ("bf16-mixed" if native else "32-true")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not torch.equal(model.net[0].weight, before)


def test_a_model_off_the_cpu_keeps_float32(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    plugin = NativeBF16()
    assert plugin.native
    plugin.connect(torch.nn.Linear(2, 2, device="meta"), [], [])
    assert not plugin.native and plugin.precision == "32-true"


def test_clipping_under_bf16_is_exact():
    parameter = torch.nn.Parameter(torch.zeros(4))
    parameter.grad = torch.full((4,), 5.0)  # norm 10
    optimizer = torch.optim.Adam([parameter], fused=True)
    NativeBF16().clip_gradients(optimizer, clip_val=1.0)
    assert parameter.grad.norm().item() == pytest.approx(1.0, rel=1e-5)
