"""Line-oriented I/O on an open pyserial port, shared by the runner's device clients.

Ports are opened (and configured: baud, exclusive lock) with pyserial. A
device path (pyserial's POSIX ``Serial``: a board's ``/dev/ttyACM0``, a twin's
pty) is then read and written through its file descriptor directly: a
``poll`` (after a short spin of ``poll(0)`` looks, :attr:`SerialLines.SPIN_S`)
and one non-blocking ``read`` of whatever has arrived, lines split here, no
per-byte calls; writes go to the fd at once. Any other pyserial port
(``socket://``, ``rfc2217://``, ``tinytwin://`` ...) is used through
pyserial's ``in_waiting``/``read``/``write``.
"""
from __future__ import annotations

import os
import select
import threading
import time
from typing import Callable

import serial

try:
    from termios import error as _TtyError  # a tty that went away mid-flush (tcdrain: EIO)
except ImportError:  # pragma: no cover - not POSIX
    class _TtyError(Exception):
        pass

#: how long one wait may block before ``on_wait`` is called again (s)
WAIT_TICK_S = 0.2


def raw_fd(ser) -> int | None:
    """The file descriptor of a pyserial POSIX port (non-blocking, as
    pyserial keeps it), or ``None`` for any other kind of port."""
    try:
        from serial.serialposix import Serial as PosixSerial
    except ImportError:  # pragma: no cover - not POSIX
        return None
    if isinstance(ser, PosixSerial) and getattr(ser, "fd", None) is not None:
        return ser.fd
    return None


def _ms(seconds: float) -> int:
    """A wait for poll(): whole milliseconds, rounded up, not negative."""
    return max(0, int(seconds * 1000 + 0.999))


def _spin(poll: Callable[[int], list], seconds: float) -> bool:
    """Look for input with ``poll(0)`` for up to ``seconds`` without sleeping,
    yielding the CPU between looks; whether something arrived."""
    monotonic = time.monotonic
    sched_yield = os.sched_yield
    until = monotonic() + seconds
    while monotonic() < until:
        sched_yield()
        if poll(0):
            return True
    return False


