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

No socket, and in fast mode (the default here) no thread: the port drives
the twin itself, in the caller's thread (:class:`emulator.transport.MemoryPort`).
:meth:`Serial.write` hands the bytes to the twin at the simulated time of now
(a command the DUT can answer at once is answered inside ``write``);
:meth:`Serial.read` and ``in_waiting`` process what is due by now and, while
nothing is there, wait until the next simulated event is due (or another
thread writes). With ``speed=realtime`` or a factor the twin runs its loop in
a thread of its own instead, so that every line reaches the host at its wall
time even while the model computes. Either way simulated time follows wall
time while the board is idle, whether or not the host is reading. The port
has no file descriptor (``fileno()`` is not supported).
"""
from __future__ import annotations

import math
import threading
import time
import urllib.parse

from serial.serialutil import PortNotOpenError, SerialBase, SerialException, Timeout

from ..config import TwinConfig
from ..errors import TinytwinError
from ..transport import MemoryPort

_lock = threading.Lock()
_benches: dict[str, "_Instance"] = {}


class _Instance:
    """One in-process board: its bench, and who drives its twin now (the
    ports of one instance may be used from several threads; a writer wakes a
    waiting reader)."""

    def __init__(self, bench):
        self.bench = bench
        self.lock = threading.Lock()
        self.driving = threading.Condition(self.lock)
        self.waiting = 0  # readers waiting on `driving`
        #: not fast: the twin's own loop runs in a thread (started by the
        #: first opener, once its port is attached)
        self.threaded = not bench.twin.speed.is_fast


def _bench_for(url: str):
    try:
        cfg, handler = TwinConfig.from_url(url)
    except TinytwinError as exc:  # an unknown or bad option: one message listing the valid ones
        raise SerialException(str(exc)) from None
    parts = urllib.parse.urlsplit(url)
    opts = {k: v for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != "instance"}
    key = handler.get("instance") or f"{cfg.model}?{urllib.parse.urlencode(sorted(opts.items()))}"
    with _lock:
        inst = _benches.get(key)
        if inst is None:
            from ..benches.dut import build_dut_bench

            try:
                inst = _benches[key] = _Instance(build_dut_bench(cfg))
            except TinytwinError as exc:  # ModelError etc.: one clear message
                raise SerialException(str(exc)) from None
        return inst


def shutdown_all() -> None:
    """Stop every in-process twin (tests call this at the end)."""
    with _lock:
        for inst in _benches.values():
            if inst.threaded:  # its thread may be waiting to hand bytes over
                inst.bench.twin.close()
            else:
                with inst.driving:
                    inst.bench.twin.close()
        _benches.clear()


class Serial(SerialBase):
    """A pyserial port connected to an in-process twin (see the module)."""

    def open(self) -> None:
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise SerialException("Port is already open.")
        inst = self._inst = _bench_for(self._port)
        bench = self._bench = inst.bench
        twin = self._twin = bench.twin
        self._driving = inst.driving
        self._lock = inst.lock
        self._host = MemoryPort("url", self._baudrate, arrived=inst.driving if inst.threaded else None)
        # a new board's first opener is there from power-on and sees the boot
        # banner; a later one finds the board as it is now
        if not inst.threaded:
            with self._lock:
                twin.pump()
                bench.bridge.attach(self._host)
        elif twin._thread is None:
            bench.bridge.attach(self._host)
            twin.start()
        else:
            twin.call_soon(lambda host=self._host: bench.bridge.attach(host))
        self.is_open = True

    def _reconfigure_port(self, force_update: bool = False) -> None:
        if getattr(self, "_host", None) is not None:
            self._host.baud = self._baudrate

    def close(self) -> None:
        if self.is_open:
            self.is_open = False
            if self._inst.threaded:
                self._twin.call_soon(lambda host=self._host: self._twin.remove_port(host))
            else:
                with self._lock:
                    self._twin.remove_port(self._host)

    def from_url(self, url: str) -> str:
        return url

    def _pump(self) -> None:
        """Process what is due by now (holding ``_lock``; in a threaded
        twin its loop does it)."""
        if not self._inst.threaded:
            self._twin.pump()

    @property
    def in_waiting(self) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        with self._lock:
            self._pump()
            return len(self._host.received)

    def read(self, size: int = 1) -> bytes:
        if not self.is_open:
            raise PortNotOpenError()
        host = self._host
        twin = self._twin
        threaded = self._inst.threaded
        with self._lock:
            if not threaded:
                twin.pump()
            if len(host.received) >= size:  # the usual case: no waiting
                return host.take(size)
            timeout = Timeout(self._timeout)
            while True:
                if not threaded:
                    twin.pump()
                if len(host.received) >= size or timeout.expired():
                    break
                wait = math.inf if threaded else twin.wait_s()
                if self._timeout is not None:
                    wait = min(wait, timeout.time_left())
                if wait > 0:
                    self._inst.waiting += 1
                    try:
                        self._driving.wait(None if math.isinf(wait) else wait)
                    finally:
                        self._inst.waiting -= 1
            return host.take(size)

    def write(self, data) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        data = bytes(data)
        if self._inst.threaded:
            self._twin.call_soon(lambda: self._twin.host_input(self._host, data))
            return len(data)
        with self._lock:
            self._twin.pump()  # what was due before now happens first
            self._twin.host_input(self._host, data)
            if self._inst.waiting:
                self._driving.notify_all()
        return len(data)

    def reset_input_buffer(self) -> None:
        if not self.is_open:
            raise PortNotOpenError()
        with self._lock:
            self._pump()
            self._host.received.clear()

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
