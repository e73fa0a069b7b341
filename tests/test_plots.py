"""The report's figures: what they draw, from the numbers they are given."""

from __future__ import annotations

import numpy as np
from PIL import Image

from mnist_lightning import plots


def test_curves_plot_each_value_at_its_own_epoch():
    """Validation every 2nd epoch: its points sit at epochs 2 and 4, not 1 and 2."""
    series = {
        "loss/train": {1: 0.5, 2: 0.3, 3: 0.25, 4: 0.2},
        "loss/val": {2: 0.35, 4: 0.3},
        "accuracy/train": {1: 0.8, 2: 0.9},
    }
    figure = plots.curves_figure(series)
    loss, accuracy = figure.axes
    assert [line.get_label() for line in loss.lines] == ["training", "validation"]
    assert list(loss.lines[0].get_xdata()) == [1, 2, 3, 4]
    assert list(loss.lines[1].get_xdata()) == [2, 4] and list(loss.lines[1].get_ydata()) == [0.35, 0.3]
    assert list(accuracy.lines[0].get_ydata()) == [0.8, 0.9]
    assert [ax.get_ylabel() for ax in figure.axes] == ["loss", "accuracy"]
    assert all(tick == int(tick) for tick in loss.get_xticks())  # whole epochs only
    assert loss.lines[1].get_marker() == "o"  # few points: each one marked


def test_the_confusion_thumbnail_fits_tensorboards_image_card(tmp_path):
    path = plots.save(plots.confusion_thumbnail(np.diag(np.arange(900, 1000, 10))), tmp_path / "thumb.png")
    with Image.open(path) as image:
        assert max(image.size) <= 480


def test_the_confusion_matrix_shows_counts_and_recall(tmp_path):
    cm = np.diag(np.arange(1, 11)) + np.eye(10, k=1, dtype=int)
    figure = plots.confusion_figure(cm)
    counts, recall = (ax.texts for ax in figure.axes[:2])
    assert [t.get_text() for t in counts[:2]] == ["1", "1"]  # row 0: one right, one read as 1
    assert [t.get_text() for t in recall[:2]] == ["0.50", "0.50"]
    path = plots.save(figure, tmp_path / "cm.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 600


def test_the_digit_grid_has_a_caption_per_digit():
    images = np.zeros((10, 28, 28), np.uint8)
    figure = plots.digits_figure(images, [f"digit {i}" for i in range(10)], "ten", columns=4)
    assert len(figure.axes) == 12  # 3 rows of 4
    assert [ax.get_title() for ax in figure.axes[:10]] == [f"digit {i}" for i in range(10)]
    assert figure.axes[11].get_title() == ""
