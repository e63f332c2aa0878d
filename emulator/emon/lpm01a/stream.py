"""The LPM01A's data stream: value codecs, stream records, and parsers of a
recorded stream (test oracles, examples). Pure: no clock, no I/O."""
from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field

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


