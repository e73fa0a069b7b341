"""bf16 mixed precision on CPUs that multiply bf16 natively, float32 on the others."""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.utilities import GradClipAlgorithmType, rank_zero_info
from torch.nn import Module
from torch.optim import Optimizer


class NativeBF16(MixedPrecision):
    """Lightning's `bf16-mixed` on the CPU where it pays, `32-true` where it would not.

    With AVX512-BF16, oneDNN runs the convolutions and dense layers in bf16 at about
    twice float32's rate and moves half the bytes. Without those instructions bf16 is
    emulated and several times slower than float32, so such CPUs train in float32
    (measurements: docs/speed.md). It decides for CPUs only: a model on a GPU trains in float32 with it
    (choose `--trainer.precision` there).
    Weights and Adam's state stay float32 either way; only the step's arithmetic differs.
    """

    def __init__(self) -> None:
        super().__init__("bf16-mixed", device="cpu")
        self._choose(_cpu_has_bf16())

    @property
    def native(self) -> bool:
        return self.precision == "bf16-mixed"

    def connect(self, model: Module, optimizers: list[Any], lr_schedulers: list[Any]) -> Any:
        """Called once the model is on its device: a model on a GPU keeps float32."""
        device = next(model.parameters(), torch.empty(0)).device
        self._choose(device.type == "cpu" and _cpu_has_bf16())
        rank_zero_info(
            "Precision: bf16-mixed (this CPU has AVX512-BF16)"
            if self.native
            else "Precision: float32 (this CPU has no AVX512-BF16, so bf16 would be slower)"
            if device.type == "cpu"
            else f"Precision: float32 (NativeBF16 chooses for CPUs only; on {device.type} set --trainer.precision)"
        )
        return super().connect(model, optimizers, lr_schedulers)

    def _choose(self, native: bool) -> None:
        self.precision = "bf16-mixed" if native else "32-true"

    @contextmanager
    def forward_context(self) -> Generator[None, None, None]:
        if not self.native:
            yield
            return
        with self.autocast_context_manager():
            yield

    def clip_gradients(
        self,
        optimizer: Optimizer,
        clip_val: float = 0.0,
        gradient_clip_algorithm: GradClipAlgorithmType = GradClipAlgorithmType.NORM,
    ) -> None:
        # MixedPrecision refuses clipping with a fused optimizer (ours) because float16's
        # loss scaler would leave the gradients scaled until the fused step. bf16 has no
        # scaler, so the gradients are true ones and clipping is exact.
        Precision.clip_gradients(self, optimizer, clip_val, gradient_clip_algorithm)


def _cpu_has_bf16() -> bool:
    # torch's own CPU-feature check; it is private, so a torch without it gets float32
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(check and check())
