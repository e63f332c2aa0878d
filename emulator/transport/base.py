"""What every host-facing port of a twin is: :class:`HostPort`.

A host port is a file descriptor on the host side of the simulation (a pty
master, a socket). The reactor polls it; bytes that arrive are handed to the
simulated board part attached to it (:class:`emulator.hw.usb_bridge.HostBridge`
or an instrument's USB port) at the simulated time of their arrival, and bytes
the board sends are queued here and flushed without blocking the simulation.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Protocol

from ..errors import TinytwinError

if TYPE_CHECKING:  # pragma: no cover
    from ..sim import Twin


class TransportError(TinytwinError):
    """A transport could not be set up; the message says what to do."""


class PortHook(Protocol):
    """What sits on a host port's wire (:attr:`HostPort.hook`): a trace, the
    faults of :mod:`emulator.control`. Both methods run in the simulation
    thread, at the simulated time the bytes cross the port, and return the
    bytes that go on (``b""``: none now; a hook that delays bytes hands them
    on later with :meth:`HostPort.deliver` / :meth:`HostPort.emit`)."""

    def from_host(self, port: "HostPort", data: bytes) -> bytes: ...

    def to_host(self, port: "HostPort", data: bytes) -> bytes: ...

    def passive(self) -> bool:
        """Whether bytes now cross unchanged, at once, and without setting
        anything off (a trace at most): the twin's direct path is taken only
        while every hook of its ports is passive (see :mod:`emulator.sim`)."""
        ...


class HostPort:
    """A host-facing file descriptor of a twin (pty master, socket, ...).

    The twin's run loop polls :attr:`fd`; bytes read from it are handed to
    :attr:`on_host_bytes` (called inside the simulation, at the simulated time
    of arrival). Bytes for the host are queued with :meth:`write_to_host` and
    flushed without blocking the simulation; nothing is dropped while the
    host end is open.

    Subclasses (see :mod:`emulator.transport`) deal with the specifics: what
    a read error means (host closed the pty, client disconnected), what baud
    rate the host configured. A port without fd (``fd = None``,
    :class:`~emulator.transport.memory.MemoryPort`) is not polled: its host is
    in this process and hands its bytes over itself.
    """

    #: the one tap/fault hook on this port's wire (None: bytes pass untouched)
    hook: PortHook | None = None

    #: the attached device's express lane (e.g. :class:`emulator.dut.express.DbExpress`),
    #: called by the twin as ``express(port, data, at)`` with what the host
    #: sent and the simulated time it arrives, before :attr:`on_host_bytes`;
    #: it returns ``False``, having changed nothing, unless it has carried
    #: the bytes out exactly as the device's layers would
    express: "Callable[[HostPort, bytes, int], bool] | None" = None

    def __init__(self, name: str, fd: int | None):
        self.name = name
        self.fd = fd
        self.on_host_bytes = None
        self._out = bytearray()
        self.twin: "Twin | None" = None
        self.closed = False
        self.rx_count = 0
        self.tx_count = 0
        self.hup_until = 0.0  # wall time until which a hung-up fd is not polled
        #: the twin's turn in which its poll last saw the host end open
        self.open_turn = -1

    # -- the device's handler for host bytes, through the hook ---------------
    @property
    def on_host_bytes(self) -> Callable[[bytes], None] | None:
        """The attached device's handler for host bytes (called inside the
        simulation at their arrival time), behind :attr:`hook` when set."""
        handler = self._on_host_bytes
        if handler is None or self.hook is None:
            return handler
        return self._hooked

    @on_host_bytes.setter
    def on_host_bytes(self, handler: Callable[[bytes], None] | None) -> None:
        self._on_host_bytes = handler

    def _hooked(self, data: bytes) -> None:
        hook = self.hook
        if hook is not None:
            data = hook.from_host(self, data)
        self.deliver(data)

    def deliver(self, data: bytes) -> None:
        """Hand host bytes to the device, past the hook."""
        if data and self._on_host_bytes is not None:
            self._on_host_bytes(data)

    # -- called by the twin loop -------------------------------------------
    def read_available(self) -> bytes | None:
        """Read what the host sent. ``b''`` means nothing now; ``None`` that
        the fd is gone for good (the twin then forgets this port)."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return b""
        except OSError:
            return self.on_read_error()
        if not data:
            return self.on_eof()
        return data

    def on_read_error(self) -> bytes | None:
        return None

    def on_eof(self) -> bytes | None:
        return None

    def wants_write(self) -> bool:
        return bool(self._out)

    def _send(self, data: bytearray) -> int:
        """Write what the fd takes now (non-blocking); returns the count."""
        return os.write(self.fd, data)

    def flush(self) -> None:
        while self._out:
            try:
                n = self._send(self._out)
            except BlockingIOError:
                return
            except OSError:
                # Host end not there (pty closed): a real board's output is
                # lost when no one listens on the USB CDC port.
                self._out.clear()
                return
            self.tx_count += n
            del self._out[:n]

    # -- called by devices (in the simulation thread) ----------------------
    #: output kept for a host that does not read (beyond it, the oldest bytes
    #: are lost, as a board's output is when nobody listens)
    max_pending = 1 << 20

    def write_to_host(self, data: bytes) -> None:
        if not data or self.closed:
            return
        hook = self.hook
        if hook is not None:
            data = hook.to_host(self, data)
        self.emit(data)

    def emit(self, data: bytes) -> None:
        """Queue bytes for the host, past the hook. While the twin's loop
        advances the simulation, consecutive output to the same port is
        written together: when another port's output comes, or at the end of
        the turn (:meth:`Twin._advance`). A UART delivers a byte at a time, and
        a USB serial bridge, too, hands the host its bytes in packets; the
        ports' writes keep the order of the simulation. Elsewhere (the express
        lane, a twin without a loop) output is written at once."""
        if not data or self.closed:
            return
        twin = self.twin
        if twin is not None and twin.holding:
            held = twin.held
            if held is not self:
                if held is not None:
                    held.emit_held()
                twin.held = self
            self._out += data
            return
        if not self._out:  # the usual case: the fd takes it all at once
            try:
                n = self._send(data)
            except BlockingIOError:
                n = 0
            except OSError:
                return  # the host end is not there: lost, as in flush()
            self.tx_count += n
            if n == len(data):
                return
            data = data[n:]
        self._out += data
        self.emit_held()

    def emit_held(self) -> None:
        """Write what is queued, as :meth:`emit` held it (what the fd does not
        take now waits for it to be writable; beyond :attr:`max_pending`, the
        oldest is lost)."""
        self.flush()
        if len(self._out) > self.max_pending:
            del self._out[: len(self._out) - self.max_pending]

    def host_baud(self) -> int | None:
        """The baud rate the host configured on its end, if knowable."""
        return None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            os.close(self.fd)
        except OSError:
            pass

