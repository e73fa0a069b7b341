"""The run's TensorBoard logger: per-epoch curves against the epoch, an evaluation's results at its
checkpoint's epoch and beside (not in) the training's curves, the settings for HPARAMS."""

from __future__ import annotations

from mnist_lightning.logger import RunLogger, layout, scalar_events


def logged(tmp_path, *calls: tuple[dict, int], evaluated_epoch: int | None = None, validating: bool = False) -> dict:
    log = RunLogger(str(tmp_path), version="r")
    log.evaluated_epoch, log.validating = evaluated_epoch, validating
    for metrics, step in calls:
        log.log_metrics(dict(metrics), step)
    log.finalize("success")
    return {tag: [(e.step, e.value) for e in events] for tag, events in scalar_events(tmp_path / "mnist" / "r").items()}


def test_per_epoch_metrics_are_drawn_at_their_epoch_and_steps_at_their_step(tmp_path):
    assert logged(
        tmp_path, ({"loss/train": 0.5, "accuracy/train": 0.75, "epoch": 2}, 99), ({"loss/train_step": 0.25}, 99)
    ) == {
        "loss/train": [(2, 0.5)],
        "accuracy/train": [(2, 0.75)],
        "loss/train_step": [(99, 0.25)],
    }


def test_validate_goes_beside_the_training_curve_at_its_checkpoints_epoch(tmp_path):
    calls = ({"accuracy/val": 0.875, "loss/val": 0.25, "epoch": 0}, 0)
    assert logged(tmp_path, calls, evaluated_epoch=4, validating=True) == {
        "accuracy/validate": [(4, 0.875)],
        "loss/validate": [(4, 0.25)],
    }


def test_test_results_sit_at_the_checkpoints_epoch(tmp_path):
    assert logged(tmp_path, ({"accuracy/test": 0.875, "epoch": 0}, 0), evaluated_epoch=7) == {
        "accuracy/test": [(7, 0.875)]
    }


def test_every_logged_name_has_a_chart(tmp_path):
    import re

    patterns = [p for _, (_, regexes) in layout(learning_rate=True)["MNIST"].items() for p in regexes]
    names = [f"{q}/{s}" for q in ("loss", "accuracy") for s in ("train", "val", "validate", "test")]
    for name in [*names, "loss/train_step", "learning_rate"]:
        assert any(re.match(p, name) for p in patterns), name
