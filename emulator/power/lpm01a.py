"""The ST X-NUCLEO-LPM01A "PowerShield" energy monitor (EMON).

Two layers, as for the DUT:

* :class:`Lpm01aCore`: the firmware's shell as a pure state machine (bytes in,
  :data:`Action` s out; no I/O, no time), and the pure encoders/decoders of
  its data stream (:func:`format_ascii_value`, :func:`encode_bin_value`,
  :class:`StreamParser`);
* :class:`Lpm01a`: the board in the twin's SimPy clock. It powers the DUT
  (``pwr on`` -> ``dut.power_on()``), listens to the DUT's timestamp GPIO on
  its D7 input, and streams samples computed from the DUT's supply power
  (:mod:`emulator.power.model`) integrated exactly over each sample period.

The shell, as the runners see it (UM2269 "PowerShield firmware", host
controlled mode; the EnergyRunner and mlcommons/tiny runners' parsers)
-------------------------------------------------------------------------
* commands are ASCII lines (``\\n``; a ``\\r`` before it is ignored), words
  separated by spaces; every command gets an answer line starting with the
  prompt ``PowerShield > ``: ``ack <command as sent>[ <data>]`` or
  ``error <command as sent>`` followed by ``PowerShield > Error detail: ...``;
* numbers: ``3000m``, ``3000 m``, ``3-3`` (x10^-3), ``1k``, ``1+3``;
  ``acqtime`` also takes ``inf`` (= ``0``);
* the host must take control (``htc``) before configuring or measuring;
  ``help echo powershield version status htc hrc psrst`` work in both modes;
* ``start`` then streams, in ``ascii_dec``, one line per sample ``DDDD±EE``
  (value = DDDD x 10^±EE, in A for ``output current``, J per sample for
  ``output energy``), and metadata lines framed by CR LF: every 1000
  samples ``TimeStamp: SSSs MMMms, buff NN%`` (followed by a NUL byte, as
  the board does), and on each configured D7 edge (``eventsrc d7 fal``)
  ``event N ris`` placed before the sample in which the edge happened
  (N counts from 1 per acquisition: the mlcommons runner's parser);
  in ``bin_hexa``, two bytes per sample (4 bits of negative power of 16,
  12 bits of value) and binary metadata ``F0 Fx ... FF FF``;
* the acquisition ends after ``acqtime`` or on ``stop``: ``end`` (binary
  ``F0 F4 FF FF``), the summary (``summary begin``, min, max,
  ``summary end``) and finally ``PowerShield > Acquisition completed``
  (what the mlcommons runner waits for); ``stop`` is also acknowledged.

The board's USB CDC port ignores the host's baud setting (3686400 in the
runners' configuration): nothing here depends on it.
"""
from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..sim import MS, S, US, HostPort, Twin
from .model import PowerModel

PROMPT = b"PowerShield > "
FW_VERSION = "1.0.6"  # the EEMBC EnergyRunner requires 1.0.6 or later
USB_BAUD = 3686400  # what the runners open the CDC port with (not checked)
FREQS_HZ = (100000, 50000, 20000, 10000, 5000, 2000, 1000, 500, 200, 100, 50, 20, 10, 5, 2, 1)
TIMESTAMP_EVERY = 1000  # samples
MAX_ENERGY_FREQ_HZ = 10000
#: the highest frequency and the longest acquisition ascii_dec can carry
ASCII_LIMITS = ((5000, math.inf), (10000, 1.0), (20000, 0.5))

COMMON_COMMANDS = ("help", "echo", "powershield", "version", "status", "htc", "hrc", "psrst")
#: accepted while an acquisition runs (or a D7 trigger is armed)
DURING_ACQUISITION = COMMON_COMMANDS + ("stop", "pwr", "targrst", "temp", "lcd")


# --------------------------------------------------------------------------
# numbers and sample encodings


_NUM = re.compile(r"^(\d+)(?:([umk])|([+-])(\d{1,2}))?$")
_UNITS = {"u": 1e-6, "m": 1e-3, "k": 1e3}


def parse_value(text: str) -> float | None:
    """A numeric argument as the firmware reads it: digits, optionally with a
    unit letter (``u m k``) or a power of ten (``-xx``/``+xx``). ``None`` if
    the text is not such a number."""
    m = _NUM.match(text)
    if not m:
        return None
    value = float(int(m.group(1)))
    if m.group(2):
        value *= _UNITS[m.group(2)]
    elif m.group(3):
        exp = int(m.group(4))
        value *= 10.0 ** (exp if m.group(3) == "+" else -exp)
    return value


def format_ascii_value(value: float) -> bytes:
    """``ascii_dec`` encoding: 4 significant digits and a signed 2-digit
    power of ten (``6409-07`` = 640.9e-6)."""
    if not value > 0:
        return b"0000+00"
    e = math.floor(math.log10(value)) - 3
    m = math.floor(value / 10.0**e + 0.5)
    if m >= 10000:
        m //= 10
        e += 1
    elif m < 1000:  # float rounding just below a power of ten
        m = math.floor(value / 10.0 ** (e - 1) + 0.5)
        e -= 1
    if e > 99 or e < -99:
        raise ValueError(f"{value!r} cannot be encoded in ascii_dec")
    return b"%04d%c%02d" % (m, 45 if e < 0 else 43, abs(e))


