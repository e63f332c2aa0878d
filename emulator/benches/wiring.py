"""How a bench puts its boards in reach of the host: one :class:`Plug` per
USB cable (a pseudo-terminal, or a Unix socket for the JS220's driver link),
each with its :class:`~emulator.control.tap.PortTap`, and the wire that lets
the DUT's own USB listen to the UART an interface board relays."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from ..control.bench import Plug
from ..control.tap import LineDrop, PortTap, Trace
from ..hw.uart import SerialEndpoint
from ..sim import Twin
from ..transport import PtyPort, UnixListener

#: what ends a host command on each kind of port (for the taps' counts)
TERMINATORS = {"dut": b"%", "io": b"%", "emon": b"\n", "js220": b"\n"}


def make_tap(name: str, *, trace: Optional[Trace] = None, drops=(), seed: int = 0) -> PortTap:
    """The tap of port ``name`` (``--drop-line`` rules apply to the DUT's and
    the interface board's lines)."""
    rules = [d for d in drops if isinstance(d, LineDrop)] if name in ("dut", "io") else []
    return PortTap(name, TERMINATORS.get(name, b"\n"), trace=trace, drops=rules, seed=seed)


def pty_plug(name: str, board: str, attach: Callable[[PtyPort], object], tap: PortTap, *,
             link: Optional[Path] = None, baud: Optional[int] = None,
             power: Optional[Callable[[bool], None]] = None) -> Plug:
    """A board reached through a pseudo-terminal (made now)."""

    def make(tap: PortTap) -> PtyPort:
        port = PtyPort(name, link=link, initial_baud=baud)
        port.hook = tap
        attach(port)
        return port

    plug = Plug(name, board, make, tap, power=power, baud=baud)
    plug.port = make(tap)
    return plug


def unix_plug(name: str, board: str, twin: Twin, attach: Callable[[object], object], tap: PortTap, path: Path, *,
              power: Optional[Callable[[bool], None]] = None) -> Plug:
    """A board whose host link is a Unix socket at ``path`` (every
    connection gets ``tap``)."""

    def make(tap: PortTap) -> UnixListener:
        def accept(port) -> None:
            port.hook = tap
            attach(port)

        listener = UnixListener(name, path, accept)
        twin.add_port(listener)
        return listener

    plug = Plug(name, board, make, tap, power=power)
    plug.port = make(tap)
    return plug


def tee_uart(twin: Twin, sender: SerialEndpoint, listener: SerialEndpoint) -> None:
    """Let ``listener`` also receive what ``sender`` transmits (two receivers
    on one TX line: the DUT's own ST-LINK VCP and an interface board both
    listening to the DUT's UART), at the end of each transmission."""

    def tap(direction: str, data: bytes, now: int) -> None:
        if direction == "tx":
            baud = sender.baud
            twin.schedule(sender.tx_idle_at() - twin.now, lambda: listener._receive(data, baud))

    sender.tap = tap


__all__ = ["TERMINATORS", "make_tap", "pty_plug", "tee_uart", "unix_plug"]
