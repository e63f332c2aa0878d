"""An in-process host port (:class:`MemoryPort`): no file descriptor, no
thread; the host lives in the twin's own process and calls the twin itself
(the ``tinytwin://`` pyserial URL, :mod:`emulator.urlhandler`)."""
from __future__ import annotations

from .base import HostPort


class MemoryPort(HostPort):
    """A host port whose host is in this process: what the device sends
    collects in :attr:`received`; the host hands its bytes over with
    :meth:`emulator.sim.Twin.host_input`. :attr:`baud` is the baud rate the
    host configured (honoured like a pty's)."""

    def __init__(self, name: str, baud: int | None = None):
        super().__init__(name, None)
        self.baud = baud
        self.received = bytearray()

    def host_baud(self) -> int | None:
        return self.baud

    def wants_write(self) -> bool:
        return False

    def write_to_host(self, data: bytes) -> None:
        if not data or self.closed:
            return
        received = self.received
        received += data
        self.tx_count += len(data)
        if len(received) > self.max_pending:
            del received[: len(received) - self.max_pending]

    def take(self, size: int | None = None) -> bytes:
        """Up to ``size`` bytes of what the device sent (all: ``None``)."""
        received = self.received
        if size is None or size >= len(received):
            data = bytes(received)
            received.clear()
        else:
            data = bytes(received[:size])
            del received[:size]
        return data

    def close(self) -> None:
        self.closed = True
