"""Host-facing transports: how a host program reaches a simulated serial port.

All of them are thin: they move bytes between a file descriptor and the
twin's simulation (:class:`emulator.sim.HostPort`), nothing else.

* :class:`PtyPort`: a real pseudo-terminal; any program opens its slave
  device by path (we also symlink it at a stable path such as
  ``/tmp/tinytwin/dut``). We keep only the master open: a host closing and
  reopening the port finds the same device, with the state a board keeps and
  the line settings it left, and what the device prints while no host has
  the port open is dropped, as when nobody listens on a board's USB serial
  port. The baud rate the host configures on the slave is visible to us and
  is honoured (a mismatch garbles the bytes, as on a real UART).
* :class:`TcpListener`: a TCP server (reachable with pyserial's
  ``socket://HOST:PORT``); each connection is a port.
* :class:`SocketPort`: one end of a socket pair, used by the in-process
  ``tinytwin://`` pyserial URL handler.

:class:`HostBridge` is the board's USB-serial bridge (the ST-LINK virtual COM
port on a NUCLEO): it runs a UART at the host's baud towards the device.
"""
from __future__ import annotations

import fcntl
import functools
import os
import select
import socket
import struct
import termios
import tty
from pathlib import Path

from .sim import HostPort, Twin
from .uart import SerialEndpoint, connect

# Linux: struct termios2 via TCGETS2 gives the real c_ispeed/c_ospeed
_TCGETS2 = 0x802C542A
_BOTHER = 0o010000

_SPEEDS = {getattr(termios, name): int(name[1:]) for name in dir(termios) if name.startswith("B") and name[1:].isdigit()}
_CODES = {v: k for k, v in _SPEEDS.items()}
_U32 = struct.Struct("I")


class TransportError(Exception):
    """A transport could not be set up; the message says what to do."""


_TERMIOS2 = bytes(64)  # struct termios2 (44 bytes), with room to spare


def tty_baud(fd: int) -> int | None:
    """The output baud rate configured on a tty."""
    try:
        buf = fcntl.ioctl(fd, _TCGETS2, _TERMIOS2)
        cflag = _U32.unpack_from(buf, 8)[0]
        ospeed = _U32.unpack_from(buf, 40)[0]
        if cflag & _BOTHER or ospeed:
            return ospeed
    except OSError:
        pass
    try:
        attrs = termios.tcgetattr(fd)
    except termios.error:
        return None
    return _SPEEDS.get(attrs[5])


def set_tty_baud(fd: int, baud: int) -> None:
    code = _CODES.get(baud)
    if code is None:
        return
    attrs = termios.tcgetattr(fd)
    attrs[4] = attrs[5] = code
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


class PtyPort(HostPort):
    """A pseudo-terminal; the host opens :attr:`device` (or the symlink).

    We do not keep the slave open ourselves: the master then reports a hang-up
    whenever no host has the port open, and what the device prints meanwhile is
    dropped, as a board's output is when nobody listens on its USB serial
    port (otherwise the next program to open the port would read stale
    lines). The line settings (raw mode, baud) persist between openings, and
    the baud the host sets is read through the master.
    """

    def __init__(self, name: str, link: str | os.PathLike | None = None, initial_baud: int | None = None):
        master, slave = os.openpty()
        tty.setraw(slave)
        tty.setraw(master)
        if initial_baud:
            set_tty_baud(slave, initial_baud)
        self.device = os.ttyname(slave)
        os.close(slave)
        super().__init__(name, master)
        self.dropped = 0
        # asked before every write: does a host have the slave open?
        self._hup_poll = select.poll()
        self._hup_poll.register(master, select.POLLIN)
        self.link: Path | None = None
        if link is not None:
            try:
                self.link = make_link(Path(link), self.device)
            except TransportError:
                os.close(master)
                raise

    def host_connected(self) -> bool:
        try:
            for _, ev in self._hup_poll.poll(0):
                if ev & select.POLLHUP:
                    return False
            return True
        except (OSError, ValueError):
            return False

    def host_baud(self) -> int | None:
        return tty_baud(self.fd)

    def on_read_error(self) -> bytes | None:
        # EIO: no host has the slave open right now; the port stays
        return b""

    def write_to_host(self, data: bytes) -> None:
        if not self.host_connected():
            self.dropped += len(data)
            return
        super().write_to_host(data)

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        if self.link is not None:
            try:
                if self.link.is_symlink() and os.readlink(self.link) == self.device:
                    self.link.unlink()
            except OSError:
                pass


