"""The serial link to a DUT: commands out, lines in, everything logged.

A :class:`DutLink` opens any pyserial port (a device path, ``socket://``,
``rfc2217://``, ``tinytwin://`` ...), sends one command at a time (the
reference firmware reads its UART without a buffer while busy, so a host must
never send before ``m-ready``) and returns the lines of the answer. Every
line in either direction goes to the wire log with a timestamp.

Timeouts: each command has a limit for the wait between two lines of the
answer; the long silent stretches of ``infer`` (warmups, the timed loop) get
their own limit from the expected inference time (see :meth:`DutLink.infer`).
A timeout raises :class:`DeviceTimeout` naming the command and the port.
"""
from __future__ import annotations

import functools
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, TextIO

from .errors import DeviceError, DeviceTimeout
from .lines import SerialLines
from .protocol import BOOT_LINES

READY = "m-ready"
#: baud rates tried in turn when none is given: the reference firmware's
#: (115200; 921600 for ad01)
AUTO_BAUDS = (115200, 921600)
#: longest one inference may take before anything is known about the model
FIRST_INFERENCE_LIMIT_S = 120.0
#: how long the first resync at each candidate baud waits for 'm-ready': a running
#: board answers within milliseconds (one byte each way at 115200, a USB
#: virtual COM port's few ms of latency); one still booting is caught by the
#: second pass, which waits the full --timeout at each baud
AUTO_BAUD_WAIT_S = 0.25
#: what a resynchronisation sends (then the terminator)
SYNC_COMMAND = "name"


class WireLog:
    """``log.txt``: every line exchanged, with seconds since the start.

    Format, one line each (as the EEMBC runner's log): ``SSSSS.mmm who: text``
    with ``who`` = ``host`` (sent to the DUT, with its ``%``), ``dut`` (received),
    ``runner`` (what the runner did or decided).

    The file is written through a large buffer that reaches the disk at least
    every :attr:`FLUSH_S` seconds and when the log is closed (at the end of
    every run, whatever happened), so a run of millions of commands does not
    spend its time in ``write()`` calls.
    """

    FLUSH_S = 1.0

    def __init__(self, path: Path | None, echo: TextIO | None = None, before_echo: Callable[[], None] | None = None):
        self.t0 = time.monotonic()
        self._fh = open(path, "w", encoding="utf-8", buffering=1 << 20) if path is not None else None
        self._flushed = self.t0
        self._ms = -1
        self._stamp = ""
        self.echo = echo
        self.before_echo = before_echo

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def stamp(self) -> str:
        ms = int((time.monotonic() - self.t0) * 1000 + 0.5)
        return f"{ms // 1000:05d}.{ms % 1000:03d}"

    def _stamp_at(self, now: float) -> str:
        """``SSSSS.mmm`` for ``now`` (made once per millisecond)."""
        ms = int((now - self.t0) * 1000 + 0.5)
        if ms != self._ms:
            self._ms = ms
            self._stamp = f"{ms // 1000:05d}.{ms % 1000:03d}"
        return self._stamp

    def _put(self, text: str, now: float) -> None:
        """Append ``text`` (whole lines) to the file."""
        fh = self._fh
        if fh is not None:
            fh.write(text)
            if now - self._flushed > self.FLUSH_S:
                self._flushed = now
                fh.flush()

    def write(self, who: str, text: str) -> None:
        now = time.monotonic()
        ms = int((now - self.t0) * 1000 + 0.5)
        if ms != self._ms:
            self._ms = ms
            self._stamp = f"{ms // 1000:05d}.{ms % 1000:03d}"
        fh = self._fh
        if fh is not None:
            fh.write(f"{self._stamp} {who}: {text}\n")
            if now - self._flushed > self.FLUSH_S:
                self._flushed = now
                fh.flush()
        if self.echo is not None and who in ("host", "dut"):
            if self.before_echo is not None:
                self.before_echo()
            print(f"{self._stamp} {who}: {text}", file=self.echo, flush=True)

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            self._flushed = time.monotonic()

    def append_file(self, path: Path) -> None:
        """Copy another log (a shard's) into this one as it is."""
        if self._fh is None:
            return
        self._fh.flush()
        with open(path, "rb") as src:
            shutil.copyfileobj(src, self._fh.buffer, 1 << 20)
        self._fh.buffer.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


#: how long a device path that does not exist is waited for (``--port-wait``):
#: a twin or board started a moment ago makes its port a little later, and a
#: board unplugged mid-run may come back
PORT_APPEAR_S = 10.0


def _say(text: str) -> None:
    print(f"tinytwin run: {text}", file=sys.stderr, flush=True)


