"""Errors the CLI reports in one line, without a traceback, each with its own exit code."""
from __future__ import annotations

CONFIG_EXIT, DATA_EXIT, PREREQUISITE_EXIT = 2, 3, 4


class DataError(RuntimeError):
    """Missing, corrupt or unusable data; the message says what and where to put it."""


class CheckpointError(DataError):
    """A checkpoint or model file that cannot be read (truncated, not ours, or unsafe)."""


class PrerequisiteError(RuntimeError):
    """Something an earlier command or the machine must provide is missing (a checkpoint, a
    device); the message names the command that makes it."""
