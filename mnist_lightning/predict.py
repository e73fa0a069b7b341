"""predictions.csv for `mnist-lightning predict`, written by Lightning's prediction-writer hook."""

from __future__ import annotations

import csv
import io
import os
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from jsonargparse.typing import ClosedUnitInterval
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from mnist_lightning.errors import UserError
from mnist_lightning.files import refuse_overwriting_inputs, write_text


class CSVPredictionWriter(BasePredictionWriter):
    """Where predict writes its table.

    One row per image: its path (or test index and label), prediction, confidence, and
    whether to doubt the answer.

    Args:
        output: The CSV file; replaced atomically, an older file stays intact on failure.
            `-` writes the CSV to stdout (and the summary to stderr); a device or FIFO is written into.
        threshold: Answers with a confidence below this are marked `doubtful` and counted
            in the summary: look at those pictures yourself.
    """

    def __init__(self, output: str = "predictions.csv", threshold: ClosedUnitInterval = 0.9) -> None:
        super().__init__(write_interval="epoch")
        if not 0 <= threshold <= 1:
            raise UserError(f"--prediction_writer.threshold must lie between 0 and 1, got {threshold}")
        self.output = output
        self.threshold = threshold
        self.summary = ""  # printed at teardown, once the progress bar has finished its line

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Refuses, before predicting, an output that is one of the pictures (the data module has found them)."""
        if self.output != "-":
            pictures = getattr(trainer.datamodule, "predict_files", [])
            refuse_overwriting_inputs({"--prediction_writer.output": self.output}, pictures)

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Sequence[Any], batch_indices: Sequence[Any]
    ) -> None:
        # Under DDP every rank predicted a share; rank 0 writes them all, in the images' order.
        probabilities = trainer.datamodule.in_dataset_order(torch.cat(list(predictions)).float().cpu())
        if not trainer.is_global_zero:
            return
        header, rows = trainer.datamodule.predict_table()
        if len(rows) != len(probabilities):  # a row must never be paired with another image's prediction
            raise RuntimeError(f"{len(probabilities)} predictions for {len(rows)} images")
        confidence, predicted = probabilities.max(dim=1)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([*header, "prediction", "confidence", "doubtful"])
        for row, p, c in zip(rows, predicted.tolist(), confidence.tolist()):
            writer.writerow([*row, p, f"{c:.4f}", "true" if c < self.threshold else "false"])
        summary = summarize(predicted, confidence, header, rows, self.output, self.threshold)
        if self.output == "-":  # the CSV alone on stdout, for a pipe
            sys.stdout.write(buffer.getvalue().encode(errors="surrogateescape").decode(errors="replace"))
            self.summary = summary
            return
        try:
            write_text(self.output, buffer.getvalue())
        except OSError as err:
            raise UserError(
                f"cannot write {err.filename or self.output}: {err.strerror}. Free space, or choose "
                "another file with --prediction_writer.output FILE; an older file there is intact"
            ) from err
        self.summary = summary

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.summary:
            print(self.summary, file=sys.stderr if self.output == "-" else sys.stdout, flush=True)
            self.summary = ""


def summarize(
    predicted: Tensor, confidence: Tensor, header: list[str], rows: list[list[Any]], output: str, threshold: float
) -> str:
    counts = Counter(predicted.tolist())
    doubtful = confidence < threshold
    lines = [
        f"Predicted {len(predicted)} image(s) -> {output}",
        "  digits: " + ", ".join(f"{d}: {counts[d]}" for d in range(10) if counts[d]),
        f"  mean confidence {confidence.mean():.3f}; doubtful (confidence below {threshold:g}): {int(doubtful.sum())}",
    ]
    if header == ["index", "label"]:
        right = predicted == torch.tensor([label for _, label in rows])
        lines.append(
            f"  accuracy on the MNIST test set: {right.float().mean():.4f}"
            + "".join(
                f"; {name} {part.sum()}: {right[part].float().mean():.4f}"
                for name, part in (("sure", ~doubtful), ("doubtful", doubtful))
                if part.any()
            )
        )
    else:
        for (path,), p, c in list(zip(rows, predicted.tolist(), confidence.tolist()))[:10]:
            shown = os.fsencode(path).decode(errors="replace")  # a name that is not UTF-8 prints too
            lines.append(f"  {shown}: {p} ({c:.2f}{', doubtful' if c < threshold else ''})")
        if len(rows) > 10:
            lines.append(f"  ... {len(rows) - 10} more in {output}")
    return "\n".join(lines)
