"""pyserial URL handler: ``tinytwin://<model>?<options>``.

An in-process twin reached through pyserial, with no pty and no subprocess
(the fastest way to drive a twin from tests)::

    import serial, emulator.urlhandler  # registers the scheme
    port = serial.serial_for_url("tinytwin://kws01?models_dir=/path/models&speed=fast", baudrate=115200)

The options are those of ``tinytwin dut``, spelled with ``_`` for ``-``
(:data:`emulator.config.URL_OPTIONS`): ``models_dir``, ``backend``,
``io_profile`` (for a model given as a path), ``speed`` (``fast``, the
default here, ``realtime`` or a factor), ``baud`` (the DUT's), ``energy``
(``1``: the energy-mode firmware), ``timer_start_us``, ``profile`` (a timing
profile JSON), ``clock_mhz``, ``ignore_host_baud`` (``1``), ``firmware_variant`` (a
firmware variant of :data:`emulator.dut.core.VARIANTS`, for ``tinytwin
conform``); plus ``instance``
(a name: opening the same instance again reattaches to the same running
board, with its state, as reopening a serial port does). An unknown option is
an error that lists the valid ones.

The baud rate the host sets on this port is honoured like a real UART's: a
mismatch with the DUT's baud garbles the bytes.
"""
from __future__ import annotations

import select
import socket
import threading
import time
import urllib.parse

import serial
from serial.serialutil import PortNotOpenError, SerialBase, SerialException, Timeout

from ..config import TwinConfig
from ..errors import TinytwinError
from ..transport import SocketPort

_lock = threading.Lock()
_benches: dict[str, object] = {}


def _bench_for(url: str):
    try:
        cfg, handler = TwinConfig.from_url(url)
    except TinytwinError as exc:  # an unknown or bad option: one message listing the valid ones
        raise SerialException(str(exc)) from None
    parts = urllib.parse.urlsplit(url)
    opts = {k: v for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != "instance"}
    key = handler.get("instance") or f"{cfg.model}?{urllib.parse.urlencode(sorted(opts.items()))}"
    with _lock:
        bench = _benches.get(key)
        if bench is None:
            from ..benches.dut import build_dut_bench

            try:
                bench = build_dut_bench(cfg)
            except TinytwinError as exc:  # ModelError etc.: one clear message
                raise SerialException(str(exc)) from None
            _benches[key] = bench
            return bench, True
        return bench, False


def shutdown_all() -> None:
    """Stop every in-process twin (tests call this at the end)."""
    with _lock:
        for bench in _benches.values():
            bench.twin.close()
        _benches.clear()


class Serial(SerialBase):
    """A pyserial port connected to an in-process twin."""

    def open(self) -> None:
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise SerialException("Port is already open.")
        bench, new = _bench_for(self._port)
        ours, theirs = socket.socketpair()
        self._sock = ours
        self._twin_port = SocketPort("url", theirs)
        self._twin_port.baud = self._baudrate
        if new:
            # the first opener is there from power-on and sees the boot banner
            bench.bridge.attach(self._twin_port)
            bench.twin.start()
        else:
            bench.twin.call_soon(lambda: bench.bridge.attach(self._twin_port))
        self._bench = bench
        self.is_open = True
        self._buf = bytearray()

    def _reconfigure_port(self, force_update: bool = False) -> None:
        if getattr(self, "_twin_port", None) is not None:
            self._twin_port.baud = self._baudrate

    def close(self) -> None:
        if self.is_open:
            self.is_open = False
            try:
                self._sock.close()
            except OSError:
                pass

    def from_url(self, url: str) -> str:
        return url

    @property
    def in_waiting(self) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        self._fill(0)
        return len(self._buf)

    def _fill(self, timeout: float | None) -> None:
        ready, _, _ = select.select([self._sock], [], [], timeout)
        if ready:
            try:
                data = self._sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                raise SerialException("the twin closed the connection")
            self._buf += data

    def read(self, size: int = 1) -> bytes:
        if not self.is_open:
            raise PortNotOpenError()
        timeout = Timeout(self._timeout)
        while len(self._buf) < size:
            left = None if self._timeout is None else max(0.0, timeout.time_left())
            self._fill(left)
            if timeout.expired():
                break
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def write(self, data) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        data = bytes(data)
        self._sock.sendall(data)
        return len(data)

    def reset_input_buffer(self) -> None:
        if not self.is_open:
            raise PortNotOpenError()
        self._buf.clear()
        while True:
            ready, _, _ = select.select([self._sock], [], [], 0)
            if not ready:
                break
            if not self._sock.recv(65536):
                break

    def reset_output_buffer(self) -> None:
        pass

    def flush(self) -> None:
        pass

    def send_break(self, duration: float = 0.25) -> None:
        time.sleep(duration)

    def _update_break_state(self) -> None:
        pass

    def _update_rts_state(self) -> None:
        pass

    def _update_dtr_state(self) -> None:
        pass

    @property
    def cts(self) -> bool:
        return True

    @property
    def dsr(self) -> bool:
        return True

    @property
    def ri(self) -> bool:
        return False

    @property
    def cd(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._sock.fileno()
