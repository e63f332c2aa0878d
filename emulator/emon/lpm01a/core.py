"""The ST X-NUCLEO-LPM01A "PowerShield" energy monitor (EMON).

Two layers, as for the DUT (and the stream format in :mod:`.stream`):

* :class:`Lpm01aCore`: the firmware's shell as a pure state machine (bytes in,
  :data:`Action` s out; no I/O, no time), and the pure encoders/decoders of
  its data stream (:func:`format_ascii_value`, :func:`encode_bin_value`,
  :mod:`.stream`);
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

import struct
import math
import re
from dataclasses import dataclass, replace
from typing import Iterable

from .stream import (
    META_ERROR,
    META_INFO,
    META_POWER,
    META_TARGET_DOWN,
    META_TEMPERATURE,
    META_VOLTAGE,
    _meta,
    ASCII_LIMITS, COMMON_COMMANDS, DURING_ACQUISITION, FREQS_HZ, FW_VERSION, MAX_ENERGY_FREQ_HZ, PROMPT, _UNITS, format_ascii_value, parse_value, power_status_record,
)


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


#: characters of a command line the shell keeps; the rest of an over-long line
#: is lost (the command then fails as unknown or with bad arguments).
#: Inferred: UM2269 gives no command buffer size; the longest command is ~40
LINE_SIZE = 256


class Lpm01aCore:
    """The PowerShield shell, a protocol core (:mod:`emulator.core`): host bytes
    in with :meth:`feed`, :data:`Action` s out of :meth:`step`. The device reports the end of an acquisition with
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
        self._rx = bytearray()
        self.reset()

    def reset(self) -> None:
        self.settings = Settings()
        self.host_control = False
        self.acquiring = False  # data streaming
        self.armed = False  # D7 trigger armed (trigsrc d7)
        self.target_on = False
        self.error: str | None = None  # what 'status' reports

    # -- bytes in ----------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Bytes from the host (buffered; :meth:`step` handles them)."""
        self._rx += data

    def step(self) -> list[Action] | None:
        """Handle the next complete command line; ``None``: none is complete.

        LF ends a line, CR too (a terminal's Enter); empty lines are ignored."""
        rx = self._rx
        while rx:
            ends = [i for i in (rx.find(10), rx.find(13)) if i >= 0]
            if not ends:
                self._line += rx[: max(0, LINE_SIZE - len(self._line))]
                rx.clear()
                return None
            end = min(ends)
            self._line += rx[: min(end, max(0, LINE_SIZE - len(self._line)))]
            del rx[: end + 1]
            if self._line:
                line = bytes(self._line)
                self._line.clear()
                return self.command(line.decode("latin-1"))
        return None

    def receive(self, data: bytes) -> list[Action]:
        """:meth:`feed` then every :meth:`step`, flattened (for tests and
        examples that drive the shell directly)."""
        self.feed(data)
        actions: list[Action] = []
        while (step := self.step()) is not None:
            actions.extend(step)
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


