"""The one exception type for mistakes a user can fix."""


class UserError(Exception):
    """Bad input or setup: the CLI prints the message alone, without a traceback."""
