"""The DUT firmware's protocol, as a pure state machine (no I/O, no time).

This reproduces what the MLPerf Tiny reference firmware (the EEMBC-derived
``internally_implemented.cpp`` of mlcommons/tiny, built with mbed-os and its
minimal printf, as on the NUCLEO-L4R5ZI reference board) does with the bytes
it receives, quirks included. See ``firmware_api_spec/`` for the protocol in
prose; the quirks reproduced here are listed there too:

* the command buffer keeps the first 80 characters of a line; later ones are
  lost (the write position saturates and the terminator overwrites it);
* a NUL byte ends the C string early; tokens are split on spaces only;
* numbers are read with C ``atoi`` (``infer 5x`` is 5, ``db load abc`` is 0);
* ``db`` hex bytes go to a fixed buffer; ``m-load-done`` only when the write
  position *equals* the declared size; ``db print`` prints bytes with the
  minimal printf's ``%x``, which ignores ``%02x``'s width (``5``, not ``05``),
  and ends a partial last line with an extra blank line;
* the parser answers nothing at all until boot has finished;
* mbed's stdio newline conversion works both ways: on input (``getchar``) a
  ``\\r`` becomes ``\\n`` and the second byte of a ``\\r\\n`` or ``\\n\\r``
  pair is dropped; on output every ``\\n`` not preceded by ``\\r`` goes out as
  ``\\r\\n``, including a ``\\n`` inside an echoed token;
* at boot TFLM's error reporter prints its arena-alignment warning (seen on
  the reference board for all four models) before ``m-init-done``.

The core follows the one convention of :mod:`emulator.core`: received bytes
go in with :meth:`DutCore.feed`; :meth:`DutCore.step` turns the next complete
command into its script, a list of actions (printing text, reading the
timestamp, loading the tensor, running inferences, printing results). A
device model (:mod:`emulator.dut.device`) executes the script in simulated
time; :func:`run_script` executes it instantly, which is what protocol tests
use. Both leave the firmware's semantics of each action to the core
(:meth:`DutCore.load_tensor`, :meth:`DutCore.lap_line`,
:meth:`DutCore.results_line`).

Firmware variants (opt-in; the default is the reference firmware)
------------------------------------------------------------------
:data:`VARIANTS` names a small set of *other* firmware builds, each the
reference firmware with one porting mistake a real port could make. They
exist so that a conformance tester (``tinytwin conform``) can be shown to
catch each deviation and to say whether it breaks a runner; nothing else
uses them, and ``variant="reference"`` (the default) changes nothing:

* ``results-format``: ``th_results()`` prints the values without the
  brackets (``m-results-0.000,0.003,...``), which the runners' result
  parsers do not recognise;
* ``no-ready-after-error``: a command that reports an ``e-[...]`` error
  returns before printing ``m-ready`` (a host waiting for it times out);
* ``cmd-buffer-64``: the command buffer holds 64 characters instead of 80
  (``EE_CMD_SIZE`` set too small), so the mlcommons runner's 65-character
  ``db`` commands lose their last hex digit;
* ``lost-lap-line``: ``ee_infer()`` does not take the timestamp that opens
  the timed window (no first ``m-lap-us-`` line in performance mode, no
  first falling edge in energy mode);
* ``dwt-timer``: ``th_timestamp()`` reads the Cortex-M cycle counter
  (``DWT->CYCCNT``, 32 bits) divided by the clock in MHz (120): the
  microsecond values restart at 0 every 2^32 / 120 µs (35.8 s) instead of
  wrapping at 2^32, so a window across that restart is wrong for every
  runner.
"""
from __future__ import annotations

import binascii
import re
from binascii import unhexlify
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Callable, Protocol

from ..clib import c_atoi, c_int
from ..core import Hang

# Firmware constants (internally_implemented.h)
EE_CMD_SIZE = 80
EE_CMD_TERMINATOR = ord("%")
EE_FW_VERSION = "ULPMark for tinyML Firmware V0.0.1"
EE_DEVICE_NAME = "dut"
TH_VENDOR_NAME_STRING = "unspecified"

