"""Host side of the ST X-NUCLEO-LPM01A "PowerShield" (the energy monitor, EMON).

What a runner needs from the board, following its manual (UM2269, host
controlled mode) and what the runners' logs show:

* commands are ASCII lines ending in ``\\n``; every command is answered on a
  line ``PowerShield > ack <command>[ <data>]``, or ``PowerShield > error
  <command>`` followed by ``PowerShield > Error detail: <why>``;
* ``htc`` (host takes control) before anything else; then the acquisition
  settings: ``volt 1800m``, ``freq 1k``, ``output energy``, ``format
  ascii_dec``, ``acqtime 0`` (until ``stop``), ``trigsrc sw``, ``trigdelay
  0``, ``eventsrc d7 fal`` (report falling edges on D7, the DUT's timestamp
  GPIO); ``pwr on`` powers the DUT;
* after ``start`` the board streams, in ``ascii_dec``, one line per sample
  ``DDDD±EE`` (= DDDD x 10^±EE; with ``output energy`` the energy in J drawn
  during that sample period), plus metadata lines: ``TimeStamp: SSSs MMMms,
  buff NN%`` every 1000 samples (followed by a NUL byte), ``event N ris`` *before
  the sample in which a D7 edge happened* (N counts from 1), and, at the end
  of the acquisition, ``end``, the summary (``summary begin``, min, max,
  ``summary end``) and ``PowerShield > Acquisition completed``.

The stream never waits for the host, so :class:`Lpm01aClient` reads the port
in a background thread and parses as it reads (:class:`AsciiStream`: samples
go into a growing numpy array, whole blocks of sample lines are decoded at
once, so an acquisition of a million samples costs well under a second of
parsing). The main thread sends commands and waits for D7 events or replies.

Sample ``i`` covers ``[i/rate, (i+1)/rate)`` from the start of the
acquisition; an event reported before sample ``j`` happened during sample
``j``. The energy between two events at ``j0`` and ``j1`` is
``sum(samples[j0:j1])``: what mlcommons/tiny's runner computes (``main.py``);
the EnergyRunner picks its samples by sub-millisecond times, which can
differ by one sample at each edge. On the reference board's traces a
window's energy differs from the EnergyRunner's by up to 0.13 % on ad01's
0.1 s windows and up to 0.006 % on the others
(``tests/test_power_trace.py``)."""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import DeviceError, DeviceTimeout

PROMPT = "PowerShield > "
#: what the runners open the board's USB CDC port with (the board ignores it)
EMON_BAUD = 3686400
#: samples per second the runner asks for (the EnergyRunner's and mlcommons runner's rate)
SAMPLE_RATE_HZ = 1000
VOLTAGE_RANGE_V = (1.8, 3.3)


class EmonError(DeviceError):
    """The EMON refused a command, stopped streaming, or lost its port."""


# --------------------------------------------------------------------------
# the data stream


class _Growing:
    """A float64 array that grows by doubling (amortised O(1) appends)."""

    def __init__(self, capacity: int = 1 << 16):
        self._a = np.empty(capacity, dtype=np.float64)
        self.n = 0

    def extend(self, values: np.ndarray) -> None:
        k = len(values)
        if self.n + k > len(self._a):
            cap = len(self._a)
            while cap < self.n + k:
                cap *= 2
            a = np.empty(cap, dtype=np.float64)
            a[: self.n] = self._a[: self.n]
            self._a = a
        self._a[self.n : self.n + k] = values
        self.n += k

    def view(self) -> np.ndarray:
        return self._a[: self.n]


_SAMPLE_LINE = re.compile(rb"^\d{4}[+-]\d{2}$")
#: every line that is not exactly one sample (empty lines included)
_OTHER_LINE = re.compile(rb"^(?!\d{4}[+-]\d{2}$).*$", re.M)
_EVENT = re.compile(r"^event (\d+) (?:ris|fal)$")
_TIMESTAMP = re.compile(r"^TimeStamp: ?[ ><]?(\d{3,})s (\d{3})ms, buff (\d{2})%$")


def decode_sample(text: bytes) -> float:
    """One ``ascii_dec`` value: ``6409-07`` = 6409 x 10^-7."""
    exp = int(text[5:7])
    return int(text[:4]) * 10.0 ** (exp if text[4:5] == b"+" else -exp)


