"""The actions the IO manager cores ask for (see :mod:`emulator.core` for the
convention), the receive buffers they keep, and the constants both boards
share. Pure: no clock, no I/O."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..clib import strtol_value
from ..core import Hang

#: the host side of both IO managers (USB-serial bridge / ST-LINK VCP)
HOST_BAUD = 115200
#: the DUT side at power-up (the reference firmware's energy-mode baud)
DUT_BAUD = 9600


# --------------------------------------------------------------------------
# actions


@dataclass(frozen=True)
class ToHost:
    """Transmit these bytes to the host."""

    data: bytes


@dataclass(frozen=True)
class ToDut:
    """Transmit these bytes to the DUT (a passthrough command plus ``%``)."""

    data: bytes


@dataclass(frozen=True)
class SetDutBaud:
    """Configure the DUT-side UART for this baud."""

    baud: int


@dataclass(frozen=True)
class AwaitDut:
    """The firmware now waits for the DUT's answer, relaying its lines until
    one equals ``until`` (informational: the core keeps that state)."""

    until: bytes


@dataclass(frozen=True)
class Pulse:
    """Drive an output pin low for ``us`` microseconds (the CPU busy-waits)."""

    pin: str
    us: float


@dataclass(frozen=True)
class Restart:
    """The board resets itself (e.g. ``NVIC_SystemReset``): everything in
    flight is lost; it runs again after ``boot_us``."""

    reason: str
    boot_us: float



Action = ToHost | ToDut | SetDutBaud | AwaitDut | Pulse | Restart | Hang


class BoundedQueue:
    """A receive buffer that keeps at most ``capacity`` bytes; bytes that
    arrive when it is full are lost (and counted), as with a UART ring buffer
    or a ThreadX queue written with ``TX_NO_WAIT``."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._q: deque[int] = deque()
        self.lost = 0

    def put(self, data: bytes) -> int:
        room = self.capacity - len(self._q)
        keep = data[: max(0, room)]
        self._q.extend(keep)
        lost = len(data) - len(keep)
        self.lost += lost
        return lost

    def get(self) -> int | None:
        return self._q.popleft() if self._q else None

    def clear(self) -> None:
        self._q.clear()

    def __len__(self) -> int:
        return len(self._q)


def c_atoi16(s: bytes | None) -> int:
    """avr-libc ``atoi`` (16-bit ``int``, no saturation: the value wraps)."""
    v = strtol_value(s)
    v &= 0xFFFF
    return v - 0x10000 if v >= 0x8000 else v


