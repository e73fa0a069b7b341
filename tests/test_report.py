"""`report` from a checkpoint: metrics, figures, and the summary it prints."""

import json

import numpy as np
import pytest
import torch
from helpers.mnist import N_TEST
from PIL import Image

from mnist_lightning.report import class_metrics, summary


@pytest.mark.slow
@pytest.mark.xdist_group("report")
def test_report_metrics_are_consistent(best_report, synthetic_mnist):
    out, printed = best_report
    metrics = json.loads((out / "metrics.json").read_text())
    cm = np.array(metrics["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == metrics["num_samples"] == N_TEST
    assert np.trace(cm) / N_TEST == pytest.approx(metrics["test_acc"])
    expected_support = np.bincount(synthetic_mnist[1]["t10k-labels-idx1-ubyte"], minlength=10)
    assert [metrics["per_class"][str(d)]["support"] for d in range(10)] == expected_support.tolist()
    assert set(metrics["per_class"]["3"]) == {"precision", "recall", "f1", "support"}
    assert metrics["test_acc"] > 0.9 and metrics["test_loss"] > 0
    assert f"Test accuracy {metrics['test_acc']:.4f}" in printed
    assert "most frequent confusions" in printed


@pytest.mark.slow
@pytest.mark.xdist_group("report")
def test_report_writes_every_figure(best_report):
    out, _ = best_report
    for name in ("confusion_matrix", "learning_curves", "samples", "misclassified"):
        with Image.open(out / f"{name}.png") as image:
            assert image.format == "PNG" and image.width > 300, name


def test_class_metrics_from_a_known_confusion():
    # 4 images of digit 0 (3 right, 1 read as 1) and 2 of digit 1 (both right).
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    predicted = torch.tensor([0, 0, 0, 1, 1, 1])
    probabilities = torch.nn.functional.one_hot(predicted, 10).float()
    confusion = torch.zeros(10, 10, dtype=torch.long)
    for t, p in zip(labels, predicted):
        confusion[t, p] += 1
    metrics = class_metrics(confusion, probabilities, labels, test_loss=0.25)
    assert metrics["test_acc"] == 5 / 6 and metrics["num_samples"] == 6 and metrics["test_loss"] == 0.25
    assert metrics["per_class"]["0"] == {"precision": 1.0, "recall": 0.75, "f1": round(6 / 7, 6), "support": 4}
    assert metrics["per_class"]["1"] == {"precision": round(2 / 3, 6), "recall": 1.0, "f1": 0.8, "support": 2}
    lines = summary(metrics).splitlines()
    assert lines[0] == "Test accuracy 0.8333, loss 0.2500 on 6 images"
    assert lines[2].endswith("(true -> predicted): 0->1 x1")


def test_a_report_replaces_only_what_a_report_of_the_same_checkpoint_wrote(tmp_path):
    from mnist_lightning.errors import UserError
    from mnist_lightning.report import check_report_dir

    ckpt = tmp_path / "model.ckpt"
    check_report_dir(tmp_path / "new", ckpt)  # a new folder
    (tmp_path / "metrics.json").write_text(
        json.dumps({"checkpoint": str(ckpt.resolve()), "files": ["metrics.json", "samples.png"]})
    )
    (tmp_path / "samples.png").write_bytes(b"")
    check_report_dir(tmp_path, ckpt)  # its own earlier report
    (tmp_path / "learning_curves.png").write_bytes(b"someone's")
    with pytest.raises(UserError, match="already holds learning_curves.png, not written by a report of"):
        check_report_dir(tmp_path, ckpt)
    with pytest.raises(UserError, match="metrics.json, learning_curves.png, samples.png"):
        check_report_dir(tmp_path, tmp_path / "another.ckpt")
