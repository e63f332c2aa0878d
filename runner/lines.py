"""Line-oriented I/O on an open pyserial port, shared by the runner's device clients."""
from __future__ import annotations

import time
from typing import Callable

try:
    from termios import error as _TtyError  # a tty that went away mid-flush (tcdrain: EIO)
except ImportError:  # pragma: no cover - not POSIX
    class _TtyError(Exception):
        pass


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

    # -- I/O -----------------------------------------------------------------------
    def _close_port(self) -> None:
        """Close the port if open (a port that fails to close is gone anyway)."""
        if self._ser is not None:
            try:
                self._ser.close()
            except Exception:
                pass
            self._ser = None

    #: what a failed read or write adds to its message: the usual cause
    GONE_HINT = " (the port went away: was the board unplugged or reset its USB? plug it in and run again)"

    def _write(self, text: str) -> None:
        import serial

        if self._ser is None:
            raise self._io_error(self._not_open_message())
        self._log_sent(text)
        try:
            self._ser.write(text.encode("ascii"))
            self._ser.flush()
        except (serial.SerialException, OSError, _TtyError) as exc:
            raise self._gone(f"writing {text!r} to {self._port_label()} failed: {exc}{self.GONE_HINT}") from None

    def _gone(self, message: str) -> Exception:
        """The error for a port that failed under a read or write."""
        exc = self._io_error(message)
        exc.port_gone = True
        return exc

    def _read_line(self, deadline: float) -> str | None:
        """The next non-empty line (without line end, CR or NUL), or ``None``
        at ``deadline`` (monotonic)."""
        import serial

        last_wait = time.monotonic()
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                raw = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                line = raw.replace(b"\r", b"").replace(b"\0", b"").decode("ascii", "backslashreplace").strip()
                if not line:
                    continue
                self._log_line(line)
                return line
            now = time.monotonic()
            if now >= deadline:
                return None
            if self.on_wait is not None and now - last_wait > 0.2:
                last_wait = now
                self.on_wait()
            try:
                waiting = self._ser.in_waiting
                data = self._ser.read(waiting if waiting > 0 else 1)
            except (serial.SerialException, OSError, _TtyError) as exc:
                raise self._gone(f"reading from {self._port_label()} failed: {exc}{self.GONE_HINT}") from None
            if data:
                self._buf += data
