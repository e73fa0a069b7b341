"""Lightning's info lines that tell a user of this package nothing, dropped from its log."""

from __future__ import annotations

import logging


class QuietLightning(logging.Filter):
    """Drops advertisements for Lightning's cloud services, and the note that the Trainer
    already has a summary callback (ours, ExactSummary). Matched by their first words, so
    anything else Lightning says shows."""

    NOISE = ("💡 Tip: For seamless cloud", "Trainer already configured with model summary callbacks")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOISE)


_FILTER = QuietLightning()  # one instance, so that installing it again is a no-op


def install() -> None:
    """Adds the filter to the logger Lightning's rank_zero_info writes to."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_FILTER)