MSG_READY = b"m-ready\r\n"
MSG_INIT_DONE = b"m-init-done\r\n"
#: what the anomaly-detection firmware's th_final_initialize() prints
MSG_AD_INITIALIZED = b"Initialized\r\n"
#: printed by TFLM (MicroErrorReporter) while th_final_initialize() builds the
#: interpreter: the reference board's logs show it at every power-on, for all
#: four models, before ad01's ``Initialized`` and ``m-init-done``
MSG_ARENA_ALIGNMENT = (
    b"4 bytes lost due to alignment. To avoid this loss, please make sure the "
    b"tensor_arena is 16 bytes aligned.\r\n"
)

HELP_TEXT = (
    EE_FW_VERSION + "\r\n"
    "\r\n"
    "help         : Print this information\r\n"
    "name         : Print the name of the device\r\n"
    "timestsamp   : Generate a timetsamp\r\n"
    "db SUBCMD    : Manipulate a generic byte buffer\r\n"
    "  load N     : Allocate N bytes and set load counter\r\n"
    "  db HH[HH]* : Load 8-bit hex byte(s) until N bytes\r\n"
    "  print [N=16] [offset=0]\r\n"
    "             : Print N bytes at offset as hex\r\n"
    "infer N [W=0]: Load input, execute N inferences after W warmup loops\r\n"
    "results      : Return the result fp32 vector\r\n"
).encode()

#: where the board's SRAM ends, seen from the start of the db buffer: reading
#: further faults the Cortex-M4 (see ``db print`` after an oversize ``db load``)
SRAM_BYTES = 640 * 1024

#: the bytes mbed's stdin conversion or the command parser treat specially
_SPECIAL = re.compile(rb"[\r\n%]")
_HEX_DIGITS = b"0123456789abcdefABCDEF"

#: the firmware builds the core can be (see the module docstring): name -> what differs
VARIANTS: dict[str, str] = {
    "reference": "the MLPerf Tiny reference firmware, quirks included (the default)",
    "results-format": "th_results() prints 'm-results-<values>' without the brackets",
    "no-ready-after-error": "no m-ready after a command that reports an e-[...] error",
    "cmd-buffer-64": "a 64-character command buffer instead of 80",
    "lost-lap-line": "the timestamp that opens the infer window is never taken",
    "dwt-timer": "the µs timer is the CPU's 32-bit cycle counter / 120: it wraps every 35.8 s, not at 2^32",
}


def check_variant(variant: str) -> str:
    """``variant`` if it names a firmware variant; ValueError naming the choices otherwise."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown firmware variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    return variant


# --------------------------------------------------------------------------
# operations


@dataclass(frozen=True)
class Print:
    text: bytes


@dataclass(frozen=True)
class Timestamp:
    """``th_timestamp()``: performance mode prints ``m-lap-us-<µs>``; energy
    mode pulls the timestamp GPIO low for a while (no output)."""


@dataclass(frozen=True)
class LoadTensor:
    """``th_load_tensor()``: copy the db buffer into the model input."""

    raw: bytes  # what ee_get_buffer() returned


@dataclass(frozen=True)
class Infer:
    count: int
    warmup: bool = False


@dataclass(frozen=True)
class Results:
    """``th_results()``: print the model's result line."""



Action = Print | Timestamp | LoadTensor | Infer | Results | Hang

#: the actions every command ends with / a completed download prints (made
#: once: actions are immutable)
_PRINT_READY = Print(MSG_READY)
_PRINT_LOAD_DONE = Print(b"m-load-done\r\n")


class Profile(Protocol):  # what the core needs of an I/O profile
    name: str
    model_version: str
    max_db_input_size: int
    input_count: int
    input_elem_size: int


# --------------------------------------------------------------------------
# C library and mbed stdio behaviour (the C library itself: emulator.clib)