def wait_for_path(port: str, wait_s: float = PORT_APPEAR_S, notify: Callable[[str], None] = _say) -> None:
    """Wait (at most ``wait_s``) for the device path ``port`` to exist; a
    pyserial URL (``socket://``, ``tinytwin://`` ...) is not waited for.
    Says once that it waits; raises :class:`DeviceError` if it never appears."""
    if "://" in port or os.path.exists(port):
        return
    notify(f"waiting up to {wait_s:g} s for {port} to appear")
    deadline = time.monotonic() + wait_s
    while not os.path.exists(port):
        if time.monotonic() >= deadline:
            what = "a dangling link" if os.path.islink(port) else "no such file"
            raise DeviceError(
                f"cannot open port {port}: {what} after {wait_s:g} s; start the twin or connect the board "
                f"first (e.g. tinytwin dut --model kws01 --link {port}), or check the path"
            )
        time.sleep(0.05)


def port_holder(port: str) -> str | None:
    """Who holds an exclusive lock (flock, as pyserial's ``exclusive=True``
    takes) on the device ``port``: ``process PID (command line)``, or
    ``None`` when it cannot be told (not Linux, or no lock)."""
    try:
        st = os.stat(port)
        dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            locks = fh.read().splitlines()
    except OSError:
        return None
    for line in locks:
        f = line.split()
        if len(f) >= 6 and f[1] == "FLOCK" and f[5] == dev and f[4].isdigit():
            pid = int(f[4])
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                cmd = ""
            return f"process {pid}" + (f" ({cmd})" if cmd else "")
    return None


def open_serial(port: str, baud: int, *, wait_s: float = PORT_APPEAR_S, notify: Callable[[str], None] = _say):
    """Open ``port`` (device path or pyserial URL) at ``baud``, exclusively:
    a second runner on the same port is told who holds it. A device path
    that does not exist yet is waited for (``wait_s``)."""
    import serial

    if port.startswith("tinytwin://"):
        try:
            import emulator.urlhandler  # noqa: F401  (registers the scheme)
        except ImportError:
            raise DeviceError(f"cannot open {port}: the tinytwin emulator package is not installed") from None
    wait_for_path(port, wait_s, notify)
    try:
        return serial.serial_for_url(port, baudrate=baud, timeout=0.05, write_timeout=10, exclusive=True)
    except (serial.SerialException, OSError, ValueError) as exc:
        if "exclusively lock" in str(exc):
            holder = port_holder(port) or "another program"
            raise DeviceError(
                f"port {port} is in use by {holder}: wait for it to finish or stop it (one runner per port)"
            ) from None
        raise DeviceError(f"cannot open port {port}: {exc}") from None


