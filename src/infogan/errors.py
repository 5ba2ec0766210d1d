"""Errors the CLI reports in one line, without a traceback."""
from __future__ import annotations


class DataError(RuntimeError):
    """Missing, corrupt or unusable data; the message says what and where to put it."""
