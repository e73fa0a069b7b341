"""`report` and `predict` from a checkpoint, and checkpoints that must be refused."""

import csv
import json

import numpy as np
import pytest
import torch
from conftest import N_TEST, cli
from PIL import Image

from mnist_lightning.checkpoint import load_checkpoint
from mnist_lightning.errors import UserError


@pytest.fixture(scope="module")
def report(best_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    result = cli("report", "--ckpt_path", str(best_checkpoint), "--output_dir", str(out),
                 "--trainer.enable_progress_bar", "false", cwd=out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_report_metrics_are_consistent(report, synthetic_mnist):
    out, result = report
    metrics = json.loads((out / "metrics.json").read_text())
    cm = np.array(metrics["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == metrics["num_samples"] == N_TEST
    assert np.trace(cm) / N_TEST == pytest.approx(metrics["test_acc"])
    expected_support = np.bincount(synthetic_mnist[1]["t10k-labels-idx1-ubyte"], minlength=10)
    assert [metrics["per_class"][str(d)]["support"] for d in range(10)] == expected_support.tolist()
    assert set(metrics["per_class"]["3"]) == {"precision", "recall", "f1", "support"}
    assert metrics["test_acc"] > 0.9 and metrics["test_loss"] > 0
    assert f"Test accuracy {metrics['test_acc']:.4f}" in result.stdout
    assert "most frequent confusions" in result.stdout


def test_report_writes_every_figure(report):
    out, _ = report
    for name in ("confusion_matrix", "learning_curves", "samples", "misclassified"):
        with Image.open(out / f"{name}.png") as image:
            assert image.format == "PNG" and image.width > 300, name


def draw_digit(path, label_row: int, light: bool, size: int, fmt: str, mode: str = "RGB"):
    """The synthetic digits' pattern (a bar whose row is the label), drawn as a 'photo'."""
    array = np.zeros((28, 28), np.uint8)
    array[2 + 2 * label_row : 4 + 2 * label_row, 4:24] = 255
    image = Image.fromarray(255 - array if light else array).resize((size, size))
    image.convert(mode).save(path, fmt)


def test_predict_directory_skips_bad_files_and_writes_csv(best_checkpoint, tmp_path):
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    draw_digit(pictures / "a.png", 3, light=True, size=140, fmt="PNG")
    draw_digit(pictures / "b.jpg", 7, light=False, size=90, fmt="JPEG")
    draw_digit(pictures / "c.bmp", 1, light=True, size=28, fmt="BMP", mode="L")
    (pictures / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (pictures / "notes.txt").write_text("not an image")
    out = tmp_path / "out" / "preds.csv"
    result = cli("predict", "--ckpt_path", str(best_checkpoint), "--data.predict_path", str(pictures),
                 "--prediction_writer.output", str(out), "--trainer.enable_progress_bar", "false", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped" in result.stderr and "broken.png" in result.stderr and "notes.txt" in result.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["a.png", "b.jpg", "c.bmp"]
    assert all(0 <= float(r["confidence"]) <= 1 and r["prediction"].isdigit() for r in rows)
    assert "Predicted 3 image(s)" in result.stdout


def test_predict_without_path_predicts_the_test_set(best_checkpoint, tmp_path):
    result = cli("predict", "--ckpt_path", str(best_checkpoint), "--trainer.enable_progress_bar", "false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "predictions.csv").open()))
    assert list(rows[0]) == ["index", "label", "prediction", "confidence", "doubtful"] and len(rows) == N_TEST
    accuracy = np.mean([r["label"] == r["prediction"] for r in rows])
    assert accuracy > 0.9
    assert f"accuracy on the MNIST test set: {accuracy:.4f}" in result.stdout


def test_predict_marks_answers_below_the_threshold_as_doubtful(best_checkpoint, tmp_path):
    first = cli("predict", "--ckpt_path", str(best_checkpoint), "--trainer.enable_progress_bar", "false", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    confidences = sorted(float(r["confidence"]) for r in csv.DictReader((tmp_path / "predictions.csv").open()))
    threshold = confidences[len(confidences) // 3]  # about a third of the rows fall below it
    result = cli("predict", "--ckpt_path", str(best_checkpoint), "--prediction_writer.threshold", str(threshold),
                 "--trainer.enable_progress_bar", "false", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "predictions.csv").open()))
    doubtful = [r for r in rows if r["doubtful"] == "true"]
    assert {r["doubtful"] for r in rows} == {"true", "false"}
    # The CSV rounds confidences to 4 decimals; the mark is decided before rounding.
    assert all(float(r["confidence"]) <= threshold + 1e-4 for r in doubtful)
    assert all(float(r["confidence"]) >= threshold - 1e-4 for r in rows if r["doubtful"] == "false")
    assert f"doubtful (confidence below {threshold:g}): {len(doubtful)}" in result.stdout
    right = np.mean([r["label"] == r["prediction"] for r in doubtful])
    assert f"doubtful {len(doubtful)}: {right:.4f}" in result.stdout


def test_predict_refuses_a_threshold_outside_0_1(best_checkpoint, tmp_path):
    result = cli("predict", "--ckpt_path", str(best_checkpoint), "--prediction_writer.threshold", "1.5", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("mnist-lightning: error: --prediction_writer.threshold")
    assert "Traceback" not in result.stderr and not (tmp_path / "predictions.csv").exists()


def test_predict_fails_only_when_nothing_could_be_read(best_checkpoint, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    result = cli("predict", "--ckpt_path", str(best_checkpoint), "--data.predict_path", str(tmp_path / "*.jpg"), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "none of the 1 file(s)" in result.stderr
    assert not (tmp_path / "predictions.csv").exists()


class RunsCode:
    """Unpickling this calls open(marker, 'w'): proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_that_would_run_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": RunsCode(marker)}}, evil)
    with pytest.raises(UserError, match="refused to load"):
        load_checkpoint(evil)
    for command in ("test", "report", "predict"):
        result = cli(command, "--ckpt_path", str(evil), cwd=tmp_path)
        assert result.returncode == 1 and "refused to load" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


def test_truncated_and_foreign_checkpoints_get_clear_messages(best_checkpoint, tmp_path):
    truncated = tmp_path / "half.ckpt"
    truncated.write_bytes(best_checkpoint.read_bytes()[:5000])
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(truncated)
    text = tmp_path / "notes.ckpt"
    text.write_text("hello, not a checkpoint")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(text)
    plain = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), plain)
    with pytest.raises(UserError, match="not a Lightning checkpoint"):
        load_checkpoint(plain)