def _decode_block(seg: bytes) -> np.ndarray | None:
    """Decode sample lines ``DDDD±EE`` separated by ``\\n`` (no other lines);
    ``None`` if the block is not exactly that."""
    if not seg:
        return np.empty(0)
    if (len(seg) + 1) % 8:
        return None
    a = np.frombuffer(seg + b"\n", dtype=np.uint8).reshape(-1, 8)
    digits = a[:, [0, 1, 2, 3, 5, 6]]
    if (
        (digits < 48).any()
        or (digits > 57).any()
        or not np.isin(a[:, 4], (43, 45)).all()
        or (a[:, 7] != 10).any()
    ):
        return None
    d = a.astype(np.int64) - 48
    mant = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    exp = d[:, 5] * 10 + d[:, 6]
    exp = np.where(a[:, 4] == 45, -exp, exp)
    return mant * np.power(10.0, exp)


@dataclass
class Event:
    number: int  # the board's count (1, 2, ...)
    sample: int  # samples received before it: the edge happened during this sample


class AsciiStream:
    """Incremental parser of everything the board sends in ``ascii_dec``.

    :meth:`feed` takes raw bytes in any chunking and returns the complete
    lines it consumed (for the wire log). Samples, events, time stamps and
    the other lines (replies, ``end``, ...) are kept.
    """

    def __init__(self) -> None:
        self._tail = b""
        self._samples = _Growing()
        self.events: list[Event] = []
        #: (milliseconds the board reports, samples received before it)
        self.timestamps: list[tuple[int, int]] = []
        self.messages: list[str] = []  # every other non-empty line, in order
        self.bad_lines: list[tuple[int, str]] = []  # (sample count, text): unreadable
        self.ended = False  # 'end' seen
        self.completed = False  # 'Acquisition completed' seen
        self.summary: list[float] | None = None
        self._in_summary: list[float] | None = None

    @property
    def count(self) -> int:
        return self._samples.n

    def samples(self) -> np.ndarray:
        """All samples so far (a view: copy it if you keep it while feeding)."""
        return self._samples.view()

    def losses(self, i0: int, i1: int, rate_hz: int) -> tuple[int, int]:
        """What the stream lost around samples ``i0:i1``: (samples missing,
        unreadable lines).

        The board reports its own time in a ``TimeStamp`` record every second;
        between two of them it sent ``rate_hz`` samples a second, so a sample
        line lost on the way (or garbled beyond reading) shows as a shortfall
        between the records whose interval overlaps the window (the whole
        interval's shortfall counts: where in it the lines went is not
        known). The part of the window after the last record so far is not
        checked: call this once the acquisition has ended."""
        lost = 0
        for (ms_a, n_a), (ms_b, n_b) in zip(self.timestamps, self.timestamps[1:]):
            if n_a >= i1 or n_b <= i0 or ms_b < ms_a:  # no overlap, or the board's seconds wrapped
                continue
            lost += abs(round((ms_b - ms_a) * rate_hz / 1000) - (n_b - n_a))
        unreadable = sum(1 for n, _ in self.bad_lines if i0 <= n <= i1)
        return lost, unreadable

    def feed(self, data: bytes) -> list[str]:
        buf = self._tail + data
        cut = buf.rfind(b"\n")
        if cut < 0:
            self._tail = buf
            return []
        self._tail = buf[cut + 1 :]
        block = buf[:cut].replace(b"\x00", b"").replace(b"\r", b"")
        logged: list[str] = []
        if self.ended or self._in_summary is not None:
            for raw in block.split(b"\n"):
                if raw:
                    self._slow(raw.decode("latin-1"), logged)
            return logged
        pos = 0
        for m in _OTHER_LINE.finditer(block):
            if m.start() > pos:
                self._samples_from(block[pos : m.start()].strip(b"\n"), logged)
            pos = m.end()
            line = m.group().decode("latin-1")
            if not line:
                continue
            if self._other(line, logged):
                # the acquisition is over: the rest (summary values look like
                # samples) is read line by line
                for raw in block[pos:].split(b"\n"):
                    if raw:
                        self._slow(raw.decode("latin-1"), logged)
                return logged
        if pos < len(block):
            self._samples_from(block[pos:].strip(b"\n"), logged)
        return logged

    def _samples_from(self, seg: bytes, logged: list[str]) -> None:
        if not seg:
            return
        values = _decode_block(seg)
        text = seg.decode("latin-1")
        if values is None:
            for raw in text.split("\n"):
                if raw:
                    self._slow(raw, logged)
            return
        self._samples.extend(values)
        logged.extend(text.split("\n"))

    def _slow(self, line: str, logged: list[str]) -> None:
        if self._in_summary is None and not self.ended and _SAMPLE_LINE.match(line.encode("latin-1")):
            self._samples.extend(np.array([decode_sample(line.encode("latin-1"))]))
            logged.append(line)
            return
        if self._in_summary is not None and line not in ("summary end",):
            try:
                self._in_summary.append(decode_sample(line.encode("latin-1")))
                logged.append(line)
                return
            except (ValueError, IndexError):
                pass
        self._other(line, logged)

    def _other(self, line: str, logged: list[str]) -> bool:
        """A line that is not a sample; True once the acquisition has ended."""
        logged.append(line)
        if m := _EVENT.match(line):
            self.events.append(Event(int(m.group(1)), self.count))
            return False
        if m := _TIMESTAMP.match(line):
            self.timestamps.append((int(m.group(1)) * 1000 + int(m.group(2)), self.count))
            return False
        if line == "end":
            self.ended = True
            return True
        if line == "summary begin":
            self._in_summary = []
            return True
        if line == "summary end":
            self.summary = self._in_summary
            self._in_summary = None
            return self.ended
        if line[:1].isdigit():
            self.bad_lines.append((self.count, line))
            return False
        self.messages.append(line)
        body = line[len(PROMPT):].strip() if line.startswith(PROMPT) else line
        if body == "Acquisition completed":
            self.completed = True
        elif body == "ack start":  # a new acquisition
            self.ended = self.completed = False
        return False