def decode_ascii_value(text: bytes | str) -> float:
    s = text.decode() if isinstance(text, bytes) else text
    if len(s) != 7 or s[4] not in "+-" or not (s[:4] + s[5:]).isdigit():
        raise ValueError(f"not an ascii_dec value: {s!r}")
    exp = int(s[5:7])
    return int(s[:4]) * 10.0 ** (exp if s[4] == "+" else -exp)


def encode_bin_value(value: float) -> bytes:
    """``bin_hexa`` encoding: 2 bytes, the high nibble a negative power of 16
    (0..14; 15 marks metadata) and 12 bits of value (``52A0`` = 0x2A0 x 16^-5)."""
    if not value > 0:
        return b"\x00\x00"
    e = 14
    while e > 0 and value * 16.0**e > 4095.5:
        e -= 1
    m = min(4095, math.floor(value * 16.0**e + 0.5))
    return bytes(((e << 4) | (m >> 8), m & 0xFF))


def decode_bin_value(b0: int, b1: int) -> float:
    e = b0 >> 4
    if e == 0xF:
        raise ValueError("0xFx starts a metadata record, not a sample")
    return (((b0 & 0x0F) << 8) | b1) / 16.0**e


def _meta(tag: int, payload: bytes = b"") -> bytes:
    return bytes((0xF0, tag)) + payload + b"\xff\xff"


META_ERROR, META_INFO, META_TIMESTAMP, META_END = 0xF1, 0xF2, 0xF3, 0xF4
META_TARGET_DOWN, META_VOLTAGE, META_TEMPERATURE, META_POWER = 0xF6, 0xF7, 0xF8, 0xF9


def timestamp_record(fmt: str, ms: int, buff_pct: int = 0) -> bytes:
    if fmt == "bin_hexa":
        return _meta(META_TIMESTAMP, struct.pack(">IB", ms & 0x7FFFFFFF, buff_pct))
    s, r = divmod(ms, 1000)
    return b"\r\nTimeStamp: %03ds %03dms, buff %02d%%\r\n\x00" % (s, r, buff_pct)


def event_record(fmt: str, n: int) -> bytes:
    text = b"event %d ris" % n
    if fmt == "bin_hexa":
        return _meta(META_INFO, text + b"\r\n")
    return b"\r\n" + text + b"\r\n"


def end_record(fmt: str) -> bytes:
    return _meta(META_END) if fmt == "bin_hexa" else b"\r\nend\r\n"


def power_status_record(fmt: str, on: bool) -> bytes:
    if fmt == "bin_hexa":
        return _meta(META_POWER, bytes((1 if on else 0,)))
    return b"\r\npwr on\r\n" if on else b"\r\npwr off\r\n"


def summary_record(vmin: float, vmax: float) -> bytes:
    """The post-acquisition summary (ASCII in both formats)."""
    return (
        b"\r\nsummary begin\r\n" + format_ascii_value(vmin) + b"\r\n" + format_ascii_value(vmax) + b"\r\nsummary end\r\n"
    )


ACQUISITION_COMPLETED = PROMPT + b"Acquisition completed\r\n"


# --------------------------------------------------------------------------
# the shell's state and actions


@dataclass
class Settings:
    voltage_mv: int = 3300
    freq_hz: int = 100
    acqtime_s: float = 10.0  # 0: infinite
    acqmode: str = "dyn"
    funcmode: str = "optim"
    output: str = "current"
    format: str = "ascii_dec"
    trigsrc: str = "sw"
    trigdelay_s: float = 0.001
    currthre_a: float = 1e-3
    eventsrc: str = "d7"  # the EnergyRunner listens to D7 falling edges
    event_edge: str = "fal"
    pwr: str = "auto"
    pwr_status: bool = False
    pwrend: str = "on"
    lcd: tuple[str, str] = ("", "")


@dataclass(frozen=True)
class Reply:
    """Bytes for the host."""

    data: bytes


@dataclass(frozen=True)
class SetTargetPower:
    on: bool


@dataclass(frozen=True)
class SetVoltage:
    mv: int


@dataclass(frozen=True)
class TargetReset:
    """Power the target off, and on again after ``seconds`` (0: stay off)."""

    seconds: float


@dataclass(frozen=True)
class StartAcquisition:
    settings: Settings


@dataclass(frozen=True)
class StopAcquisition:
    """``stop``: end the acquisition (or disarm the D7 trigger)."""


@dataclass(frozen=True)
class ResetBoard:
    """``psrst``: the board restarts (acquisition dropped, target unpowered)."""


Action = Reply | SetTargetPower | SetVoltage | TargetReset | StartAcquisition | StopAcquisition | ResetBoard


class _Bad(Exception):
    """A command refused: the detail line's text."""