def crlf(text: bytes) -> bytes:
    """mbed's output newline conversion: ``\\n`` not after ``\\r`` -> ``\\r\\n``.

    Applied to text the firmware echoes back (the literal format strings
    already carry ``\\r\\n``). Echoed text never starts after a ``\\r``."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", text)


def hex_minimal(b: int) -> bytes:
    """mbed minimal printf ``%x`` (also for ``%02x``: width is ignored)."""
    return f"{b:x}".encode()


class _Tokens:
    """C ``strtok(s, " ")`` over one command."""

    def __init__(self, line: bytes):
        self._parts = [p for p in line.split(b" ") if p]
        self._i = 0

    def next(self) -> bytes | None:
        if self._i >= len(self._parts):
            return None
        tok = self._parts[self._i]
        self._i += 1
        return tok


# --------------------------------------------------------------------------
# the state machine


class DutState(StrEnum):
    """What the DUT's CPU is doing (what its supply current depends on)."""

    OFF = "off"
    BOOT = "boot"
    IDLE = "idle"  # waiting for a command (WFI between UART interrupts)
    BUSY = "busy"  # handling a command
    INFER = "infer"  # running the model
    TX = "tx"  # blocked in a UART print


@dataclass
class DutCore:
    """The firmware's command handling state.

    Feed it received bytes with :meth:`feed`; :meth:`step` returns, for each
    command completed by a ``%``, the script of actions the firmware performs
    (``None`` once every complete command has been handled).
    """

    profile: Profile
    energy_mode: bool = False
    #: the firmware build (:data:`VARIANTS`); "reference" is the board's
    variant: str = "reference"
    parser_enabled: bool = False
    cmd: bytearray = field(default_factory=bytearray)
    buff: bytearray = field(init=False)
    buff_size: int = 0  # g_buff_size (size_t)
    buff_pos: int = 0  # g_buff_pos (size_t)
    lost_writes: int = 0  # db bytes past the end of the buffer (memory corruption on a board)
    stdin_prev: int = 0  # last byte getchar() read (mbed's input newline conversion)
    rx: bytearray = field(default_factory=bytearray)  # received, not yet read by getchar()

    def __post_init__(self) -> None:
        check_variant(self.variant)
        self.buff = bytearray(self.profile.max_db_input_size)
        #: EE_CMD_SIZE of this build
        self.cmd_size = 64 if self.variant == "cmd-buffer-64" else EE_CMD_SIZE

    # -- boot ------------------------------------------------------------------
    def boot_script(self, extra_init: bytes | None = None) -> list[Action]:
        """``ee_benchmark_initialize()``: what the board prints at power-on.

        ``extra_init`` is whatever the model's ``th_final_initialize()`` prints;
        by default the reference firmware's: the anomaly-detection build prints
        ``Initialized``, the others nothing.
        """
        if extra_init is None:
            extra_init = MSG_AD_INITIALIZED if self.profile.name == "ad01" else b""
        mode = b"energy" if self.energy_mode else b"performance"
        ops: list[Action] = [Print(b"m-timestamp-mode-" + mode + b"\r\n"), Timestamp()]
        ops.append(Print(MSG_ARENA_ALIGNMENT))
        if extra_init:
            ops.append(Print(extra_init))
        ops.append(Print(MSG_INIT_DONE))
        return ops

    def enable_parser(self) -> None:
        self.parser_enabled = True

    # -- bytes in ----------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Bytes the UART received (buffered until :meth:`step` reads them)."""
        self.rx += data

    def step(self) -> list[Action] | None:
        """``ee_serial_callback()`` for each byte ``getchar()`` returns, up to
        the next command that makes the firmware act; returns its script, or
        ``None`` when the received bytes hold no such command.

        Runs of ordinary bytes (anything but ``\\r``, ``\\n`` and ``%``) are
        copied at once; the special bytes are handled one by one, exactly as
        the firmware does for each character."""
        data = self.rx
        if not data:
            return None
        if not self.cmd:
            script = self.db_chunk(data)
            if script is not None:
                data.clear()
                return script
        cmd = self.cmd
        pos = 0
        n = len(data)
        special = _SPECIAL.search
        try:
            while pos < n:
                m = special(data, pos)
                end = m.start() if m is not None else n
                if end > pos:
                    # ordinary bytes: the write position saturates at 80; what is
                    # written there is overwritten by the terminating NUL, so lost
                    room = self.cmd_size - len(cmd)
                    if room > 0:
                        cmd += data[pos : min(end, pos + room)]
                    self.stdin_prev = data[end - 1]
                    pos = end
                    if m is None:
                        break
                c = data[pos]
                pos += 1
                # mbed's stdin newline conversion (before the firmware sees it)
                prev, self.stdin_prev = self.stdin_prev, c
                if c in (0x0D, 0x0A):
                    if prev in (0x0D, 0x0A) and prev != c:
                        continue  # second byte of a CR LF / LF CR pair
                    c = 0x0A
                if c == EE_CMD_TERMINATOR:
                    line = bytes(cmd[: self.cmd_size])
                    cmd.clear()
                    script = self.execute(line)
                    if script is not None:
                        return script
                elif len(cmd) < self.cmd_size:
                    cmd.append(c)
                # else: the write position saturates at 80 (see above)
            return None
        finally:
            del data[:pos]

    def db_chunk(self, data: bytes | bytearray) -> list[Action] | None:
        """The common case of :meth:`step`'s byte loop: ``data`` is exactly
        one ``db HH..%`` line, hex digits only, whole, and no command is
        under way; it is taken at once (the same script and state as byte by
        byte, except that ``data`` is not removed from :attr:`rx`: the caller
        does that, or never put it there). ``None``, having done nothing,
        otherwise."""
        n = len(data)
        if not self.parser_enabled or n > self.cmd_size + 1 or n < 6 or n & 1 or self.cmd:
            return None  # (an odd count of digits is an even length: "db " + digits + "%")
        if data[-1] != EE_CMD_TERMINATOR or not data.startswith(b"db "):
            return None
        try:
            values = unhexlify(data[3:-1])
        except binascii.Error:
            return None  # anything but hex digits (a space, a line end, NUL, ...): the loop
        pos = self.buff_pos
        count = len(values)
        if pos + count > self.profile.max_db_input_size:
            return None  # writes past the buffer: the byte loop counts them
        if pos < self.buff_size <= pos + count:  # the last bytes of the load
            count = self.buff_size - pos
            self.buff[pos : pos + count] = values[:count]
            ops: list[Action] = [_PRINT_LOAD_DONE, _PRINT_READY]
        else:
            self.buff[pos : pos + count] = values
            ops = [_PRINT_READY]
        self.buff_pos = pos + count
        self.stdin_prev = EE_CMD_TERMINATOR
        return ops

    def receive(self, data: bytes) -> list[list[Action]]:
        """:meth:`feed`, then every script :meth:`step` returns (for tests and
        tools that drive the firmware without a clock)."""
        self.feed(data)
        scripts = []
        while (script := self.step()) is not None:
            scripts.append(script)
        return scripts

    # -- commands ------------------------------------------------------------------
    def execute(self, line: bytes) -> list[Action] | None:
        """``ee_serial_command_parser_callback()`` for one line (without ``%``).

        Returns ``None`` when the firmware says nothing at all (parser not yet
        enabled)."""
        if not self.parser_enabled:
            return None
        nul = line.find(b"\0")
        if nul >= 0:
            line = line[:nul]
        toks = _Tokens(line)
        tok = toks.next()
        # strtok() returns NULL for an empty/blank line; the firmware then
        # compares and prints what is at address 0 (the initial stack pointer
        # of the vector table, whose first byte is 0): an empty string.
        word = tok if tok is not None else b""
        ops: list[Action] = []
        if word == b"name":
            ops.append(Print(f"m-name-{EE_DEVICE_NAME}-[{TH_VENDOR_NAME_STRING}]\r\n".encode()))
        elif word == b"timestamp":
            ops.append(Timestamp())
        elif not self._profile_parse(word, toks, ops):
            ops.append(Print(b"e-[Unknown command: " + crlf(word) + b"]\r\n"))
        if self.variant == "no-ready-after-error" and any(
            isinstance(op, Print) and op.text.startswith(b"e-[") for op in ops
        ):
            return ops
        ops.append(_PRINT_READY)
        return ops

    def _profile_parse(self, word: bytes, toks: _Tokens, ops: list[Action]) -> bool:
        if word == b"profile":
            ops.append(Print(f"m-profile-[{EE_FW_VERSION}]\r\n".encode()))
            ops.append(Print(f"m-model-[{self.profile.model_version}]\r\n".encode()))
        elif word == b"help":
            ops.append(Print(HELP_TEXT))
        elif word == b"db":
            self._buffer_parse(toks, ops)
        elif word == b"infer":
            n, w = 1, 10
            p = toks.next()
            if p is not None:
                i = c_atoi(p)
                if i <= 0:
                    ops.append(Print(b"e-[Inference iterations must be >0]\r\n"))
                    return True
                n = i
                p = toks.next()
                if p is not None:
                    i = c_atoi(p)
                    if i < 0:
                        ops.append(Print(b"e-[Inference warmup must be >=0]\r\n"))
                        return True
                    w = i
            ops.extend(self.infer_script(n, w))
        elif word == b"results":
            ops.append(Results())
        else:
            return False
        return True

    def infer_script(self, n: int, w: int) -> list[Action]:
        """``ee_infer(n, w)``."""
        ops: list[Action] = [LoadTensor(self.get_buffer(self.profile.input_count * self.profile.input_elem_size))]
        ops.append(Print(f"m-warmup-start-{c_int(w)}\r\n".encode()))
        if w:
            ops.append(Infer(w, warmup=True))
        ops.append(Print(b"m-warmup-done\r\n"))
        ops.append(Print(f"m-infer-start-{c_int(n)}\r\n".encode()))
        if self.variant != "lost-lap-line":
            ops.append(Timestamp())
        ops.append(Infer(n))
        ops.append(Timestamp())
        ops.append(Print(b"m-infer-done\r\n"))
        ops.append(Results())
        return ops

    def _buffer_parse(self, toks: _Tokens, ops: list[Action]) -> None:
        """``ee_buffer_parse()`` (after the ``db`` token)."""
        p = toks.next()
        maxsize = self.profile.max_db_input_size
        if p is None:
            ops.append(Print(b"e-[Command 'db' requires a subcommand]\r\n"))
        elif p == b"load":
            p = toks.next()
            if p is None:
                ops.append(Print(b"e-[Command 'db load' requires the # of bytes]\r\n"))
                return
            self.buff_size = c_atoi(p) & 0xFFFFFFFF  # (size_t)atoi()
            if self.buff_size == 0:
                ops.append(Print(b"e-[Command 'db load' must be >0 bytes]\r\n"))
                return
            self.buff_pos = 0
            if self.buff_size > maxsize:
                ops.append(
                    Print(
                        f"Supplied buffer size {c_int(self.buff_size)} exceeds maximum of {maxsize}\r\n".encode()
                    )
                )
            else:
                ops.append(Print(f"m-[Expecting {self.buff_size} bytes]\r\n".encode()))
        elif p == b"print":
            self._print_buffer(ops)
        else:
            digits = p[: self.cmd_size]
            if len(digits) & 1:
                ops.append(Print(b"e-[Insufficent number of hex digits]\r\n"))
                return
            if self._load_hex_fast(digits, ops):
                return
            for i in range(0, len(digits), 2):
                pair = digits[i : i + 2]
                try:
                    if pair.translate(None, _HEX_DIGITS):
                        raise ValueError
                    value = int(pair, 16)
                except ValueError:
                    ops.append(Print(b"e-[Invalid hex digit '" + crlf(pair) + b"']\r\n"))
                    return
                if self.buff_pos < maxsize:
                    self.buff[self.buff_pos] = value
                else:
                    self.lost_writes += 1
                self.buff_pos = (self.buff_pos + 1) & 0xFFFFFFFF
                if self.buff_pos == self.buff_size:
                    ops.append(_PRINT_LOAD_DONE)
                    return

    def _load_hex_fast(self, digits: bytes, ops: list[Action]) -> bool:
        """The common case of ``db HH..``: only hex digits, every byte inside
        the buffer, no wrap of the write position. Does what the byte-by-byte
        loop does, at once; returns False (having done nothing) otherwise."""
        if digits.translate(None, _HEX_DIGITS):
            return False
        pos = self.buff_pos
        count = len(digits) >> 1
        if pos + count > self.profile.max_db_input_size:
            return False  # writes past the buffer: the byte loop counts them
        done = pos < self.buff_size <= pos + count
        if done:
            count = self.buff_size - pos
        self.buff[pos : pos + count] = bytes.fromhex(digits[: 2 * count].decode("ascii"))
        self.buff_pos = pos + count
        if done:
            ops.append(_PRINT_LOAD_DONE)
        return True

    def _print_buffer(self, ops: list[Action]) -> None:
        size = self.buff_size
        maxsize = self.profile.max_db_input_size
        out = bytearray()
        readable = min(size, SRAM_BYTES)
        for i in range(readable):
            if i % 8 == 0:
                out += b"m-buffer-"
            out += hex_minimal(self.buff[i] if i < maxsize else 0)
            out += b"\r\n" if ((i + 1) % 8 == 0 or i + 1 == size) else b"-"
        if readable < size:
            ops.append(Print(bytes(out)))
            ops.append(Hang("db print read past the end of SRAM (HardFault)"))
            return
        if size % 8 != 0:
            out += b"\r\n"
        ops.append(Print(bytes(out)))

    # -- helpers for executors ---------------------------------------------------
    def get_buffer(self, max_len: int) -> bytes:
        """``ee_get_buffer()``: the first min(max_len, write position) bytes."""
        n = min(max_len, self.buff_pos)
        data = bytes(self.buff[: min(n, len(self.buff))])
        return data + bytes(n - len(data))

    def load_tensor(self, raw: bytes, engine: "Engine | None") -> bytes | None:
        """``th_load_tensor()`` with the buffer ``raw``: the input goes to the
        engine, or, when the size is wrong, the engine sees the short load and
        the firmware's message (returned) is printed."""
        err = self.load_tensor_error(raw)
        if engine is not None:
            if err is None:
                engine.set_input(raw)
            else:
                engine.load_short(raw)
        return err

    def results_line(self, text: str) -> bytes:
        """What ``th_results()`` prints, given the model's result line
        (``engine.results_text()``)."""
        line = text.encode("latin-1")
        if self.variant == "results-format" and line.startswith(b"m-results-["):
            line = b"m-results-" + line[len(b"m-results-[") :].replace(b"]\r\n", b"\r\n", 1)
        return line

    def lap_line(self, stamp_us: int) -> bytes:
        """What ``th_timestamp()`` prints in performance mode."""
        return f"m-lap-us-{stamp_us & 0xFFFFFFFF}\r\n".encode()

    def load_tensor_error(self, raw: bytes) -> bytes | None:
        """What ``th_load_tensor()`` prints when the buffer has the wrong size
        (the input tensor is then left as it was)."""
        expected = self.profile.input_count
        got = len(raw) // self.profile.input_elem_size
        if got != expected:
            return f"Input db has {got} elemented, expected {expected}\r\n".encode()
        return None


# --------------------------------------------------------------------------
# an instant executor, for protocol tests and tools


class Engine(Protocol):
    """What the firmware needs of the model (:mod:`emulator.models.engine`)."""

    def set_input(self, raw: bytes) -> None: ...

    def load_short(self, raw: bytes) -> None: ...

    def invoke(self, count: int = 1) -> None: ...

    def results_text(self) -> str: ...


def run_script(
    core: DutCore,
    script: list[Action],
    engine: Engine | None,
    timer_us: Callable[[], int] = lambda: 0,
) -> bytes:
    """Execute a script with no notion of time; returns what the board prints."""
    out = bytearray()
    for op in script:
        if isinstance(op, Print):
            out += op.text
        elif isinstance(op, Timestamp):
            if not core.energy_mode:
                out += core.lap_line(timer_us())
        elif isinstance(op, LoadTensor):
            out += core.load_tensor(op.raw, engine) or b""
        elif isinstance(op, Infer):
            if engine is not None:
                engine.invoke(op.count)
        elif isinstance(op, Results):
            if engine is not None:
                out += core.results_line(engine.results_text())
        elif isinstance(op, Hang):
            break
    return bytes(out)