class DutLink(SerialLines):
    def __init__(
        self,
        port: str,
        log: WireLog,
        *,
        baud: int | None = None,
        timeout: float = 5.0,
        on_wait: Callable[[], None] | None = None,
        port_wait_s: float = PORT_APPEAR_S,
        opener=None,
    ):
        self.port = port
        self.log = log
        self.bauds = (baud,) if baud else AUTO_BAUDS
        self.baud: int | None = None
        self.timeout = float(timeout)
        self.on_wait = on_wait
        self._opener = opener or functools.partial(open_serial, wait_s=port_wait_s)
        self._ser = None
        self._buf = bytearray()
        #: longest single inference seen so far (µs), for infer timeouts
        self.inference_us: float | None = None
        #: the DUT's boot banner went by since :meth:`take_reboot` (it reset)
        self.reboot_seen = False

    # -- port ---------------------------------------------------------------------
    def open(self) -> None:
        """Open the port and synchronise with the firmware.

        With a given baud: two ``%`` tries of ``timeout`` each. Guessing the
        baud: one quick try (:data:`AUTO_BAUD_WAIT_S`) at each candidate, then one try of
        ``timeout`` at each (a board still booting answers late)."""
        if len(self.bauds) == 1:
            plan = [(self.bauds[0], self.timeout, 2)]
        else:
            quick = min(self.timeout, AUTO_BAUD_WAIT_S)
            plan = [(b, quick, 1) for b in self.bauds] + [(b, self.timeout, 1) for b in self.bauds]
        for baud, wait, attempts in plan:
            if self._ser is None:
                self.log.write("runner", f"opening {self.port} at {baud} baud")
                self._ser = self._opener(self.port, baud)
                self.baud = baud
            elif self.baud != baud:  # the port stays open; only its baud changes
                self.log.write("runner", f"switching {self.port} to {baud} baud")
                try:
                    self._ser.baudrate = baud
                except (ValueError, OSError) as exc:
                    raise DeviceError(f"cannot set {self.port} to {baud} baud: {exc}") from None
                self.baud = baud
                self._buf.clear()
                try:
                    self._ser.reset_input_buffer()
                except Exception:
                    pass
            if self.sync(wait, attempts):
                return
        self.close()
        raise DeviceTimeout(
            f"port {self.port} does not answer: no 'm-ready' to '{SYNC_COMMAND}%' within {self.timeout:g} s "
            f"at {' or '.join(str(b) for b in self.bauds)} baud "
            "(is the DUT powered, the port right, the baud right? see --baud, --timeout)"
        )

    def close(self) -> None:
        self._close_port()
        self._buf.clear()

    # -- bytes and lines (runner.lines.SerialLines) ------------------------------------
    def _io_error(self, message: str) -> Exception:
        return DeviceError(message)

    def _log_sent(self, text: str) -> None:
        self.log.write("host", text)

    def _log_line(self, line: str) -> None:
        self.log.write("dut", line)
        if line in BOOT_LINES:
            self.reboot_seen = True

    def take_reboot(self) -> bool:
        """Whether the DUT's boot banner went by since the last call."""
        seen, self.reboot_seen = self.reboot_seen, False
        return seen

    def reopen(self, wait_s: float) -> bool:
        """The port failed (unplugged): wait up to ``wait_s`` for it to come
        back at the same path, open it again at the same baud and
        resynchronise. False if it did not come back."""
        self._close_port()
        self._buf.clear()
        deadline = time.monotonic() + wait_s
        self.log.write("runner", f"waiting up to {wait_s:g} s for {self.port} to come back")
        while time.monotonic() < deadline:
            if "://" in self.port or os.path.exists(self.port):
                try:
                    self._ser = self._opener(self.port, self.baud or self.bauds[0])
                except DeviceError:
                    self._ser = None
                if self._ser is not None:
                    self.log.write("runner", f"{self.port} is back; resynchronising")
                    if self.sync():
                        return True
                    self._close_port()
            time.sleep(0.1)
        return False

    def _after_drain(self) -> None:
        if self._buf:
            self.log.write("runner", f"discarding partial line {bytes(self._buf)!r}")
            self._buf.clear()

    def sync(self, timeout: float | None = None, attempts: int = 2) -> bool:
        """Resynchronise: ``name%`` ends whatever partial command the firmware
        holds (it answers an error, then ``m-ready``) or is answered as itself;
        wait for ``m-ready`` then for silence. Not a bare ``%``: with nothing
        pending that is an empty command, undefined behaviour in the reference
        parser (``firmware_api_spec/dut_protocol.md`` section 5.10)."""
        for _ in range(attempts):
            self._write(SYNC_COMMAND + "%")
            deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
            while True:
                line = self._read_line(deadline)
                if line is None:
                    break
                if line.endswith(READY):
                    self.drain()
                    return True
        return False

    # -- commands -----------------------------------------------------------------------
    def command(self, cmd: str, timeout: float | None = None, gap: Callable[[str], float | None] | None = None) -> list[str]:
        """Send ``cmd%`` and return the answer's lines up to (without) ``m-ready``.

        ``timeout`` is the longest wait for each next line; ``gap(line)`` may
        return a longer wait for the line following ``line``.
        """
        if self._ser is None:
            raise DeviceError(f"port {self.port} is not open")
        limit = self.timeout if timeout is None else timeout
        self._write(cmd + "%")
        lines: list[str] = []
        wait = limit
        start = time.monotonic()
        while True:
            line = self._read_line(time.monotonic() + wait)
            if line is None:
                got = f"; last line received: {lines[-1]!r}" if lines else "; nothing received"
                raise DeviceTimeout(
                    f"timeout: no answer to '{cmd[:40]}{'...' if len(cmd) > 40 else ''}%' on {self.port} "
                    f"within {wait:.1f} s (after {time.monotonic() - start:.1f} s{got})"
                )
            if line.endswith(READY):
                if line != READY:
                    lines.append(line[: -len(READY)])
                return lines
            lines.append(line)
            wait = limit
            if gap is not None:
                g = gap(line)
                if g is not None:
                    wait = max(limit, g)

    def infer(self, iterations: int, warmups: int) -> list[str]:
        """``infer N W``; the silent stretches are allowed twice their expected
        duration plus the timeout (before any inference time is known: up to
        2 minutes an inference)."""
        per = (self.inference_us / 1e6) if self.inference_us else FIRST_INFERENCE_LIMIT_S

        def gap(line: str) -> float | None:
            if line.startswith("m-warmup-start-") and warmups:
                return self.timeout + 2 * per * warmups
            if line.startswith("m-lap-us-") and not getattr(gap, "seen_lap", False):
                gap.seen_lap = True
                return self.timeout + 2 * per * iterations
            return None

        return self.command(f"infer {iterations} {warmups}", gap=gap)

    def note_inference(self, elapsed_us: int, iterations: int) -> None:
        per = elapsed_us / max(1, iterations)
        if per > 0 and math.isfinite(per):
            self.inference_us = max(self.inference_us or 0.0, per)
