"""The one exception type for mistakes a user can fix, and the switch that shows their tracebacks."""

import os


class UserError(Exception):
    """Bad input or setup: the CLI prints the message alone, without a traceback."""


def debugging() -> bool:
    """Whether MNIST_LIGHTNING_DEBUG asks for the full traceback instead of the one line."""
    return os.environ.get("MNIST_LIGHTNING_DEBUG", "").lower() not in ("", "0", "false", "no")
