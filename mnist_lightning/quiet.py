"""What Lightning prints that a user of this package can neither use nor act on, left out."""

from __future__ import annotations

import logging
import warnings


class QuietLightning(logging.Filter):
    """Drops advertisements for Lightning's cloud services, and the note that the Trainer
    already has a summary callback (ours, LayerSummary). Matched by their first words, so
    anything else Lightning says shows."""

    NOISE = ("💡 Tip: For seamless cloud", "Trainer already configured with model summary callbacks")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOISE)


class HardwareLines(logging.Filter):
    """Drops the Trainer's "GPU available / TPU available" lines, for commands whose results
    do not depend on the hardware they ran on (evaluations, predict, export, serve)."""

    LINES = ("GPU available:", "TPU available:", "HPU available:")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.LINES)


RANK_ZERO_LOGGER = "lightning.pytorch.utilities.rank_zero"
_FILTER = QuietLightning()  # one instance, so that installing it again is a no-op


def install() -> None:
    """Adds the filter to the logger Lightning's rank_zero_info writes to, and a warnings filter."""
    logging.getLogger(RANK_ZERO_LOGGER).addFilter(_FILTER)
    # Lightning 2.6 builds torch's deprecated LeafSpec in every CombinedLoader, which
    # torch 2.15 warns about once a run: nothing a user can act on.
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
