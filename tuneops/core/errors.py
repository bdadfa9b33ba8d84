"""Errors a user can cause and fix.

Anything raised as a ``UserError`` reaches the terminal as one line naming what to fix, never as
a traceback. Everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input, bad config or a missing tool: the message says what to fix."""

    exit_code = 2


class MissingToolError(UserError):
    """A tool or credential the step needs is not available on this machine."""

    exit_code = 3