HELP_LINES = (
    "help                      : this list",
    "echo <text>               : loopback of <text>",
    "powershield               : board presence and unique ID",
    "version                   : firmware revision",
    "status                    : ok, or the pending error",
    "htc | hrc                 : host takes | releases control",
    "lcd <1|2> \"<16 chars>\"    : text on the LCD (host control)",
    "psrst                     : reset the PowerShield",
    "volt <1800m..3300m>|get   : target supply voltage",
    "freq <Hz>                 : 100k 50k 20k 10k 5k 2k 1k 500 200 100 50 20 10 5 2 1",
    "acqtime <s>|0|inf         : acquisition duration (100u..100)",
    "acqmode dyn|stat          : dynamic or static current",
    "funcmode optim|high       : dynamic mode optimisation",
    "output current|energy     : instantaneous current or energy per sample",
    "format ascii_dec|bin_hexa : data stream format",
    "trigsrc sw|d7             : start on 'start' or on a D7 edge",
    "trigdelay <s>             : delay from trigger to first sample (0..30)",
    "currthre <A>              : event threshold (0, 100n..50m)",
    "eventsrc d7 [ris|fal]     : report D7 edges in the data stream",
    "pwr auto|on|off|get [status|nostatus] : target power",
    "pwrend on|off             : target power after an acquisition",
    "start | stop              : acquisition",
    "targrst <s>               : power-cycle the target (0: leave it off)",
    "temp [degc|degf]          : board temperature",
    "calib                     : self-calibration",
)


