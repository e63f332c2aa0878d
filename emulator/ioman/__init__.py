"""IO managers: the boards between the host and a DUT in energy mode.

* :mod:`.arduino`: the EEMBC io-manager (Arduino UNO, firmware 1.0.3), used
  with the EEMBC EnergyRunner;
* :mod:`.h573`: the MLCommons enhanced interface board (STM32H573I-DK), used
  by the mlcommons/tiny Python runner.

Each has a pure protocol core (actions in :mod:`.actions`) and a device on
the twin's clock (:mod:`.device`).
"""
from __future__ import annotations

from .arduino import ArduinoIoCore
from .device import ArduinoIoManager, H573IoManager, IoManagerDevice
from .h573 import H573IoCore

INTERFACES = {"arduino": ArduinoIoManager, "h573": H573IoManager}


def make_io_manager(kind: str, twin, **kwargs) -> IoManagerDevice:
    """Build the IO manager named ``kind`` (``arduino`` or ``h573``)."""
    try:
        cls = INTERFACES[kind]
    except KeyError:
        raise ValueError(f"unknown interface {kind!r}: choose one of {', '.join(INTERFACES)}") from None
    return cls(twin, **kwargs)


__all__ = [
    "ArduinoIoCore",
    "ArduinoIoManager",
    "H573IoCore",
    "H573IoManager",
    "INTERFACES",
    "IoManagerDevice",
    "make_io_manager",
]
