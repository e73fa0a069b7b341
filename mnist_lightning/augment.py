"""Random distortions of training batches, as batched tensor operations on the device."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from mnist_lightning.errors import UserError

# The keys of --data.augment, each the largest distortion drawn (uniformly, per image).
LIMITS = {
    "rotation": "degrees either way",
    "scale": "relative size change either way (0.1: 90-110%)",
    "shift": "pixels either way, along each axis",
    "shear": "degrees either way",
    "thickness": "stroke weight change either way, 1 being a 3x3 dilation or erosion",
    "elastic": "pixels of smooth, random local displacement",
}


class Distortion:
    """Random affine warps, stroke-weight changes and elastic wobble of a whole batch at once.

    Every image gets its own draw (torchvision's v2 affine and elastic transforms draw
    one set of parameters per call, shared by the whole batch); one `grid_sample`
    applies rotation, scale, shift, shear and the elastic field together. The random numbers come from a CPU generator
    seeded by (seed, epoch, rank), so an epoch's distortions are the same on any device,
    and a run resumed from an epoch's checkpoint draws exactly what it would have drawn.

    Args:
        limits: The largest distortion of each kind (keys of LIMITS); missing kinds stay off.
    """

    def __init__(self, limits: dict[str, float]) -> None:
        unknown = sorted(set(limits) - set(LIMITS))
        if unknown:
            raise UserError(f"unknown --data.augment key(s) {', '.join(unknown)}; known: {', '.join(LIMITS)}")
        bad = {k: v for k, v in limits.items() if not (isinstance(v, (int, float)) and 0 <= v < math.inf)}
        if bad or limits.get("scale", 0) >= 1:
            raise UserError(f"--data.augment limits must be finite and >= 0 (scale below 1), got {limits}")
        self.limits = {k: float(limits.get(k, 0.0)) for k in LIMITS}
        self.generator = torch.Generator()

    def reseed(self, seed: int, epoch: int, rank: int) -> None:
        self.generator.manual_seed(hash((seed, epoch, rank)) & (2**63 - 1))

    def _uniform(self, n: int, limit: float) -> Tensor:
        """n draws from U(-limit, limit); always drawn, so the stream never depends on which kinds are on."""
        return (torch.rand(n, generator=self.generator) * 2 - 1) * limit

    def __call__(self, images: Tensor) -> Tensor:
        """Distorted copies of `images` (N x 1 x H x W, background 0)."""
        n, _, h, w = images.shape
        lim = self.limits
        angle, shear = (self._uniform(n, lim[k]).deg2rad() for k in ("rotation", "shear"))
        scale = 1 + self._uniform(n, lim["scale"])
        shift = torch.stack([self._uniform(n, lim["shift"]) * 2 / w, self._uniform(n, lim["shift"]) * 2 / h], 1)
        thickness = self._uniform(n, lim["thickness"])
        wobble = torch.randn(n, 2, h // 4, w // 4, generator=self.generator)
        # The inverse map, output pixel -> input pixel: rotate and shear, then scale.
        cos, sin, tan = angle.cos(), angle.sin(), shear.tan()
        matrix = torch.stack([torch.stack([cos, -sin + cos * tan], 1), torch.stack([sin, cos + sin * tan], 1)], 1)
        theta = torch.cat([matrix / scale[:, None, None], shift[:, :, None]], 2).to(images.device, images.dtype)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        if lim["elastic"]:
            # Coarse noise, upsampled smoothly: neighbouring pixels move together, as a pen's wobble does.
            field = F.interpolate(wobble, size=(h, w), mode="bilinear", align_corners=False)
            grid = grid + (field * lim["elastic"] * 2 / w).permute(0, 2, 3, 1).to(images.device, images.dtype)
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if lim["thickness"]:
            out = self._reweigh(out, thickness.to(images.device, images.dtype))
        return out

    @staticmethod
    def _reweigh(images: Tensor, amount: Tensor) -> Tensor:
        """Bolder strokes for amount > 0 (towards a 3x3 max filter), thinner for < 0 (towards a min filter)."""
        bolder, thinner = _max3x3(images), -_max3x3(-images)
        target = torch.where(amount[:, None, None, None] > 0, bolder, thinner)
        return images + amount.abs()[:, None, None, None].clamp(max=1) * (target - images)


def _max3x3(images: Tensor) -> Tensor:
    """A 3x3 max filter (zero padding) as two 1-D passes: on the CPU, for one channel, far cheaper than max_pool2d."""
    p = F.pad(images, (1, 1, 1, 1))
    rows = torch.maximum(torch.maximum(p[..., :-2], p[..., 1:-1]), p[..., 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])