class Lpm01aCore:
    """The PowerShield shell: feed host bytes to :meth:`receive`, get
    :data:`Action` s. The device reports the end of an acquisition with
    :meth:`acquisition_ended`."""

    def __init__(
        self,
        *,
        version: str = FW_VERSION,
        board_id: str | None = None,
        temperature_c: float = 25.0,
    ):
        self.version = version
        self.board_id = board_id or "-".join(str(v) for v in struct.unpack("<3I", b"tinytwinEMON"))
        self.temperature_c = temperature_c
        self._line = bytearray()
        self.reset()

    def reset(self) -> None:
        self.settings = Settings()
        self.host_control = False
        self.acquiring = False  # data streaming
        self.armed = False  # D7 trigger armed (trigsrc d7)
        self.target_on = False
        self.error: str | None = None  # what 'status' reports

    # -- bytes in ----------------------------------------------------------------
    def receive(self, data: bytes) -> list[Action]:
        actions: list[Action] = []
        for c in data:
            if c in (10, 13):  # LF ends a line; CR too (a terminal's Enter)
                if self._line:
                    line = bytes(self._line)
                    self._line.clear()
                    actions.extend(self.command(line.decode("latin-1")))
            else:
                self._line.append(c)
        return actions

    # -- replies -------------------------------------------------------------------
    @property
    def _binary_stream(self) -> bool:
        return self.acquiring and self.settings.format == "bin_hexa"

    def _ack(self, cmd: str, data: str = "") -> Reply:
        text = f"ack {cmd}" + (f" {data}" if data else "")
        if self._binary_stream:
            return Reply(_meta(META_INFO, text.encode() + b"\r\n"))
        return Reply(PROMPT + text.encode() + b"\r\n")

    def _error(self, cmd: str, detail: str) -> Reply:
        if self._binary_stream:
            return Reply(_meta(META_ERROR, f"error {cmd}\r\nError detail: {detail}\r\n".encode()))
        return Reply(PROMPT + f"error {cmd}\r\n".encode() + PROMPT + f"Error detail: {detail}\r\n".encode())

    # -- one command -------------------------------------------------------------
    def command(self, line: str) -> list[Action]:
        words = line.split()
        if not words:
            return []
        cmd = " ".join(words)
        name, args = words[0], words[1:]
        if name == "lcd":
            cmd = line.strip()
        handler = getattr(self, f"_cmd_{name}", None)
        if name == "currthres":  # the spelling of the mlcommons runner's command table
            handler = self._cmd_currthre
        if handler is None:
            return [self._error(cmd, f"unknown command '{name}'")]
        if name not in COMMON_COMMANDS and not self.host_control:
            return [self._error(cmd, "host control required: send 'htc' first")]
        busy = self.acquiring or self.armed
        if busy and name not in DURING_ACQUISITION and not (name == "volt" and args[:1] == ["get"]):
            return [self._error(cmd, "not allowed during an acquisition: send 'stop' first")]
        try:
            return handler(cmd, args)
        except _Bad as exc:
            return [self._error(cmd, str(exc))]

    # -- argument helpers ----------------------------------------------------------
    @staticmethod
    def _number(args: list[str], what: str) -> float:
        if not args:
            raise _Bad(f"missing argument: {what}")
        text = args[0]
        if len(args) == 2 and args[1] in _UNITS and args[0].isdigit():
            text = args[0] + args[1]  # '3300 m'
        elif len(args) > 1:
            raise _Bad(f"too many arguments: {' '.join(args)}")
        v = parse_value(text)
        if v is None:
            raise _Bad(f"not a number: '{' '.join(args)}'")
        return v

    @staticmethod
    def _choice(args: list[str], options: Iterable[str], what: str, n: int = 1) -> str:
        options = tuple(options)
        if not args:
            raise _Bad(f"missing argument: {what} ({'|'.join(options)})")
        if len(args) > n:
            raise _Bad(f"too many arguments: {' '.join(args)}")
        if args[0] not in options:
            raise _Bad(f"'{args[0]}' is not one of {'|'.join(options)}")
        return args[0]

    def _no_args(self, args: list[str]) -> None:
        if args:
            raise _Bad(f"no argument expected: {' '.join(args)}")

    # -- common operation --------------------------------------------------------------
    def _cmd_help(self, cmd, args):
        text = "".join(f"{line}\r\n" for line in HELP_LINES)
        return [self._ack(cmd), Reply(text.encode())]

    def _cmd_echo(self, cmd, args):
        return [self._ack(cmd)]

    def _cmd_powershield(self, cmd, args):
        self._no_args(args)
        return [self._ack(cmd, self.board_id)]

    def _cmd_version(self, cmd, args):
        self._no_args(args)
        if self._binary_stream:
            return [self._ack(cmd, self.version)]
        # UM2269's example of this answer reads "ack version: 1.0.0"
        return [Reply(PROMPT + f"ack {cmd}: {self.version}\r\n".encode())]

    def _cmd_status(self, cmd, args):
        self._no_args(args)
        status = "ok" if self.error is None else f"error: {self.error}"
        self.error = None
        return [self._ack(cmd, status)]

    def _cmd_htc(self, cmd, args):
        self._no_args(args)
        self.host_control = True
        return [self._ack(cmd)]

    def _cmd_hrc(self, cmd, args):
        self._no_args(args)
        if self.acquiring or self.armed:
            raise _Bad("not allowed during an acquisition: send 'stop' first")
        self.host_control = False
        return [self._ack(cmd)]

    def _cmd_psrst(self, cmd, args):
        self._no_args(args)
        ack = self._ack(cmd)
        self.reset()
        return [ack, ResetBoard()]

    def _cmd_lcd(self, cmd, args):
        m = re.match(r'^lcd\s+(\S+)\s+"(.*)"\s*$', cmd)
        if not m:
            raise _Bad('expected: lcd <1|2> "<text>"')
        if m.group(1) not in ("1", "2"):
            raise _Bad(f"LCD line must be 1 or 2, not '{m.group(1)}'")
        text = m.group(2)
        if len(text) > 16:
            raise _Bad(f"LCD text longer than 16 characters ({len(text)})")
        lines = list(self.settings.lcd)
        lines[int(m.group(1)) - 1] = text
        self.settings.lcd = (lines[0], lines[1])
        return [self._ack(cmd)]

    # -- configuration -------------------------------------------------------------------
    def _cmd_volt(self, cmd, args):
        if args[:1] == ["get"]:
            self._no_args(args[1:])
            mv = self.settings.voltage_mv
            if self._binary_stream:
                return [Reply(_meta(META_VOLTAGE, struct.pack(">H", mv)))]
            return [self._ack(cmd, format_ascii_value(mv / 1000).decode())]
        v = self._number(args, "voltage")
        if not 1.8 - 1e-9 <= v <= 3.3 + 1e-9:
            raise _Bad(f"voltage out of range [1800m; 3300m]: {v:g} V")
        self.settings.voltage_mv = int(round(v * 1000))
        return [self._ack(cmd), SetVoltage(self.settings.voltage_mv)]

    def _cmd_freq(self, cmd, args):
        v = self._number(args, "frequency")
        if int(v) != v or int(v) not in FREQS_HZ:
            raise _Bad(f"frequency not in the list {{100k ... 1}}: {v:g} Hz")
        self.settings.freq_hz = int(v)
        return [self._ack(cmd)]

    def _cmd_acqtime(self, cmd, args):
        if args == ["inf"]:
            t = 0.0
        else:
            t = self._number(args, "acquisition time")
            if t != 0 and not 100e-6 - 1e-12 <= t <= 100:
                raise _Bad(f"acquisition time out of range [100u; 100] (0 or inf: infinite): {t:g} s")
        self.settings.acqtime_s = t
        return [self._ack(cmd)]

    def _cmd_acqmode(self, cmd, args):
        self.settings.acqmode = self._choice(args, ("dyn", "stat"), "mode")
        return [self._ack(cmd)]

    def _cmd_funcmode(self, cmd, args):
        self.settings.funcmode = self._choice(args, ("optim", "high"), "mode")
        return [self._ack(cmd)]

    def _cmd_output(self, cmd, args):
        self.settings.output = self._choice(args, ("current", "energy"), "output type")
        return [self._ack(cmd)]

    def _cmd_format(self, cmd, args):
        self.settings.format = self._choice(args, ("ascii_dec", "bin_hexa"), "format")
        return [self._ack(cmd)]

    def _cmd_trigsrc(self, cmd, args):
        self.settings.trigsrc = self._choice(args, ("sw", "d7"), "trigger source")
        return [self._ack(cmd)]

    def _cmd_trigdelay(self, cmd, args):
        t = self._number(args, "delay")
        if not 0 <= t <= 30:
            raise _Bad(f"trigger delay out of range [0; 30]: {t:g} s")
        self.settings.trigdelay_s = round(t, 3)  # 1 ms resolution
        return [self._ack(cmd)]

    def _cmd_currthre(self, cmd, args):
        a = self._number(args, "current threshold")
        if a != 0 and not 100e-9 - 1e-15 <= a <= 50e-3 + 1e-12:
            raise _Bad(f"current threshold out of range [100n; 50m] (0: disabled): {a:g} A")
        self.settings.currthre_a = a
        return [self._ack(cmd)]

    def _cmd_eventsrc(self, cmd, args):
        self._choice(args[:1], ("d7",), "event source")
        edge = self._choice(args[1:], ("ris", "fal"), "edge") if len(args) > 1 else "fal"
        if len(args) > 2:
            raise _Bad(f"too many arguments: {' '.join(args)}")
        self.settings.eventsrc, self.settings.event_edge = "d7", edge
        return [self._ack(cmd)]

    def _cmd_pwrend(self, cmd, args):
        self.settings.pwrend = self._choice(args, ("on", "off"), "state")
        return [self._ack(cmd)]

    def _cmd_pwr(self, cmd, args):
        if not args:
            raise _Bad("missing argument: auto|on|off|get")
        if args[0] == "get":
            self._no_args(args[1:])
            if self._binary_stream or (self.armed and self.settings.format == "bin_hexa"):
                return [Reply(_meta(META_POWER, bytes((1 if self.target_on else 0,))))]
            return [self._ack(cmd, "on" if self.target_on else "off")]
        mode = self._choice(args[:1], ("auto", "on", "off"), "power mode")
        status = self.settings.pwr_status
        if len(args) > 1:
            status = self._choice(args[1:], ("status", "nostatus"), "status option") == "status"
        self.settings.pwr, self.settings.pwr_status = mode, status
        out: list[Action] = []
        if self._binary_stream and mode != "auto":
            out.append(Reply(power_status_record("bin_hexa", mode == "on")))
        else:
            out.append(self._ack(cmd))
        if mode in ("on", "off") and self.target_on != (mode == "on"):
            self.target_on = mode == "on"
            out.append(SetTargetPower(self.target_on))
        return out

    # -- acquisition ---------------------------------------------------------------------
    def start_error(self, s: Settings | None = None) -> str | None:
        """Why the current configuration cannot be acquired (None: it can)."""
        s = s or self.settings
        if s.output == "energy" and s.freq_hz > MAX_ENERGY_FREQ_HZ:
            return f"energy output limited to {MAX_ENERGY_FREQ_HZ // 1000}k samples/s (freq {s.freq_hz})"
        if s.format == "ascii_dec":
            for fmax, tmax in ASCII_LIMITS:
                if s.freq_hz <= fmax:
                    if s.acqtime_s == 0 and math.isfinite(tmax) or s.acqtime_s > tmax:
                        return f"ascii_dec at {s.freq_hz} Hz allows acquisitions of at most {tmax:g} s"
                    return None
            return f"ascii_dec is limited to 20k samples/s (freq {s.freq_hz}); use bin_hexa"
        return None

    def _cmd_start(self, cmd, args):
        self._no_args(args)
        why = self.start_error()
        if why:
            raise _Bad(why)
        out: list[Action] = [self._ack(cmd)]
        if self.settings.pwr == "auto" and not self.target_on:
            self.target_on = True
            out.append(SetTargetPower(True))
        if self.settings.trigsrc == "d7":
            self.armed = True
        else:
            self.acquiring = True
        out.append(StartAcquisition(replace(self.settings)))
        return out

    def _cmd_stop(self, cmd, args):
        self._no_args(args)
        if not (self.acquiring or self.armed):
            return [self._ack(cmd)]
        return [StopAcquisition()]

    def acquisition_started(self) -> None:
        """The device saw the D7 trigger: data now streams."""
        self.acquiring = True

    def acquisition_ended(self, *, disarm: bool) -> list[Action]:
        """The acquisition is over (``acqtime`` reached, or ``stop``): applies
        ``pwrend`` and returns the power action, if any."""
        self.acquiring = False
        if disarm:
            self.armed = False
        if self.settings.pwrend == "off" and self.target_on:
            self.target_on = False
            return [SetTargetPower(False)]
        return []

    def _cmd_targrst(self, cmd, args):
        t = self._number(args, "duration")
        if t != 0 and not 10e-3 - 1e-12 <= t <= 1:
            raise _Bad(f"target reset duration out of range [10m; 1] (0: leave powered down): {t:g} s")
        ack = Reply(_meta(META_TARGET_DOWN)) if self._binary_stream else self._ack(cmd)
        self.target_on = t != 0
        return [ack, TargetReset(t)]

    def _cmd_temp(self, cmd, args):
        unit = self._choice(args, ("degc", "degf"), "unit") if args else "degc"
        value = self.temperature_c if unit == "degc" else self.temperature_c * 9 / 5 + 32
        if self._binary_stream:
            return [Reply(_meta(META_TEMPERATURE, struct.pack(">h", round(value))))]
        return [self._ack(cmd if args else f"{cmd} {unit}", f"{value:.1f}")]

    def _cmd_calib(self, cmd, args):
        self._no_args(args)
        return [self._ack(cmd)]


