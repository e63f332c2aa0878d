"""Socket transports: :class:`TcpListener` (a TCP server reachable with
pyserial's ``socket://HOST:PORT``; each connection is a port) and
:class:`SocketPort` (a connected socket, also one end of the socket pair the
in-process ``tinytwin://`` URL handler uses)."""
from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from .base import HostPort, TransportError

if TYPE_CHECKING:  # pragma: no cover
    from ..hw.usb_bridge import HostBridge


class SocketPort(HostPort):
    """A connected socket (TCP client or socketpair end)."""

    def __init__(self, name: str, sock: socket.socket):
        sock.setblocking(False)
        self.sock = sock
        super().__init__(name, sock.fileno())
        self.baud: int | None = None  # set by an in-process client

    def host_baud(self) -> int | None:
        return self.baud

    def read_available(self) -> bytes | None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return b""
        except OSError:
            return None
        return data if data else None

    def _send(self, data: bytearray) -> int:
        return self.sock.send(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


class SocketListener(HostPort):
    """A listening socket; each accepted connection becomes a
    :class:`SocketPort` handed to ``attach`` (which adds it to the twin)."""

    def __init__(self, name: str, sock: socket.socket, attach):
        sock.setblocking(False)
        self.sock = sock
        self.attach = attach
        self.accepted = 0
        super().__init__(name, sock.fileno())

    def read_available(self) -> bytes | None:
        try:
            conn, addr = self.sock.accept()
        except BlockingIOError:
            return b""
        except OSError:
            return None
        self.accepted += 1
        self.attach(self.connection(conn, addr))
        return b""

    def connection(self, conn: socket.socket, addr) -> SocketPort:
        return SocketPort(f"{self.name}#{self.accepted}", conn)

    def wants_write(self) -> bool:
        return False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.sock.close()


class TcpListener(SocketListener):
    """A listening TCP socket; accepted connections become :class:`SocketPort`
    attached to the same bridge."""

    def __init__(self, name: str, host: str, port: int, bridge: "HostBridge"):
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise TransportError(
                f"cannot listen on {host}:{port}: {exc.strerror}; choose another --tcp HOST:PORT"
            ) from None
        sock.listen(4)
        self.bridge = bridge
        self.address = sock.getsockname()[:2]
        super().__init__(name, sock, bridge.attach)

    def connection(self, conn: socket.socket, addr) -> SocketPort:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return SocketPort(f"{self.name}:{addr[1]}", conn)
