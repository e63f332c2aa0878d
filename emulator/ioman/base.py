"""What every IO manager model shares: the actions a protocol core asks for,
and the SimPy device that carries them out in the twin's clock.

A protocol core (:mod:`emulator.ioman.arduino`, :mod:`emulator.ioman.h573`)
is a pure state machine. Bytes are handed to it with ``feed_host()`` /
``feed_dut()`` (they land in the board's receive buffers, which are bounded
as on the board); :meth:`step` then does the next piece of work the firmware
would do and returns it as a list of :data:`Action` s, or ``None`` when the
firmware has nothing to do until more bytes (or a timestamp edge) arrive.

:class:`IoManagerDevice` runs a core in simulated time: it transmits towards
the host over a 115200-baud UART (the board's USB-serial bridge is a
:class:`emulator.transport.HostBridge` attached by the rig) and towards the
DUT over a UART at the baud the board believes the DUT uses, waiting for
transmissions as the firmware does (blocking HAL transmits on the H573,
Arduino ring buffers that only block when full).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable

from ..clib import strtol_value
from ..hw.gpio import Pin
from ..sim import MS, US, Twin
from ..hw.uart import SerialEndpoint

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


@dataclass(frozen=True)
class Hang:
    """The firmware stops (an unhandled C++ exception ends in ``abort()``):
    it answers nothing until it is power-cycled."""

    reason: str


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


# --------------------------------------------------------------------------
# the device


class IoManagerDevice:
    """An IO manager board in the twin.

    ``core`` is the firmware's protocol core; ``host_tx_buffer`` /
    ``dut_tx_buffer`` are how many characters the firmware can queue for
    transmission before a print blocks (0: every transmit blocks until the
    last character has left, as ``HAL_UART_Transmit`` does).
    """

    kind = "ioman"

    def __init__(
        self,
        twin: Twin,
        core,
        *,
        name: str = "io",
        host_tx_buffer: int = 0,
        dut_tx_buffer: int = 0,
        boot_us: float = 0.0,
        pins: Iterable[str] = (),
    ):
        self.twin = twin
        self.env = twin.env
        self.core = core
        self.name = name
        self.host_tx_buffer = host_tx_buffer
        self.dut_tx_buffer = dut_tx_buffer
        self.boot_us = boot_us
        self.host_uart = SerialEndpoint(twin, f"{name}.host", HOST_BAUD, receiver=self._on_host)
        self.dut_uart = SerialEndpoint(twin, f"{name}.dut", DUT_BAUD, receiver=self._on_dut)
        # The firmware takes characters one at a time as they arrive; its
        # receive buffers only fill up while it is busy. Deliver every
        # character at its own arrival time so those bounds mean what they
        # mean on the board.
        self.host_uart.per_byte = True
        self.dut_uart.per_byte = True
        #: output pins the firmware drives (name -> Pin)
        self.pins: dict[str, Pin] = {p: Pin(twin, f"{name}.{p}", level=1) for p in pins}
        self.running = False  # executing firmware (not booting, not hung)
        self.hung = False
        self.powered = False
        self.boots = 0
        self._epoch = 0
        self._wake = None
        self._boot_at = 0
        self._trace: list[Callable[[str, bytes, int], None]] = []
        twin.add_device(self)

    # -- wiring ------------------------------------------------------------------
    def connect_dut(self, dut_endpoint: SerialEndpoint) -> None:
        """Wire the board's DUT-side UART to the DUT's UART (TX<->RX)."""
        from ..hw.uart import connect

        connect(self.dut_uart, dut_endpoint)

    def micros(self) -> int:
        """µs since this board's firmware started (32-bit)."""
        return int((self.twin.now - self._boot_at) // US) & 0xFFFFFFFF

    # -- power ---------------------------------------------------------------------
    def power_on(self) -> None:
        """USB power arrives: the board boots."""
        if self.powered:
            return
        self.powered = True
        self._start(self.boot_us, reason="power-on")

    def power_cycle(self) -> None:
        """Unplug and replug the board (the way out of a hang)."""
        self.powered = False
        self.power_on()

    def _start(self, boot_us: float, reason: str) -> None:
        self._epoch += 1
        self.running = False
        self.hung = False
        self.core.reset()
        self.env.process(self._main(self._epoch, boot_us))

    # -- bytes in --------------------------------------------------------------------
    def _on_host(self, data: bytes) -> None:
        if not self.running:
            return  # booting or hung: the UART is not yet (or no longer) serviced
        self.core.feed_host(data)
        self._kick()

    def _on_dut(self, data: bytes) -> None:
        if not self.running:
            return
        self.core.feed_dut(data)
        self._kick()

    def _kick(self) -> None:
        ev, self._wake = self._wake, None
        if ev is not None and not ev.triggered:
            ev.succeed()

    # -- the firmware ------------------------------------------------------------------
    def _main(self, epoch: int, boot_us: float):
        twin = self.twin
        with twin.busy():
            if boot_us > 0:
                yield self.env.timeout(int(round(boot_us * US)))
        if epoch != self._epoch:
            return
        self._boot_at = twin.now
        self.boots += 1
        self.running = True
        for act in self.core.boot():
            yield from self._do(act, epoch)
            if epoch != self._epoch:
                return
        while epoch == self._epoch and self.running:
            actions = self.core.step()
            if actions is None:
                self._wake = self.env.event()
                yield self._wake
                continue
            for act in actions:
                yield from self._do(act, epoch)
                if epoch != self._epoch or not self.running:
                    return

    def _tx(self, uart: SerialEndpoint, data: bytes, buffered: int):
        if not data:
            return
        done = uart.send(data)
        if buffered <= 0:
            yield done
            return
        # the ring buffer holds `buffered` characters: the print returns once
        # everything but those has been shifted out
        wait = uart.tx_idle_at() - buffered * uart.char_time_ns - self.twin.now
        if wait > 0:
            yield self.env.timeout(int(round(wait)))

    def _do(self, act, epoch: int):
        if isinstance(act, ToHost):
            for fn in self._trace:
                fn("host", act.data, self.twin.now)
            yield from self._tx(self.host_uart, act.data, self.host_tx_buffer)
        elif isinstance(act, ToDut):
            for fn in self._trace:
                fn("dut", act.data, self.twin.now)
            yield from self._tx(self.dut_uart, act.data, self.dut_tx_buffer)
        elif isinstance(act, SetDutBaud):
            self.dut_uart.baud = int(act.baud)
        elif isinstance(act, AwaitDut):
            pass  # the core waits; step() returns None until DUT bytes come
        elif isinstance(act, Pulse):
            pin = self.pins.get(act.pin)
            with self.twin.busy():
                if pin is not None:
                    pin.set(0)
                yield self.env.timeout(int(round(act.us * US)))
                if pin is not None:
                    pin.set(1)
        elif isinstance(act, Restart):
            self.twin.log(f"{self.name}: restarting ({act.reason})")
            self._start(act.boot_us, reason=act.reason)
        elif isinstance(act, Hang):
            self.twin.log(f"{self.name}: the firmware stopped ({act.reason}); power-cycle it")
            self.running = False
            self.hung = True


__all__ = [
    "Action",
    "AwaitDut",
    "BoundedQueue",
    "DUT_BAUD",
    "HOST_BAUD",
    "Hang",
    "IoManagerDevice",
    "MS",
    "Pulse",
    "Restart",
    "SetDutBaud",
    "ToDut",
    "ToHost",
    "c_atoi16",
]