# --------------------------------------------------------------------------
# reading the stream back (tests, tools, a runner)


@dataclass
class ParsedStream:
    samples: list[float] = field(default_factory=list)
    #: (event number, number of samples received before it)
    events: list[tuple[int, int]] = field(default_factory=list)
    #: (milliseconds, buffer load %, number of samples received before it)
    timestamps: list[tuple[int, int, int]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # prompt lines and other text
    ended: bool = False
    completed: bool = False
    summary: tuple[float, float] | None = None


_EVENT = re.compile(r"^event (\d+) ris$")
_TS = re.compile(r"^TimeStamp: (\d{3,})s (\d{3})ms, buff (\d{2})%$")


def parse_ascii_stream(data: bytes) -> ParsedStream:
    """Split an ``ascii_dec`` stream into samples, events, timestamps and the
    shell's lines (NUL bytes are dropped, as the runners do)."""
    out = ParsedStream()
    in_summary: list[float] | None = None
    for raw in data.replace(b"\x00", b"").split(b"\n"):
        line = raw.rstrip(b"\r").decode("latin-1")
        if not line:
            continue
        if in_summary is not None:
            if line == "summary end":
                out.summary = (in_summary[0], in_summary[1]) if len(in_summary) == 2 else None
                in_summary = None
            else:
                in_summary.append(decode_ascii_value(line))
            continue
        if line[0].isdigit():
            out.samples.append(decode_ascii_value(line))
        elif m := _EVENT.match(line):
            out.events.append((int(m.group(1)), len(out.samples)))
        elif m := _TS.match(line):
            out.timestamps.append((int(m.group(1)) * 1000 + int(m.group(2)), int(m.group(3)), len(out.samples)))
        elif line == "end":
            out.ended = True
        elif line == "summary begin":
            in_summary = []
        else:
            out.messages.append(line)
            if line == (PROMPT + b"Acquisition completed").decode():
                out.completed = True
    return out


def parse_binary_stream(data: bytes) -> ParsedStream:
    """Split a ``bin_hexa`` stream (from the first byte after ``ack start``)."""
    out = ParsedStream()
    i, n = 0, len(data)
    while i + 1 < n:
        b0, b1 = data[i], data[i + 1]
        if b0 == 0xF0 and b1 >> 4 == 0xF:
            j = data.find(b"\xff\xff", i + 2)
            if j < 0:
                raise ValueError(f"unterminated metadata at byte {i}")
            body = data[i + 2 : j]
            if b1 == META_TIMESTAMP:
                ms, buff = struct.unpack(">IB", body)
                out.timestamps.append((ms & 0x7FFFFFFF, buff, len(out.samples)))
            elif b1 in (META_INFO, META_ERROR):
                text = body.decode("latin-1").strip()
                if m := _EVENT.match(text):
                    out.events.append((int(m.group(1)), len(out.samples)))
                else:
                    out.messages.append(text)
            elif b1 == META_END:
                out.ended = True
                rest = parse_ascii_stream(data[j + 2 :])
                out.summary, out.completed = rest.summary, rest.completed
                out.messages.extend(rest.messages)
                return out
            i = j + 2
            continue
        out.samples.append(decode_bin_value(b0, b1))
        i += 2
    return out


# --------------------------------------------------------------------------
# the board in the twin


@dataclass
class _Acquisition:
    settings: Settings
    t0: int  # ns: start of sample 0
    period: int  # ns
    n_total: int | None  # None: until stop
    k: int = 0  # next sample to send
    events: list[int] = field(default_factory=list)  # D7 edge times not yet sent
    n_events: int = 0
    vmin: float = math.inf
    vmax: float = 0.0
    gen: int = 0

    def boundary(self, j: int) -> int:
        return self.t0 + j * self.period


class Lpm01a:
    """The PowerShield in the twin: its USB CDC port to the host (any
    :class:`~emulator.sim.HostPort`, see :meth:`attach`), its supply output to
    the DUT and its D7 input on the DUT's timestamp pin.

    Samples are computed lazily from the DUT's piecewise-constant power (state
    changes are recorded as they happen) every ``flush_ms`` of simulated time,
    so a long acquisition costs a few events per second of simulated time, not
    one per sample; streaming does not make the twin busy (in fast mode the
    twin then follows wall time). While an acquisition runs there is always a
    next event: drive the twin with ``run_until_idle(limit_ns)``.

    Not modelled: the static acquisition mode (``acqmode stat`` streams like
    ``dyn``), ``funcmode``, ``currthre`` events on D2/D3, overcurrent, the
    Tx-buffer load (``buff`` is always 00%: the host port buffers instead),
    the duration of a calibration after ``volt``, ``autotest``.
    """

    def __init__(
        self,
        twin: Twin,
        dut=None,
        *,
        power_model: PowerModel | None = None,
        name: str = "emon",
        reply_latency_us: float = 500.0,
        flush_ms: float = 10.0,
        core: Lpm01aCore | None = None,
    ):
        self.twin = twin
        self.name = name
        self.core = core or Lpm01aCore()
        self.power_model = power_model or PowerModel.default()
        self.reply_latency_ns = int(round(reply_latency_us * US))
        self.flush_ns = max(1, int(round(flush_ms * MS)))
        self.ports: list[HostPort] = []
        #: called with every chunk of bytes sent to the host (tests, logging)
        self.taps: list[Callable[[bytes], None]] = []
        self.dut = None
        self.target_on = False
        self.voltage_v = self.core.settings.voltage_mv / 1000
        self.d7_level = 1
        self._hist: list[tuple[int, float]] = [(twin.now, 0.0)]  # (t ns, W)
        self._acq: _Acquisition | None = None
        self._gen = 0
        self._power_gen = 0
        twin.add_device(self)
        if dut is not None:
            self.connect_dut(dut)

    # -- wiring ------------------------------------------------------------------
    def attach(self, port: HostPort) -> HostPort:
        """Make ``port`` the board's USB CDC port (its baud is ignored)."""
        port.on_host_bytes = self.host_input
        self.ports.append(port)
        self.twin.add_port(port)
        return port

    def connect_dut(self, dut) -> None:
        """Supply ``dut`` (it is the board's only supply: an unpowered EMON
        output switches it off) and listen to its timestamp pin on D7."""
        self.dut = dut
        dut.state_listeners.append(self._on_dut_state)
        dut.timestamp_pin.listeners.append(self._on_d7)
        self.d7_level = dut.timestamp_pin.level
        if getattr(dut, "powered", False) and not self.target_on:
            dut.power_off()
        self._power_changed()

    # -- host side -----------------------------------------------------------------
    def host_input(self, data: bytes) -> None:
        """Bytes from the host: the shell handles them after its latency."""
        twin = self.twin
        twin.begin_busy()

        def run() -> None:
            try:
                self._execute(self.core.receive(data))
            finally:
                twin.end_busy()

        twin.schedule(self.reply_latency_ns, run)

    def _send(self, data: bytes) -> None:
        if not data:
            return
        self.ports = [p for p in self.ports if not p.closed]
        for p in self.ports:
            p.write_to_host(data)
        for tap in list(self.taps):
            tap(data)

    # -- actions -------------------------------------------------------------------
    def _execute(self, actions: Iterable[Action]) -> None:
        for a in actions:
            if isinstance(a, Reply):
                self._send(a.data)
            elif isinstance(a, SetTargetPower):
                self._set_target(a.on)
            elif isinstance(a, SetVoltage):
                self.voltage_v = a.mv / 1000
                self._power_changed()
            elif isinstance(a, TargetReset):
                self._target_reset(a.seconds)
            elif isinstance(a, StartAcquisition):
                self._start(a.settings)
            elif isinstance(a, StopAcquisition):
                self._stop()
            elif isinstance(a, ResetBoard):
                self._gen += 1
                self._acq = None
                self._set_target(False)
                self.voltage_v = self.core.settings.voltage_mv / 1000
                self._power_changed()

    def _set_target(self, on: bool) -> None:
        self._power_gen += 1  # cancels a pending targrst power-on
        if on == self.target_on:
            return
        self.target_on = on
        if self.dut is not None:
            if on:
                self.dut.power_on()
            else:
                self.dut.power_off()
        self._power_changed()

    def _target_reset(self, seconds: float) -> None:
        self._set_target(False)
        if seconds > 0:
            gen = self._power_gen

            def back_on() -> None:
                if gen == self._power_gen:
                    self.core.target_on = True
                    self._set_target(True)

            self.twin.schedule(seconds * S, back_on)

    # -- power history -------------------------------------------------------------
    def power_now_w(self) -> float:
        """The power drawn from the supply output right now (W)."""
        dut = self.dut
        if not self.target_on or dut is None or not getattr(dut, "powered", True):
            return 0.0
        return self.power_model.power_w(dut.state, self.voltage_v, dut.timing.clock_mhz)

    def _on_dut_state(self, state: str, t: int) -> None:
        self._power_changed(t)

    def _power_changed(self, t: int | None = None) -> None:
        t = self.twin.now if t is None else t
        p = self.power_now_w()
        h = self._hist
        if h[-1][0] == t:
            h[-1] = (t, p)
            if len(h) > 1 and h[-2][1] == p:
                h.pop()
        elif h[-1][1] != p:
            h.append((t, p))
        if self._acq is None and len(h) > 1:
            del h[:-1]

    def _energies(self, a: int, k0: int, k1: int) -> np.ndarray:
        """Energy (J) of samples k0..k1-1 of the acquisition starting at ``a``
        ns with ``period``: exact integrals of the piecewise-constant power."""
        acq = self._acq
        h = self._hist
        starts = np.array([t for t, _ in h], dtype=np.float64)
        powers = np.array([p for _, p in h], dtype=np.float64)
        bounds = np.arange(k0, k1 + 1, dtype=np.float64) * acq.period + acq.t0
        cum = np.concatenate(([0.0], np.cumsum(powers[:-1] * np.diff(starts))))
        idx = np.searchsorted(starts, bounds, side="right") - 1
        idx = np.clip(idx, 0, None)
        e = cum[idx] + powers[idx] * (bounds - starts[idx])
        return np.diff(e) * 1e-9

    def _prune_history(self, t: int) -> None:
        """Forget the power history before ``t`` (keeping the level at ``t``)."""
        h = self._hist
        i = 0
        while i + 1 < len(h) and h[i + 1][0] <= t:
            i += 1
        del h[:i]
        if h[0][0] < t:
            h[0] = (t, h[0][1])

    # -- D7 ----------------------------------------------------------------------------
    def _on_d7(self, level: int, t: int) -> None:
        self.d7_level = level
        core = self.core
        if core.armed and not core.acquiring and level == 1 and self._acq is not None and self._acq.t0 < 0:
            # trigger (rising edge on D7): acquisition starts after trigdelay
            acq = self._acq
            acq.t0 = t + int(round(acq.settings.trigdelay_s * S))
            core.acquisition_started()
            self._begin_stream(acq)
            return
        acq = self._acq
        if acq is None or acq.t0 < 0 or t < acq.t0:
            return
        edge = "fal" if level == 0 else "ris"
        if acq.settings.eventsrc == "d7" and edge == acq.settings.event_edge:
            acq.events.append(t)

    # -- acquisition -------------------------------------------------------------------
    def _start(self, s: Settings) -> None:
        self._gen += 1
        period = S // s.freq_hz
        n_total = None if s.acqtime_s == 0 else max(1, int(round(s.acqtime_s * s.freq_hz)))
        acq = _Acquisition(s, -1, period, n_total, gen=self._gen)
        self._acq = acq
        if s.trigsrc == "sw":
            acq.t0 = self.twin.now + int(round(s.trigdelay_s * S))
            self._begin_stream(acq)

    def _begin_stream(self, acq: _Acquisition) -> None:
        self._prune_history(min(acq.t0, self.twin.now))
        if acq.settings.pwr_status:
            self._send(power_status_record(acq.settings.format, self.target_on))
        self._schedule_flush(acq)

    def _schedule_flush(self, acq: _Acquisition) -> None:
        now = self.twin.now
        done = max(0, (now - acq.t0) // acq.period) if now >= acq.t0 else 0
        # the end of the first sample that completes at least flush_ns from now
        j = max(done + 1, -(-(now + self.flush_ns - acq.t0) // acq.period))
        if acq.n_total is not None:
            j = min(j, acq.n_total)
        at = acq.boundary(j)
        gen = acq.gen

        def tick() -> None:
            if self._acq is acq and acq.gen == gen:
                self._flush(acq)

        self.twin.schedule(max(0, at - now), tick)

    def _flush(self, acq: _Acquisition, final: bool = False) -> None:
        now = self.twin.now
        n_done = max(0, (now - acq.t0) // acq.period) if now >= acq.t0 else 0
        if acq.n_total is not None:
            n_done = min(n_done, acq.n_total)
        if n_done > acq.k:
            self._send(self._encode(acq, acq.k, n_done))
            acq.k = n_done
            self._prune_history(acq.boundary(acq.k))
        if final:
            return
        if acq.n_total is not None and acq.k >= acq.n_total:
            self._finish(acq, by_stop=False)
        else:
            self._schedule_flush(acq)

    def _encode(self, acq: _Acquisition, k0: int, k1: int) -> bytes:
        s = acq.settings
        fmt = s.format
        values = self._energies(acq.t0, k0, k1)
        if s.output == "current":
            values = values / (self.voltage_v * acq.period * 1e-9)
        if len(values):
            acq.vmin = min(acq.vmin, float(values.min()))
            acq.vmax = max(acq.vmax, float(values.max()))
        events = sorted(acq.events)
        ev_idx = [min((t - acq.t0) // acq.period, k1) for t in events]
        keep = [t for t, j in zip(events, ev_idx) if j >= k1]
        ev_by_sample: dict[int, int] = {}
        for j in ev_idx:
            if j < k1:
                ev_by_sample[j] = ev_by_sample.get(j, 0) + 1
        acq.events = keep
        enc = encode_bin_value if fmt == "bin_hexa" else format_ascii_value
        nl = b"" if fmt == "bin_hexa" else b"\r\n"
        parts: list[bytes] = []
        for i, v in enumerate(values.tolist()):
            j = k0 + i
            if j % TIMESTAMP_EVERY == 0:
                parts.append(timestamp_record(fmt, j * 1000 // s.freq_hz))
            for _ in range(ev_by_sample.get(j, 0)):
                acq.n_events += 1
                parts.append(event_record(fmt, acq.n_events))
            parts.append(enc(v) + nl)
        return b"".join(parts)

    def _stop(self) -> None:
        acq = self._acq
        if acq is None:
            return
        if acq.t0 >= 0:
            self._flush(acq, final=True)
        self._finish(acq, by_stop=True)

    def _finish(self, acq: _Acquisition, *, by_stop: bool) -> None:
        s = acq.settings
        fmt = s.format
        out = []
        started = acq.t0 >= 0 and self.twin.now >= acq.t0
        if started:
            # D7 edges after the last whole sample are still reported
            for _ in acq.events:
                acq.n_events += 1
                out.append(event_record(fmt, acq.n_events))
            acq.events = []
            if s.pwr_status:
                out.append(power_status_record(fmt, self.target_on))
            out.append(end_record(fmt))
        if by_stop:
            out.append(PROMPT + b"ack stop\r\n")
        if started:
            vmin = acq.vmin if math.isfinite(acq.vmin) else 0.0
            out.append(summary_record(vmin, acq.vmax))
        out.append(ACQUISITION_COMPLETED)
        self._acq = None
        self._gen += 1
        self._send(b"".join(out))
        self._execute(self.core.acquisition_ended(disarm=by_stop))
        self._prune_history(self.twin.now)
        if s.trigsrc == "d7" and not by_stop and self.core.armed:
            # the trigger stays armed: the next D7 edge starts a new acquisition
            self._start(s)

    @property
    def acquiring(self) -> bool:
        return self._acq is not None


def build_emon(twin: Twin, dut, *, link: str | Path | None = None, power_model: PowerModel | None = None):
    """The rig's hook: an LPM01A powering ``dut``, on a pseudo-terminal
    (symlinked at ``link``). Returns ``(emon, port)``."""
    from ..transport import PtyPort

    emon = Lpm01a(twin, dut, power_model=power_model)
    port = emon.attach(PtyPort("emon", link=link))
    return emon, port


__all__ = [
    "Lpm01a",
    "Lpm01aCore",
    "Settings",
    "ParsedStream",
    "build_emon",
    "decode_ascii_value",
    "decode_bin_value",
    "encode_bin_value",
    "format_ascii_value",
    "parse_ascii_stream",
    "parse_binary_stream",
    "parse_value",
]