# --------------------------------------------------------------------------
# the board


class Lpm01aClient:
    """An LPM01A on a serial port (a device path or any pyserial URL).

    ``log(who, lines)`` receives every line in both directions (``who`` is
    ``host>emon`` for what is sent, ``emon`` for what is received).
    """

    def __init__(
        self,
        port: str,
        log: Callable[[str, list[str]], None] | None = None,
        *,
        timeout: float = 5.0,
        stall_s: float = 10.0,
        opener=None,
    ):
        self.port = port
        self.timeout = float(timeout)
        self.stall_s = float(stall_s)
        self._log = log or (lambda who, lines: None)
        self._opener = opener
        self._ser = None
        self.stream = AsciiStream()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: str | None = None
        self.last_data = time.monotonic()
        self.acquiring = False
        self.rate_hz = SAMPLE_RATE_HZ
        self.voltage_v: float | None = None
        self.board_id: str | None = None
        self.version: str | None = None
        self.started_at: float | None = None  # wall time of 'start'
        self.powered = False

    # -- port -------------------------------------------------------------------
    def open(self) -> None:
        if self._opener is None:
            from .link import open_serial

            self._ser = open_serial(self.port, EMON_BAUD)
        else:
            self._ser = self._opener(self.port, EMON_BAUD)
        self._thread = threading.Thread(target=self._reader, name="emon-reader", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._ser is not None:
            try:
                self._ser.close()
            except Exception:
                pass
            self._ser = None

    def _reader(self) -> None:
        import serial

        ser = self._ser
        while not self._stop.is_set():
            try:
                waiting = ser.in_waiting
                data = ser.read(waiting if waiting > 0 else 1)
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                if self._stop.is_set():
                    return
                with self._cond:
                    self._failure = f"reading from the EMON port {self.port} failed: {exc}"
                    self._cond.notify_all()
                return
            if not data:
                continue
            with self._cond:
                lines = self.stream.feed(data)
                self.last_data = time.monotonic()
                self._cond.notify_all()
            if lines:
                self._log("emon", lines)

    def _send(self, text: str) -> None:
        import serial

        if self._ser is None:
            raise EmonError(f"the EMON port {self.port} is not open")
        self._log("host>emon", [text])
        try:
            self._ser.write(text.encode("ascii") + b"\n")
            self._ser.flush()
        except (serial.SerialException, OSError) as exc:
            raise EmonError(f"writing {text!r} to the EMON port {self.port} failed: {exc}") from None

    # -- commands ---------------------------------------------------------------
    #: commands that may be sent again when their answer is lost (sending them
    #: twice does what sending them once does)
    RESENDABLE = ("htc", "hrc", "powershield", "version", "status", "volt", "freq", "output", "format", "acqtime",
                  "acqmode", "trigsrc", "trigdelay", "eventsrc", "pwr", "lcd", "temp")

    def command(self, cmd: str, timeout: float | None = None) -> str:
        """Send ``cmd``; return the data after ``ack <cmd>`` (may be empty).
        An ``error`` answer raises :class:`EmonError` with the board's detail.
        A command whose answer was lost (no ``ack`` within ``timeout``) is sent
        once more when sending it again does no harm (:data:`RESENDABLE`)."""
        try:
            return self._command(cmd, timeout)
        except DeviceTimeout as exc:
            if cmd.split(" ", 1)[0] not in self.RESENDABLE or self._failure:
                raise
            self._log("runner", [f"no answer to '{cmd}' ({exc}); sending it again"])
            return self._command(cmd, timeout)

    def _command(self, cmd: str, timeout: float | None = None) -> str:
        limit = self.timeout if timeout is None else timeout
        with self._cond:
            mark = len(self.stream.messages)
        self._send(cmd)
        deadline = time.monotonic() + limit
        with self._cond:
            i = mark
            while True:
                msgs = self.stream.messages
                while i < len(msgs):
                    text = msgs[i]
                    i += 1
                    body = text[len(PROMPT):].strip() if text.startswith(PROMPT) else text.strip()
                    if body == f"ack {cmd}" or body.startswith(f"ack {cmd} ") or body.startswith(f"ack {cmd}:"):
                        return body[len(f"ack {cmd}") :].lstrip(" :")
                    if body == f"error {cmd}":
                        detail = self._error_detail(i, deadline)
                        raise EmonError(f"the EMON on {self.port} refused '{cmd}': {detail}")
                if self._failure:
                    raise EmonError(self._failure)
                left = deadline - time.monotonic()
                if left <= 0:
                    silent = time.monotonic() - self.last_data
                    if self.acquiring and silent >= limit:
                        raise EmonError(
                            f"the EMON on {self.port} stopped streaming: nothing received for {silent:.1f} s "
                            f"after {self.stream.count} samples ({self.stream.count / self.rate_hz:.3f} s of "
                            f"acquisition), and no answer to '{cmd}'"
                        )
                    raise DeviceTimeout(
                        f"the EMON on {self.port} did not acknowledge '{cmd}' within {limit:g} s "
                        "(is it an LPM01A PowerShield, powered, on this port?)"
                    )
                if self.acquiring:
                    self._check_locked()
                self._cond.wait(min(left, 0.1))

    def _error_detail(self, start: int, deadline: float) -> str:
        """(holding the lock) the ``Error detail:`` line after an error."""
        i = start
        end = max(deadline, time.monotonic() + 0.5)
        while True:
            msgs = self.stream.messages
            while i < len(msgs):
                body = msgs[i][len(PROMPT):] if msgs[i].startswith(PROMPT) else msgs[i]
                i += 1
                if body.startswith("Error detail:"):
                    return body[len("Error detail:") :].strip()
            left = end - time.monotonic()
            if left <= 0:
                return "no detail given"
            self._cond.wait(min(left, 0.1))

    def connect(self) -> None:
        """Take control of the board; stop an acquisition a previous run left
        going; read its identity."""
        self.command("htc")
        deadline = time.monotonic() + 0.2
        with self._cond:
            # any sample within 0.2 s (a wake-up for another message is no answer)
            while self.stream.count == 0 and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            streaming = self.stream.count > 0
        if streaming:
            self.stop()
        self.board_id = self.command("powershield") or None
        try:
            self.version = self.command("version") or None
        except EmonError:
            self.version = None

    def configure(self, voltage_v: float, rate_hz: int = SAMPLE_RATE_HZ) -> None:
        """Energy samples at ``rate_hz`` in ``ascii_dec`` until ``stop``,
        falling D7 edges reported, supply at ``voltage_v``. The DUT's supply
        is switched off first (as mlcommons/tiny's runner does): a DUT an
        earlier run left powered boots afresh at the next ``pwr on``, at the
        new voltage."""
        lo, hi = VOLTAGE_RANGE_V
        if not lo <= voltage_v <= hi:
            raise EmonError(f"--voltage {voltage_v:g} V is outside the LPM01A's range {lo:g}-{hi:g} V")
        rate_text = f"{rate_hz // 1000}k" if rate_hz % 1000 == 0 else str(rate_hz)
        self.power(False)
        for cmd in (
            f"volt {int(round(voltage_v * 1000))}m",
            f"freq {rate_text}",
            "output energy",
            "format ascii_dec",
            "acqtime 0",
            "trigsrc sw",
            "trigdelay 0",
            "eventsrc d7 fal",
        ):
            self.command(cmd)
        self.voltage_v = voltage_v
        self.rate_hz = rate_hz

    def power(self, on: bool) -> None:
        self.command("pwr on" if on else "pwr off")
        self.powered = on

    def start(self) -> None:
        """Start an acquisition, on a fresh stream: sample 0 is its first (what
        an earlier acquisition sent, e.g. the one :meth:`connect` stopped, is
        not part of it)."""
        with self._cond:
            self.stream = AsciiStream()
        self.command("start")
        self.acquiring = True
        self.started_at = time.monotonic()
        with self._cond:
            self.last_data = time.monotonic()

    def stop(self, timeout: float | None = None) -> None:
        """End the acquisition and wait for ``Acquisition completed``."""
        limit = max(self.timeout, 5.0) if timeout is None else timeout
        with self._cond:
            done_before = sum(1 for m in self.stream.messages if m.endswith("Acquisition completed"))
        self._send("stop")
        deadline = time.monotonic() + limit
        with self._cond:
            while sum(1 for m in self.stream.messages if m.endswith("Acquisition completed")) <= done_before:
                if self._failure:
                    raise EmonError(self._failure)
                left = deadline - time.monotonic()
                if left <= 0:
                    if self.stream.ended:  # its 'end' and summary came: only the last line was lost
                        self._log("runner", ["no 'Acquisition completed' after 'stop', but the acquisition's "
                                             "'end' record came: it is over"])
                        break
                    raise DeviceTimeout(
                        f"the EMON on {self.port} did not end its acquisition within {limit:g} s of 'stop' "
                        "(no 'Acquisition completed')"
                    )
                self._cond.wait(min(left, 0.1))
        self.acquiring = False

    def release(self) -> None:
        """Best effort at the end of a run: acquisition stopped, DUT unpowered,
        control back to the board. Returns quietly whatever happens."""
        for step in (
            (lambda: self.stop(timeout=2.0)) if self.acquiring else None,
            (lambda: self.power(False)) if self.powered else None,
            lambda: self.command("hrc", timeout=2.0),
        ):
            if step is None:
                continue
            try:
                step()
            except Exception:
                pass

    # -- the stream -----------------------------------------------------------------
    @property
    def sample_count(self) -> int:
        with self._cond:
            return self.stream.count

    @property
    def event_count(self) -> int:
        with self._cond:
            return len(self.stream.events)

    def events(self, start: int = 0) -> list[Event]:
        with self._cond:
            return list(self.stream.events[start:])

    def samples(self, i0: int = 0, i1: int | None = None) -> np.ndarray:
        """A copy of samples ``i0:i1`` (J each with ``output energy``)."""
        with self._cond:
            return self.stream.samples()[i0:i1].copy()

    def losses(self, i0: int, i1: int) -> tuple[int, int]:
        """(samples missing, unreadable lines) around samples ``i0:i1``
        (:meth:`AsciiStream.losses`; complete once the acquisition ended)."""
        with self._cond:
            return self.stream.losses(i0, i1, self.rate_hz)

    def check(self) -> None:
        """Raise if the port failed or a running acquisition went silent."""
        with self._cond:
            self._check_locked()

    def _check_locked(self) -> None:
        if self._failure:
            raise EmonError(self._failure)
        if self.acquiring and self.stream.ended:
            raise EmonError(
                f"the EMON on {self.port} ended its acquisition unasked after {self.stream.count} samples "
                f"({self.stream.count / self.rate_hz:.3f} s)"
            )
        silent = time.monotonic() - self.last_data
        if self.acquiring and silent > self.stall_s:
            raise EmonError(
                f"the EMON on {self.port} stopped streaming: nothing received for {silent:.1f} s "
                f"after {self.stream.count} samples ({self.stream.count / self.rate_hz:.3f} s of acquisition)"
            )

    def wait_events(self, want: int, *, until_sample: int | None = None, wall_limit: float | None = None) -> bool:
        """Wait until ``want`` events have been received in total. Gives up
        (returns False) once the stream has passed sample ``until_sample``
        without them, or after ``wall_limit`` s; raises if the EMON stops
        streaming or its acquisition ends."""
        end = None if wall_limit is None else time.monotonic() + wall_limit
        with self._cond:
            while True:
                if len(self.stream.events) >= want:
                    return True
                self._check_locked()
                if until_sample is not None and self.stream.count >= until_sample:
                    return False
                if end is not None and time.monotonic() >= end:
                    return False
                self._cond.wait(0.1)
