"""An in-process host port (:class:`MemoryPort`): no file descriptor; the host
lives in the twin's own process (the ``tinytwin://`` pyserial URL,
:mod:`emulator.urlhandler`)."""
from __future__ import annotations

import threading

from .base import HostPort


class MemoryPort(HostPort):
    """A host port whose host is in this process: what the device sends
    collects in :attr:`received`; the host hands its bytes over with
    :meth:`emulator.sim.Twin.host_input`. :attr:`baud` is the baud rate the
    host configured (honoured like a pty's).

    ``arrived``: when the twin runs in a thread of its own, a condition that
    guards :attr:`received` and is notified when bytes arrive (the host
    waits on it); without it, the host drives the twin in its own thread.
    """

    def __init__(self, name: str, baud: int | None = None, arrived: threading.Condition | None = None):
        super().__init__(name, None)
        self.baud = baud
        self.received = bytearray()
        self.arrived = arrived

    def host_baud(self) -> int | None:
        return self.baud

    def wants_write(self) -> bool:
        return False

    def emit(self, data: bytes) -> None:
        # past the hook (write_to_host applies it): kept for the host
        if not data or self.closed:
            return
        if self.arrived is None:
            self._keep(data)
            return
        with self.arrived:
            self._keep(data)
            self.arrived.notify_all()

    def _keep(self, data: bytes) -> None:
        received = self.received
        received += data
        self.tx_count += len(data)
        if len(received) > self.max_pending:
            del received[: len(received) - self.max_pending]

    def take(self, size: int | None = None) -> bytes:
        """Up to ``size`` bytes of what the device sent (all: ``None``);
        with ``arrived``, call it holding that condition."""
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
