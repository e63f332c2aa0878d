"""Errors the runner reports to the user (message only, no traceback)."""
from __future__ import annotations

from emulator.errors import TinytwinError


class RunnerError(TinytwinError):
    """A run cannot go on; the message says what, where, and what to do."""


class DatasetError(RunnerError):
    """A problem with the dataset folder (file, line)."""


class DeviceError(RunnerError):
    """The device did not answer, or answered wrongly."""


class DeviceTimeout(DeviceError):
    """No (complete) answer within the allowed time."""