class SerialLines:
    """Writing commands and reading lines on ``self._ser``.

    A subclass sets ``self._ser`` (an open pyserial port or ``None``),
    ``self._buf`` (a bytearray), ``self.port`` and ``self.on_wait`` (called
    about every 0.2 s while waiting, or ``None``), and says how to log and how
    to fail through the hooks below.
    """

    _ser = None
    _buf: bytearray
    port: str
    on_wait: Callable[[], None] | None
    _fd_of: object = None  # the port _fd belongs to
    _fd: int | None = None
    _poller: "select.poll | None" = None

    # -- hooks ---------------------------------------------------------------------
    def _port_label(self) -> str:
        """How messages name the port."""
        return self.port

    def _not_open_message(self) -> str:
        return f"port {self.port} is not open"

    def _io_error(self, message: str) -> Exception:
        raise NotImplementedError

    def _log_sent(self, text: str) -> None:
        pass

    def _log_line(self, line: str) -> None:
        pass

    def _drained(self, line: str) -> None:
        """A line read by :meth:`drain` (logged already)."""

    def _after_drain(self) -> None:
        """What :meth:`drain` does with a partial line left in the buffer
        (default: keep it)."""

    # -- I/O -----------------------------------------------------------------------
    def _close_port(self) -> None:
        """Close the port if open (a port that fails to close is gone anyway)."""
        if self._ser is not None:
            try:
                self._ser.close()
            except Exception:
                pass
            self._ser = None
        self._fd_of = self._fd = self._poller = None

    def _port_fd(self) -> int | None:
        """The raw fd of the open port (``None``: use pyserial's calls)."""
        ser = self._ser
        if ser is not self._fd_of:
            self._fd_of = ser
            self._fd = raw_fd(ser)
            self._poller = None
            if self._fd is not None:
                self._poller = select.poll()
                self._poller.register(self._fd, select.POLLIN)
        return self._fd

    #: what a failed read or write adds to its message: the usual cause
    GONE_HINT = " (the port went away: was the board unplugged or reset its USB? plug it in and run again)"

    def _write(self, text: str) -> None:
        if self._ser is None:
            raise self._io_error(self._not_open_message())
        self._log_sent(text)
        data = text.encode("ascii")
        fd = self._port_fd()
        try:
            if fd is not None:
                self._write_fd(fd, data)
            else:
                self._ser.write(data)
                self._ser.flush()
        except (serial.SerialException, OSError, _TtyError) as exc:
            raise self._gone(f"writing {text!r} to {self._port_label()} failed: {exc}{self.GONE_HINT}") from None

    def _gone(self, message: str) -> Exception:
        """The error for a port that failed under a read or write."""
        exc = self._io_error(message)
        exc.port_gone = True
        return exc

    def _write_fd(self, fd: int, data: bytes) -> None:
        """All of ``data`` to the non-blocking ``fd``, waiting for room at most
        the port's write timeout."""
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            n = 0
        if n == len(data):  # the usual case: a command fits at once
            return
        view = memoryview(data)[n:]
        limit = self._ser.write_timeout
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise serial.SerialTimeoutException("write timeout")
            select.select([], [fd], [], left)
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                n = 0
            view = view[n:]
            if not view:
                return

    def _fill(self, wait: float) -> None:
        """Add what the port has to the buffer, waiting up to ``wait`` s for
        something to arrive."""
        fd = self._port_fd()
        try:
            if fd is None:
                waiting = self._ser.in_waiting
                if waiting <= 0 and wait <= 0:
                    return
                data = self._ser.read(waiting if waiting > 0 else 1)  # waits up to the port's timeout
            else:
                poll = self._poller.poll
                spin = self._spin_s() if wait > 0 else 0.0
                if spin:
                    if not poll(0) and not _spin(poll, min(spin, wait)) and not poll(_ms(wait - spin)):
                        return
                elif not poll(_ms(wait)):
                    return
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    return
                if not data:
                    raise serial.SerialException("the device reports data ready but returned none (disconnected?)")
        except (serial.SerialException, OSError, _TtyError) as exc:
            raise self._gone(f"reading from {self._port_label()} failed: {exc}{self.GONE_HINT}") from None
        if data:
            self._buf += data

    #: how long a wait on a device path first looks for the answer without
    #: sleeping (s), yielding the CPU between looks. A twin in fast mode
    #: answers a command within tens of µs, and a process asleep in poll()
    #: pays the kernel's wake-up on top of each of the millions of round trips
    #: of an ad01 accuracy run: one runner and one twin take 0.78x the wall
    #: time; two pairs on two cores, bound by CPU, gain nothing measurable
    #: (benchmarks/spin_tradeoff.py --compare runner-spin). A board answers
    #: in milliseconds: the look costs at most this much CPU per wait, and the
    #: same code runs against both.
    SPIN_S = 0.0002

    def _spin_s(self) -> float:
        """How long this wait spins: :attr:`SPIN_S` in a process whose only
        thread this is, else 0 (a spin would hold the GIL from a twin or a
        test on another thread)."""
        return self.SPIN_S if threading.active_count() == 1 else 0.0

    def _read_line(self, deadline: float) -> str | None:
        """The next non-empty line (without line end, CR or NUL), or ``None``
        at ``deadline`` (monotonic)."""
        buf = self._buf
        last_wait = None
        while True:
            nl = buf.find(b"\n")
            if nl >= 0:
                raw = buf[:nl]
                del buf[: nl + 1]
                line = raw.translate(None, b"\r\0").decode("ascii", "backslashreplace").strip()
                if not line:
                    continue
                self._log_line(line)
                return line
            now = time.monotonic()
            if last_wait is None:
                last_wait = now
            if now >= deadline:
                return None
            if self.on_wait is not None and now - last_wait > WAIT_TICK_S:
                last_wait = now
                self.on_wait()
            self._fill(min(deadline - now, WAIT_TICK_S))

    def _read_now(self) -> None:
        """Add to the buffer what has already arrived (no waiting)."""
        self._fill(0.0)

    def drain(self, quiet: float = 0.1, limit: float = 2.0) -> list[str]:
        """Lines that arrive until the port has been quiet for ``quiet`` s (at
        most ``limit`` s); each also goes to :meth:`_drained`."""
        lines = []
        end = time.monotonic() + limit
        while time.monotonic() < end:
            line = self._read_line(min(end, time.monotonic() + quiet))
            if line is None:
                break
            lines.append(line)
            self._drained(line)
        self._after_drain()
        return lines
