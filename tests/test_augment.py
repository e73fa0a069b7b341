"""Augmentation: batched distortions, reproducible draws, training only, and exact resume."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from helpers.cli import QUIET, fit_args, in_process, only_run
from helpers.runs import assert_same_run, final_state

from mnist_lightning.augment import Distortion, _max3x3
from mnist_lightning.data import MNISTDataModule
from mnist_lightning.errors import UserError

AUGMENT = {"rotation": 15, "scale": 0.15, "shift": 3, "shear": 10, "thickness": 0.8, "elastic": 1.5}


def digits(n: int = 32) -> torch.Tensor:
    images = torch.zeros(n, 1, 28, 28)
    images[:, :, 6:22, 12:16] = 1.0  # a bar in the middle of each picture
    return images


def test_no_distortion_is_the_identity():
    distortion = Distortion({"rotation": 0})
    distortion.reseed(0, 0, 0)
    images = digits()
    assert torch.allclose(distortion(images), images, atol=1e-6)


def test_each_image_gets_its_own_draw_and_draws_repeat_per_seed_epoch_and_rank():
    distortion = Distortion(AUGMENT)
    outputs = {}
    for key in [(0, 0, 0), (0, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 0)]:
        distortion.reseed(*key)
        outputs.setdefault(key, []).append(distortion(digits()))
    first = outputs[(0, 0, 0)]
    assert torch.equal(first[0], first[1])
    assert not torch.allclose(first[0][0], first[0][1])  # the same picture, distorted differently
    for other in [(0, 1, 0), (0, 0, 1), (1, 0, 0)]:
        assert not torch.allclose(first[0], outputs[other][0])
    assert first[0].shape == (32, 1, 28, 28) and 0 <= first[0].min() and first[0].max() <= 1 + 1e-6


def test_rotation_turns_the_picture():
    distortion = Distortion({"rotation": 90})
    distortion.reseed(0, 0, 0)
    turned = distortion(digits(256))
    # A vertical bar turned by up to 90 degrees: its ink spreads sideways, on average over the batch.
    columns = turned.sum(dim=(1, 2)) > 0.1
    assert columns.sum(dim=1).float().mean() > 8


def test_stroke_weight_goes_towards_a_max_or_min_filter():
    images = digits(2)
    assert torch.equal(_max3x3(images), torch.nn.functional.max_pool2d(images, 3, stride=1, padding=1))
    bolder, thinner = Distortion._reweigh(images, torch.tensor([1.0, -1.0]))
    assert bolder.sum() > images[0].sum() > thinner.sum()


@pytest.mark.parametrize("limits", [{"rotate": 10}, {"rotation": -5}, {"scale": 1.0}, {"shift": float("nan")}])
def test_bad_limits_are_refused_with_the_option_named(limits):
    with pytest.raises(UserError, match="--data.augment"):
        Distortion(limits)


def test_only_training_batches_are_distorted():
    data = MNISTDataModule(augment=AUGMENT)
    batch = ((digits(4) * 255).to(torch.uint8), torch.zeros(4, dtype=torch.long))

    class Trainer:
        training, current_epoch, global_rank = True, 0, 0

    data.trainer = Trainer()
    trained, _ = data.on_after_batch_transfer(batch, 0)
    Trainer.training = False
    evaluated, _ = data.on_after_batch_transfer(batch, 0)
    assert torch.equal(evaluated, digits(4)) and not torch.equal(trained, digits(4))


def fit(data_dir, cwd, *extra):
    """`mnist-lightning fit` with the distortions on, run by cli.main in this process (the property is
    the training's: the installed command's resumes are tests/test_reliability.py's)."""
    cwd.mkdir(exist_ok=True)
    options = ["--seed_everything", "7", "--data.augment", json.dumps(AUGMENT), "--trainer.log_every_n_steps", "5"]
    in_process(*fit_args(data_dir, *options, *QUIET, *extra), cwd=cwd)
    return only_run(cwd)


@pytest.mark.slow
def test_augmented_training_resumes_exactly(synthetic_mnist, tmp_path):
    straight = fit(synthetic_mnist[0], tmp_path / "straight", "--trainer.max_epochs", "2")
    halfway = fit(synthetic_mnist[0], tmp_path / "resumed", "--trainer.max_epochs", "1")
    one_epoch = final_state(halfway)[0]
    resumed = fit(
        synthetic_mnist[0],
        tmp_path / "resumed",
        "--trainer.max_epochs",
        "2",
        "--ckpt_path",
        str(halfway / "checkpoints" / "last.ckpt"),
    )
    assert resumed == halfway
    assert_same_run(straight, resumed)
    # The distortions were on: the run's config hands them to the data module, which distorts
    # training batches (test_only_training_batches_are_distorted).
    config = yaml.safe_load((resumed / "config.yaml").read_text())
    assert config["data"]["augment"] == AUGMENT and one_epoch["net.0.weight"].isfinite().all()
