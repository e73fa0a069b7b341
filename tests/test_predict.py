"""`predict`: pictures and the test set into a CSV, doubtful answers marked, nothing lost on a full disk."""

import csv
import errno

import numpy as np
import pytest
import torch
from helpers.cli import QUIET, cli
from helpers.mnist import N_TEST
from PIL import Image

from mnist_lightning import cli as cli_module
from mnist_lightning import predict
from mnist_lightning.predict import summarize


def draw_digit(path, label_row: int, light: bool, size: int, fmt: str, mode: str = "RGB"):
    """The synthetic digits' pattern (a bar whose row is the label), drawn as a 'photo'."""
    array = np.zeros((28, 28), np.uint8)
    array[2 + 2 * label_row : 4 + 2 * label_row, 4:24] = 255
    image = Image.fromarray(255 - array if light else array).resize((size, size))
    image.convert(mode).save(path, fmt)


@pytest.mark.slow
def test_predict_directory_skips_bad_files_and_writes_csv(best_checkpoint, tmp_path):
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    draw_digit(pictures / "a.png", 3, light=True, size=140, fmt="PNG")
    draw_digit(pictures / "b.jpg", 7, light=False, size=90, fmt="JPEG")
    draw_digit(pictures / "c.bmp", 1, light=True, size=28, fmt="BMP", mode="L")
    (pictures / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (pictures / "notes.txt").write_text("not an image")
    out = tmp_path / "out" / "preds.csv"
    result = cli(
        "predict",
        "--ckpt_path",
        str(best_checkpoint),
        "--data.predict_path",
        str(pictures),
        "--prediction_writer.output",
        str(out),
        "--trainer.enable_progress_bar",
        "false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped" in result.stderr and "broken.png" in result.stderr and "notes.txt" in result.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["a.png", "b.jpg", "c.bmp"]
    assert all(0 <= float(r["confidence"]) <= 1 and r["prediction"].isdigit() for r in rows)
    assert "Predicted 3 image(s)" in result.stdout


@pytest.mark.slow
def test_predict_without_path_predicts_the_test_set(test_set_predictions):
    result, predictions = test_set_predictions
    rows = list(csv.DictReader(predictions.open()))
    assert list(rows[0]) == ["index", "label", "prediction", "confidence", "doubtful"] and len(rows) == N_TEST
    accuracy = np.mean([r["label"] == r["prediction"] for r in rows])
    assert accuracy > 0.9
    assert f"accuracy on the MNIST test set: {accuracy:.4f}" in result.stdout


@pytest.mark.slow
def test_predict_marks_answers_below_the_threshold_as_doubtful(test_set_predictions, best_checkpoint, tmp_path):
    confidences = sorted(float(r["confidence"]) for r in csv.DictReader(test_set_predictions[1].open()))
    threshold = confidences[len(confidences) // 3]  # about a third of the rows fall below it
    result = cli(
        "predict",
        "--ckpt_path",
        str(best_checkpoint),
        "--prediction_writer.threshold",
        str(threshold),
        "--trainer.enable_progress_bar",
        "false",
        cwd=tmp_path,
    )
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


@pytest.mark.slow
def test_predict_refuses_a_threshold_outside_0_1(best_checkpoint, tmp_path):
    result = cli("predict", "--ckpt_path", str(best_checkpoint), "--prediction_writer.threshold", "1.5", cwd=tmp_path)
    assert result.returncode == 2 and "it must be threshold>=0 and threshold<=1" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("mnist-lightning: error: --prediction_writer.threshold")
    assert "Traceback" not in result.stderr and not (tmp_path / "predictions.csv").exists()


@pytest.mark.slow
def test_predict_fails_only_when_nothing_could_be_read(best_checkpoint, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    result = cli(
        "predict", "--ckpt_path", str(best_checkpoint), "--data.predict_path", str(tmp_path / "*.jpg"), cwd=tmp_path
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "none of the 1 file(s)" in result.stderr
    assert not (tmp_path / "predictions.csv").exists()


def test_disk_full_while_writing_predictions_keeps_the_old_file(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    old = tmp_path / "predictions.csv"
    old.write_text("index,label,prediction,confidence,doubtful\n")

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(predict, "write_text", full)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli_module.main(["predict", "--ckpt_path", str(tiny_checkpoint), *QUIET])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "No space left on device" in err and "--prediction_writer.output" in err
    assert old.read_text() == "index,label,prediction,confidence,doubtful\n"


def test_the_summary_counts_digits_and_doubt_and_scores_the_test_set():
    predicted, confidence = torch.tensor([3, 3, 7, 1]), torch.tensor([0.99, 0.5, 0.95, 0.8])
    rows = [[0, 3], [1, 5], [2, 7], [3, 1]]  # index, label: the second is wrong
    text = summarize(predicted, confidence, ["index", "label"], rows, "p.csv", threshold=0.9).splitlines()
    assert text[0] == "Predicted 4 image(s) -> p.csv"
    assert text[1] == "  digits: 1: 1, 3: 2, 7: 1"
    assert text[2].endswith("doubtful (confidence below 0.9): 2")
    assert text[3] == "  accuracy on the MNIST test set: 0.7500; sure 2: 1.0000; doubtful 2: 0.5000"


def test_the_summary_of_pictures_lists_the_first_ten():
    files = [[f"d{i}.png"] for i in range(12)]
    text = summarize(
        torch.zeros(12, dtype=torch.long), torch.full((12,), 0.5), ["path"], files, "p.csv", 0.9
    ).splitlines()
    assert text[3] == "  d0.png: 0 (0.50, doubtful)" and text[-1] == "  ... 2 more in p.csv"
