"""The one convention every protocol core follows (h11's shape).

A *protocol core* is one board's firmware (or an instrument's) as a pure state
machine: no SimPy, no clock, no file descriptors, no threads.

* Bytes come in with ``feed(data)`` (``feed_host`` / ``feed_dut`` /
  ``feed_audio`` on a board with several inputs). Feeding only buffers: it
  never acts.
* ``step()`` does the firmware's next unit of work and returns it as a list of
  actions, or ``None`` when the firmware waits for more input. A caller loops
  ``while (actions := core.step()) is not None``.
* Actions are frozen dataclasses defined next to their core; the only action
  every core shares is :class:`Hang`. Actions say *what* the firmware does
  (print these bytes, pulse this pin, run the model); the *device* that
  carries them out on the twin's clock decides *when*, and how long it takes.

The cores: :class:`emulator.dut.core.DutCore` (EEMBC DUT firmware),
:class:`emulator.ioman.arduino.ArduinoIoCore`, :class:`emulator.ioman.h573.H573IoCore`,
:class:`emulator.emon.lpm01a.Lpm01aCore`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence


@dataclass(frozen=True)
class Hang:
    """The firmware stops (a HardFault, an ``abort()``): it answers nothing
    more until it is reset or power-cycled."""

    reason: str


class ProtocolCore(Protocol):
    """What a device may rely on (single-input cores; multi-input cores name
    their ``feed_*`` methods after the input)."""

    def feed(self, data: bytes) -> None: ...

    def step(self) -> Sequence[object] | None: ...
