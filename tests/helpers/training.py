"""A Lightning Trainer for in-process tests."""

from __future__ import annotations

from typing import Any

import lightning as L


def bare_trainer(**kwargs: Any) -> L.Trainer:
    """A Trainer that writes and prints nothing of its own (no logger, checkpoints, progress bar or
    summary) unless kwargs ask for it."""
    quiet = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return L.Trainer(**{**quiet, **kwargs})
