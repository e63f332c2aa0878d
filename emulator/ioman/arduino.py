"""The EEMBC "IO Manager": an Arduino UNO running ``io-manager 1.0.3``, as used
with the EEMBC EnergyRunner in energy mode.

No source of this firmware is published; what is reproduced here was read off
the released image (``io-manager_1.0.3.hex``, once distributed in
eembc/energyrunner), the EnergyRunner README and the energy-mode logs of the
MLPerf Tiny v0.5 reference results. The protocol:

Host side: 115200 baud through the UNO's USB-serial bridge. Every character
up to ``%`` goes into a 64-character command buffer (further characters are
dropped, ``\\r``/``\\n`` are stored like any other). At ``%`` the buffer is
split on spaces (``strtok``); the first token is looked up in the command
table; up to 10 arguments are collected; the number of arguments must be the
command's (``dut`` takes any). Every command, known or not, ends with
``m-ready``::

    help           one line per command: " <name padded to 18><help>"
    name           m-name-io
    version        m-version-1.0.3
    dut <cmd...>   m-dut-passthrough(<args joined by one space>)
                   (and ``<args>%`` goes to the DUT)
    tm 0|1         m-timestmp-mode-FALLING | m-timestmp-mode-CHANGE
                   m-[Timer disabled after mode change]
    enable-timer   m-timer-enabled      (timestamp capture on D3 armed)
    disable-timer  m-timer-disabled
    res N          m-reset-polarity-0|1
    tp N           (nothing: pulses D4 low for N µs)
    i2c-enable N   m-i2c-enabled-N, or e-i2c-?mod16 when N % 16 != 0
    i2c-disable    m-i2c-disabled
    load-vdata     32 random bytes (0x10..0x7E), then as show-vdata
    show-vdata     m-vdata-<32 hex bytes joined by '-'>
    et             e-[EMON Triggering not supported]  (and an empty line)
    <unknown>      e-?<word>
    <wrong #args>  e-<cmd>-?#args?<given>!=<expected>

At power-up it prints ``m-ver-IoTConnect IO Manager 1.0.3`` and ``m-ready``.

DUT side: 9600 baud (AltSoftSerial). Each character from the DUT is
collected; ``\\r`` is dropped; at ``\\n`` the line goes to the host as
``[dut]: <line>``. The board does not wait for the DUT: it relays whatever
comes, whenever it comes.

Timestamps: with ``enable-timer``, edges on D3 (falling only after
``tm 0``, both edges after ``tm 1``, the power-up default) store ``micros()``
in a 32-entry ring; the main loop prints each as ``m-lap-us-<µs>``. On the
reference bench the timestamp GPIO goes to the EMON only (no such lines in
its logs); wire D3 to see them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .actions import (
    Action,
    BoundedQueue,
    Pulse,
    ToDut,
    ToHost,
    c_atoi16,
)

VERSION = b"1.0.3"
BANNER = b"m-ver-IoTConnect IO Manager " + VERSION + b"\r\n"
READY = b"m-ready\r\n"
LINE_SIZE = 64  # the command buffer
MAX_ARGS = 10
LAP_SLOTS = 32
VDATA_SIZE = 32
HELP_COLUMN = 18

#: HardwareSerial's 64-byte receive ring holds 63 characters
HOST_RX_CAPACITY = 63
#: AltSoftSerial's 80-byte receive ring holds 79 characters
DUT_RX_CAPACITY = 79
#: transmit rings: HardwareSerial 64 bytes (63 usable), AltSoftSerial 68 (67)
HOST_TX_BUFFER = 63
DUT_TX_BUFFER = 67

FALLING, CHANGE = 2, 1  # Arduino attachInterrupt modes

#: (name, number of arguments or -1 for any, help text), in the firmware's order
COMMANDS: tuple[tuple[str, int, str], ...] = (
    ("help", 0, ""),
    ("name", 0, "device name"),
    ("res", 1, "Reset polarity 0*,1"),
    ("enable-timer", 0, "Enable timer ISR"),
    ("disable-timer", 0, "Disable ISR"),
    ("dut", -1, "DUT passthrough"),
    ("i2c-enable", 1, "N : Enable I2C slave-mode to send N bytes (mod16)"),
    ("i2c-disable", 0, "Disable above"),
    ("load-vdata", 0, "Load 16 random bytes into vdata"),
    ("show-vdata", 0, "Show vdata"),
    ("et", 0, "Start Emon"),
    ("tm", 1, "0=fall/1*=change"),
    ("tp", 1, "[res]"),
    ("version", 0, "firmware version"),
)
_TABLE = {name.encode(): (nargs, help_) for name, nargs, help_ in COMMANDS}


def _arduino_hex(v: int) -> bytes:
    """``Print::print(long, HEX)``: upper-case digits, no padding."""
    return f"{v & 0xFFFFFFFF:X}".encode()


@dataclass
class ArduinoIoCore:
    """The io-manager 1.0.3 firmware as a state machine.

    ``clock_us`` returns the board's ``micros()`` (it seeds ``load-vdata``).
    """

    clock_us: Callable[[], int] = lambda: 0
    host_rx: BoundedQueue = field(init=False)
    dut_rx: BoundedQueue = field(init=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Power-up state (all RAM)."""
        self.host_rx = BoundedQueue(HOST_RX_CAPACITY)
        self.dut_rx = BoundedQueue(DUT_RX_CAPACITY)
        self.cmd = bytearray()
        self.dut_line = bytearray()
        self.timer_enabled = False
        self.edge_mode = CHANGE
        self.laps = [0] * LAP_SLOTS
        self.lap_head = 0
        self.lap_count = 0
        self.reset_polarity = 0
        self.i2c_bytes: int | None = None
        self.vdata = bytearray(VDATA_SIZE)
        self.rand_state = 1  # avr-libc random(): static state starts at 1
        self.commands = 0

    # -- inputs ------------------------------------------------------------------
    def boot(self) -> list[Action]:
        return [ToHost(BANNER), ToHost(READY)]

    def feed_host(self, data: bytes) -> int:
        return self.host_rx.put(data)

    def feed_dut(self, data: bytes) -> int:
        return self.dut_rx.put(data)

    def timestamp_edge(self, level: int, micros: int) -> bool:
        """An edge on D3 (INT1). Returns whether it was captured."""
        if not self.timer_enabled:
            return False
        if self.edge_mode == FALLING and level != 0:
            return False
        self.laps[self.lap_head] = micros & 0xFFFFFFFF
        self.lap_head = (self.lap_head + 1) % LAP_SLOTS
        if self.lap_count < LAP_SLOTS:
            self.lap_count += 1
        return True

    # -- the main loop -------------------------------------------------------------
    def step(self) -> list[Action] | None:
        """One pass of ``loop()``: queued timestamps, then one character from
        the host, then one from the DUT. ``None`` when there was nothing."""
        out: list[Action] = []
        while self.lap_count:
            idx = (self.lap_head - self.lap_count) % LAP_SLOTS
            self.lap_count -= 1
            out.append(ToHost(b"m-lap-us-%d\r\n" % self.laps[idx]))
        worked = bool(out)
        c = self.host_rx.get()
        if c is not None:
            worked = True
            if c == ord("%"):
                out.extend(self.execute(bytes(self.cmd)))
                self.cmd.clear()
            elif len(self.cmd) < LINE_SIZE:
                self.cmd.append(c)
        c = self.dut_rx.get()
        if c is not None:
            worked = True
            if c == 0x0A:
                out.append(ToHost(b"[dut]: " + bytes(self.dut_line) + b"\r\n"))
                self.dut_line.clear()
            elif c != 0x0D:
                self.dut_line.append(c)
        return out if worked else None

    # -- commands ---------------------------------------------------------------------
    def execute(self, line: bytes) -> list[Action]:
        """One command line (without ``%``); always ends with ``m-ready``."""
        self.commands += 1
        nul = line.find(b"\0")
        if nul >= 0:
            line = line[:nul]
        tokens = [t for t in line.split(b" ") if t]
        out: list[Action] = []
        if not tokens:
            # strtok() finds no token; no command name matches it
            out.append(ToHost(b"e-?\r\n"))
        elif tokens[0] not in _TABLE:
            out.append(ToHost(b"e-?" + tokens[0] + b"\r\n"))
        else:
            word = tokens[0]
            args = tokens[1 : 1 + MAX_ARGS]
            nargs, _ = _TABLE[word]
            if nargs >= 0 and nargs != len(args):
                out.append(ToHost(b"e-" + word + b"-?#args?%d!=%d\r\n" % (len(args), nargs)))
            else:
                out.extend(self._run(word, args))
        out.append(ToHost(READY))
        return out

    def _run(self, word: bytes, args: list[bytes]) -> list[Action]:
        if word == b"help":
            text = bytearray()
            for name, _, help_ in COMMANDS:
                text += b" " + name.encode() + b" " * max(0, HELP_COLUMN - len(name)) + help_.encode() + b"\r\n"
            return [ToHost(bytes(text))]
        if word == b"name":
            return [ToHost(b"m-name-io\r\n")]
        if word == b"version":
            return [ToHost(b"m-version-" + VERSION + b"\r\n")]
        if word == b"res":
            self.reset_polarity = 1 if c_atoi16(args[0]) != 0 else 0
            return [ToHost(b"m-reset-polarity-%d\r\n" % self.reset_polarity)]
        if word == b"enable-timer":
            self.lap_head = self.lap_count = 0
            self.timer_enabled = True
            return [ToHost(b"m-timer-enabled\r\n")]
        if word == b"disable-timer":
            self.timer_enabled = False
            return [ToHost(b"m-timer-disabled\r\n")]
        if word == b"dut":
            joined = b" ".join(args)
            return [ToHost(b"m-dut-passthrough(" + joined + b")\r\n"), ToDut(joined + b"%")]
        if word == b"tm":
            self.edge_mode = CHANGE if c_atoi16(args[0]) != 0 else FALLING
            self.timer_enabled = False
            mode = b"CHANGE" if self.edge_mode == CHANGE else b"FALLING"
            return [
                ToHost(b"m-timestmp-mode-" + mode + b"\r\n"),
                ToHost(b"m-[Timer disabled after mode change]\r\n"),
            ]
        if word == b"tp":
            width = c_atoi16(args[0]) & 0xFFFF
            return [Pulse("D4", float(width) if width >= 2 else 0.0)]
        if word == b"i2c-enable":
            n = c_atoi16(args[0])
            if n & 0xF:
                return [ToHost(b"e-i2c-?mod16\r\n")]
            self.i2c_bytes = n & 0xFFFF
            return [ToHost(b"m-i2c-enabled-%d\r\n" % self.i2c_bytes)]
        if word == b"i2c-disable":
            self.i2c_bytes = None
            return [ToHost(b"m-i2c-disabled\r\n")]
        if word == b"load-vdata":
            seed = self.clock_us() & 0xFFFFFFFF
            if seed:
                self.rand_state = seed  # randomSeed(micros())
            self.vdata = bytearray(16 + self._random() % 111 for _ in range(VDATA_SIZE))
            return self._show_vdata()
        if word == b"show-vdata":
            return self._show_vdata()
        if word == b"et":
            return [ToHost(b"e-[EMON Triggering not supported]\r\n\r\n")]
        raise AssertionError(f"command table entry without a handler: {word!r}")

    def _random(self) -> int:
        """avr-libc ``random()``: Park-Miller minimal standard generator."""
        x = self.rand_state & 0xFFFFFFFF or 123459876
        if x >= 0x80000000:
            x -= 0x100000000  # the state is a C long
        hi = abs(x) // 127773 * (1 if x >= 0 else -1)  # C division truncates
        lo = x - hi * 127773
        x = 16807 * lo - 2836 * hi
        if x < 0:
            x += 0x7FFFFFFF
        self.rand_state = x
        return x % 0x80000000

    def _show_vdata(self) -> list[Action]:
        values = [v - 256 if v >= 128 else v for v in self.vdata]  # signed char, sign-extended
        return [ToHost(b"m-vdata-" + b"-".join(_arduino_hex(v) for v in values) + b"\r\n")]