def make_link(link: Path, target: str) -> Path:
    """Create ``link`` -> ``target``, replacing a stale symlink; fail clearly."""
    link = link.expanduser()
    try:
        link.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TransportError(
            f"cannot create the directory {link.parent} for --link: {exc.strerror}; "
            "choose a --link path in a writable directory (e.g. /tmp/tinytwin/dut)"
        ) from None
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise TransportError(
            f"--link {link} exists and is not a symlink; remove it or choose another path "
            "(e.g. /tmp/tinytwin/dut)"
        )
    try:
        link.symlink_to(target)
    except OSError as exc:
        raise TransportError(
            f"cannot create the symlink {link}: {exc.strerror}; choose a --link path in a writable directory"
        ) from None
    return link


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


class TcpListener(HostPort):
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
        sock.setblocking(False)
        self.sock = sock
        self.bridge = bridge
        self.address = sock.getsockname()[:2]
        super().__init__(name, sock.fileno())

    def read_available(self) -> bytes | None:
        try:
            conn, addr = self.sock.accept()
        except BlockingIOError:
            return b""
        except OSError:
            return None
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.bridge.attach(SocketPort(f"{self.name}:{addr[1]}", conn))
        return b""

    def wants_write(self) -> bool:
        return False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.sock.close()


class HostBridge:
    """The USB-serial bridge between host ports and a device's UART.

    It transmits what the host sends at the host's configured baud (when the
    transport knows it; otherwise at the device's baud) and receives what the
    device sends at that same baud, so a baud mismatch garbles both ways.
    """

    def __init__(self, twin: Twin, device: SerialEndpoint, name: str, *, honour_host_baud: bool = True):
        self.twin = twin
        self.device = device
        self.name = name
        self.honour_host_baud = honour_host_baud
        self.endpoint = SerialEndpoint(twin, f"{name}.bridge", device.baud, receiver=self._to_host)
        connect(self.endpoint, device)
        self.endpoint.before_rx = self._sync_rx_baud
        self.ports: list[HostPort] = []
        self._warned_baud: int | None = None

    def attach(self, port: HostPort) -> HostPort:
        port.on_host_bytes = functools.partial(self._from_host, port)
        self.ports.append(port)
        self.twin.add_port(port)
        return port

    def _sync_baud(self, port: HostPort) -> None:
        baud = port.host_baud() if self.honour_host_baud else None
        baud = baud or self.device.baud
        if baud != self.endpoint.baud:
            self.endpoint.baud = baud
        if baud != self.device.baud and self._warned_baud != baud:
            self._warned_baud = baud
            self.twin.log(
                f"{self.name}: the host set {baud} baud but the device runs at {self.device.baud}: "
                "bytes are garbled as on a real UART (open the port at the device's baud)"
            )

    def _sync_rx_baud(self) -> None:
        # the most recently attached host end that is still there
        for p in reversed(self.ports):
            if not p.closed:
                self._sync_baud(p)
                return

    def _from_host(self, port: HostPort, data: bytes) -> None:
        self._sync_baud(port)
        self.endpoint.send(data)

    def _to_host(self, data: bytes) -> None:
        ports = self.ports
        for p in ports:
            if p.closed:
                ports = self.ports = [p for p in ports if not p.closed]
                break
        for p in ports:
            p.write_to_host(data)
