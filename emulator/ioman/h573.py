"""The MLCommons "enhanced interface board": an STM32H573I-DK running the
firmware of ``benchmark/interface`` in mlcommons/tiny, as used by the
mlcommons/tiny Python runner (``io_manager_enhanced.py``).

What it does (read off ``Application/CLI/Menu.cpp``, ``InterfaceMenu.cpp``,
``IO/Uart.cpp``, ``Test/DeviceUnderTest.cpp`` and ``Core/Src/baud_config.c``):

Host side: 115200 baud (USART1 on the ST-LINK virtual COM port). Received
bytes go to a 100-entry ThreadX queue (bytes that find it full are lost).
The menu reads up to ``%`` and matches the line against the command names *by
prefix*, in this order: ``dut``, ``name``, ``ls``, ``play``, ``setbaud``,
``checkbaud``, ``record_detections``, ``print_detections``,
``print_dutycycle``. A line equal to a name runs it with no argument; a name
followed by a space and at least one more character runs it with the rest as
argument (a C string: it ends at the first NUL byte); a name followed by
anything else (``names``, ``dut `` with nothing after the space) runs nothing
and answers *nothing*. A line that matches no
name (or an empty line) answers ``m-ready``. Answers::

    name               tinyML Enhanced Interface Board / m-ready
    dut <command>      m-dut-passthrough(<command>) / m-ready, then the DUT's
                       lines as "[dut]: <line>" up to its "m-ready" line
    checkbaud          baud is: <DUT baud>\\n m-ready
    setbaud <N>        set baud to: <N>\\n m-ready, then the board resets and
                       talks to the DUT at N (kept in flash; 0, >2000000 or
                       erased flash mean 9600)
    ls                 one line per file on the SD card, then m-ready
    play [file]        Attempting to play <file>\\n, then after the whole file
                       succeeded.\\n (or Error playing file. ...\\n) and m-ready;
                       the audio goes to the DUT over I2S meanwhile (see
                       :mod:`emulator.ioman.wave`)
    record_detections  Now recording detections / m-ready
    print_detections   Detection Timestamps (ms) / <t>, ... / m-ready
    print_dutycycle    Duty cycle start times (s) / ... / m-ready

The SD card is injected (``card``: see :class:`emulator.ioman.wave.Card`;
the default has no file, so ``play`` answers its error). ``play`` of a valid
file returns a :class:`PlayWave` action: the device plays it on the clock,
the menu thread blocked meanwhile (host bytes wait in the 100-byte queue).
Without a name ``play`` reads 180 KiB of the board's flash at 0x08080000,
which the twin takes as erased: not a WAV file.

``setbaud`` with a non-number makes ``std::stoi`` throw; the firmware has no
handler, so the board stops (answers nothing) until power-cycled. ``setbaud``
with 1 to 976 is stored and answered, but at the next boot USART3's divider
(its 64.0007 MHz clock over the baud) is above 0xFFFF: ``HAL_UART_Init``
fails, ``Error_Handler`` loops with interrupts off, and so at every boot until
the configuration flash is rewritten with a programmer.

DUT side: USART3 at the baud in flash (default 9600). Its receive queue (100
entries) is always filled, also between commands, so whatever the DUT prints
unasked (the boot banner after power-on) is still queued when the next
``dut`` command reads the DUT's answer, and is relayed first. The queue
drops what comes while it is full: the energy firmware's 154-byte banner
loses its last 54 bytes, its ``m-ready`` among them, so the next ``dut``
command relays the banner's first line, then its cut second line joined to
the first line of the command's own answer, then the rest of that answer
(unasked output that fits in the queue with its ``m-ready`` would be relayed
up to that ``m-ready``, and the command's own answer by the next one). The
passthrough reads lines ending in ``\\r\\n`` and waits as long as it takes
for a line equal to ``m-ready``: a DUT that never answers (powered off, wrong
baud) leaves the board waiting for good.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..core import Hang
from .wave import (ERROR_TEXT, HEADER_BYTES, PLAY_BUFFER_BYTES, SAI_KERNEL_HZ, Card, NoFiles, PlayedStream,
                   configure_error, parse_header)
from .actions import (
    Action,
    AwaitDut,
    BoundedQueue,
    DUT_BAUD,
    Restart,
    SetDutBaud,
    ToDut,
    ToHost,
)

NAME = b"tinyML Enhanced Interface Board"
READY = b"m-ready\r\n"
RX_QUEUE = 100  # RX_QUEUE_SIZE = 100 * sizeof(ULONG), one ULONG per byte
MAX_BAUD = 2_000_000
MAX_TIMESTAMPS = 10_000
MAX_FRAMES = 100
#: a command line the menu keeps (a std::string on the heap) beyond which the
#: board runs out of heap and stops. Inferred: the firmware's heap size is not
#: read off a source; the twin needs a bound, and no runner sends such a line
MAX_COMMAND = 1 << 16
INT_MAX = 2**31 - 1
#: time from NVIC_SystemReset to the menu running again (HAL, clocks, ThreadX,
#: FileX/SD and audio init). An estimate: no measurement of the board is
#: published.
BOOT_US = 100_000.0
#: USART3's kernel clock (``RCC.USART3Freq_Value`` of benchmark-interface.ioc),
#: and the range of its baud-rate divider (``UART_BRR_MIN``/``UART_BRR_MAX`` of
#: the STM32H5 HAL, oversampling by 16, prescaler 1)
USART3_CLOCK_HZ = 64_000_701
BRR_MIN, BRR_MAX = 0x10, 0xFFFF


def usart_divider(baud: int) -> int:
    """``UART_DIV_SAMPLING16(pclk, baud, UART_PRESCALER_DIV1)``."""
    return (USART3_CLOCK_HZ + baud // 2) // baud

COMMANDS = (
    "dut",
    "name",
    "ls",
    "play",
    "setbaud",
    "checkbaud",
    "record_detections",
    "print_detections",
    "print_dutycycle",
)


@dataclass(frozen=True)
class PlayWave:
    """``player.Play(wav)``: the player task opens the file and, if it is a
    WAV file the SAI can play, clocks ``stream`` out over I2S until its end
    (the menu thread waits). ``stream`` is ``None`` when opening or
    configuring failed (``why`` says what); the answer follows either way."""

    name: bytes
    stream: PlayedStream | None
    why: str | None = None


def cpp_stoi(text: bytes) -> int | None:
    """``std::stoi``: leading whitespace, sign, digits; ``None`` where it
    throws (no digits: invalid_argument; beyond int: out_of_range)."""
    i, n = 0, len(text)
    while i < n and text[i] in b" \t\n\v\f\r":
        i += 1
    j = i
    if j < n and text[j] in b"+-":
        j += 1
    k = j
    while k < n and 48 <= text[k] <= 57:
        k += 1
    if k == j:
        return None
    v = int(text[i:k])
    if not -(2**31) <= v <= INT_MAX:
        return None
    return v


@dataclass
class H573IoCore:
    """The interface-board firmware as a state machine.

    ``flash_baud`` is the word kept in the configuration flash sector
    (``None``: erased). ``clock_10us`` returns TIM2's counter (10 µs ticks,
    free running). ``audio_clock_ppm`` is the error of the SAI's kernel clock
    (PLL2 from the internal HSI oscillator, ``Core/Src/sai.c``) against its
    nominal 49.152 MHz: 0 plays at exactly 16 kHz; a real board's is off by
    hundreds to thousands of ppm (ioman_h573.md, "The twin").
    """

    flash_baud: int | None = None
    audio_clock_ppm: float = 0.0
    clock_10us: Callable[[], int] = lambda: 0
    card: Card = field(default_factory=NoFiles)
    host_rx: BoundedQueue = field(init=False)
    dut_rx: BoundedQueue = field(init=False)

    def __post_init__(self) -> None:
        self.reset()

    # -- state ---------------------------------------------------------------------
    def reset(self) -> None:
        """What a reset leaves: RAM cleared, the flash word kept."""
        self.host_rx = BoundedQueue(RX_QUEUE)
        self.dut_rx = BoundedQueue(RX_QUEUE)
        self.host_line = bytearray()
        self.dut_line = bytearray()
        self.dut_eol = bytearray()
        self.awaiting_dut = False
        self.stopped = False
        self.dut_baud = self.load_baud()
        self.tim2_offset = 0
        self.recording = False
        #: DeviceUnderTest::dut_state (0 Idle, 1 RecordingDetections); the
        #: word just before the detection array, which the firmware compares
        #: a first detection against (wwdet_timestamps[-1])
        self.dut_state = 0
        #: WaveSink's 8 KiB play buffer (heap: allocated at start, never cleared)
        self.play_buffer = bytearray(PLAY_BUFFER_BYTES)
        self.last_stream: PlayedStream | None = None
        self.detections: list[int] = []
        self.duty_starts: list[int] = []
        self.duty_stops: list[int] = []
        self.commands = 0

    def load_baud(self) -> int:
        """``LoadBaudRateFromFlash()``."""
        b = self.flash_baud
        if b is None or b == 0xFFFFFFFF or b == 0 or b > MAX_BAUD:
            return DUT_BAUD
        return b

    def tim2(self) -> int:
        return (self.clock_10us() - self.tim2_offset) & 0xFFFFFFFF

    # -- inputs ------------------------------------------------------------------------
    def boot(self) -> list[Action]:
        """``MX_USART3_UART_Init`` with the flash baud; the firmware prints
        nothing. A baud whose divider is out of the UART's range (1 to 976)
        fails ``HAL_UART_Init``, and ``Error_Handler`` loops for good."""
        if not BRR_MIN <= usart_divider(self.dut_baud) <= BRR_MAX:
            self.stopped = True
            return [Hang(f"HAL_UART_Init failed for the flash baud {self.dut_baud} (USART3 divider "
                         f"{usart_divider(self.dut_baud)} > 0xFFFF): Error_Handler at every boot until the "
                         "configuration flash is rewritten")]
        return [SetDutBaud(self.dut_baud)]

    def feed_host(self, data: bytes) -> int:
        return self.host_rx.put(data)

    def feed_dut(self, data: bytes) -> int:
        return self.dut_rx.put(data)

    def ww_detection_edge(self) -> None:
        """A falling edge on WW_DET_IN (``Record_WW_Detection``)."""
        now_ms = self.tim2() // 100
        if len(self.detections) >= MAX_TIMESTAMPS:
            return
        last = self.detections[-1] if self.detections else self.dut_state
        # the firmware compares with the entry before its index (with none
        # recorded, the word before the array: dut_state), unsigned: a
        # detection within 10 ms of the last one is ignored
        if last < ((now_ms - 10) & 0xFFFFFFFF) or last > now_ms:
            self.detections.append(now_ms)

    def dutycycle_edge(self, level: int) -> None:
        """An edge on DUT_DUTY_CYCLE: rising = start, falling = stop."""
        lst = self.duty_starts if level else self.duty_stops
        if len(lst) < MAX_FRAMES:
            lst.append(self.tim2())

    # -- the menu thread ------------------------------------------------------------------
    def step(self) -> list[Action] | None:
        if self.stopped:
            return None
        if self.awaiting_dut:
            return self._relay()
        while True:
            c = self.host_rx.get()
            if c is None:
                return None
            if c == ord("%"):
                line = bytes(self.host_line)
                self.host_line.clear()
                return self.handle(line)
            self.host_line.append(c)
            if len(self.host_line) > MAX_COMMAND:
                self.host_line.clear()
                self.stopped = True
                return [Hang(f"a command of more than {MAX_COMMAND} characters without '%' exhausted the heap "
                             "(inferred bound)")]

    def _relay(self) -> list[Action] | None:
        """``IndirectSendCommand`` + ``SendResponse``: DUT lines (ending in
        ``\\r\\n``, matched the way ``Uart::ReadUntil`` does) to the host."""
        out: list[Action] = []
        end = b"\r\n"
        while self.awaiting_dut:
            c = self.dut_rx.get()
            if c is None:
                break
            if end[len(self.dut_eol)] == c:
                self.dut_eol.append(c)
                if len(self.dut_eol) == len(end):
                    line = bytes(self.dut_line)
                    self.dut_line.clear()
                    self.dut_eol.clear()
                    # SendString(c_str()): the line stops at a NUL byte
                    text = line.split(b"\0", 1)[0]
                    out.append(ToHost(b"[dut]: " + text + b"\r\n"))
                    if line == b"m-ready":
                        self.awaiting_dut = False
            else:
                if self.dut_eol:
                    self.dut_line += self.dut_eol
                    self.dut_eol.clear()
                self.dut_line.append(c)
        return out or None

    def handle(self, buffer: bytes) -> list[Action]:
        """``Menu::HandleCommand``."""
        self.commands += 1
        n = len(buffer)
        for name in COMMANDS:
            cmd = name.encode()
            if n > 0 and buffer.startswith(cmd):
                if n == len(cmd):
                    return self.run(name, b"")
                if n > len(cmd) + 1 and buffer[len(cmd)] == ord(" "):
                    # action(&buffer[len + 1]) into a const std::string&: a C
                    # string, which ends at the first NUL byte
                    return self.run(name, buffer[len(cmd) + 1 :].split(b"\0", 1)[0])
                return []
        return [ToHost(READY)]  # Default()

    def run(self, name: str, args: bytes) -> list[Action]:
        if name == "dut":
            self.awaiting_dut = True
            return [
                ToHost(b"m-dut-passthrough(" + args + b")\r\n"),
                ToHost(READY),
                ToDut(args + b"%"),
                AwaitDut(b"m-ready"),
            ]
        if name == "name":
            return [ToHost(NAME + b"\r\n"), ToHost(READY)]
        if name == "ls":
            # the root directory's files, one a line (ListDirectory's defaults:
            # no directories, no hidden or system entries); the argument is ignored
            names = b"".join(n.encode("latin-1", "replace") + b"\r\n" for n in self.card.listing())
            return [ToHost(names + READY)]
        if name == "play":
            return self.play(args)
        if name == "setbaud":
            baud = cpp_stoi(args)
            if baud is None:
                self.stopped = True
                return [Hang(f"std::stoi({args.decode('latin-1')!r}) threw in setbaud")]
            self.flash_baud = baud & 0xFFFFFFFF
            return [
                ToHost(b"set baud to: " + args + b"\n"),
                ToHost(READY),
                Restart("setbaud: NVIC_SystemReset", BOOT_US),
            ]
        if name == "checkbaud":
            return [ToHost(b"baud is: %d\n" % self.dut_baud), ToHost(READY)]
        if name == "record_detections":
            self.tim2_offset = self.clock_10us()
            self.detections.clear()
            self.duty_starts.clear()
            self.duty_stops.clear()
            self.recording = True
            self.dut_state = 1
            return [ToHost(b"Now recording detections\r\n"), ToHost(READY)]
        if name == "print_detections":
            text = b"Detection Timestamps (ms)\r\n" + b"".join(b"%d,\r\n" % t for t in self.detections)
            return [ToHost(text), ToHost(READY)]
        if name == "print_dutycycle":
            text = bytearray(b"Duty cycle start times (s)\r\n")
            for i, t in enumerate(self.duty_starts):
                text += b"%d, " % t
                if (i + 1) % 8 == 0:
                    text += b"\r\n"
            text += b"\r\nDuty cycle stop times (s)\r\n"
            for i, t in enumerate(self.duty_stops):
                text += b"%d, " % t
                if (i + 1) % 8 == 0:
                    text += b"\r\n"
            return [ToHost(bytes(text)), ToHost(READY)]
        raise AssertionError(f"no handler for {name!r}")

    def play(self, args: bytes) -> list[Action]:
        """``InterfaceMenu::Play``: the name, then the player's verdict."""
        if not args:
            # FileSystem::OpenFile(""): a MemoryReader over 180 KiB of flash at
            # 0x08080000; the twin's flash there is erased, not a RIFF header
            name = b"@0x08080000"
            stream, why = None, "no file name: the board reads its flash at 0x08080000 (erased in the twin)"
        else:
            name = args
            stream, why = self._open_wave(args.decode("latin-1"))
        acts: list[Action] = [ToHost(b"Attempting to play " + name + b"\n"), PlayWave(name, stream, why)]
        if stream is None:
            return acts + [ToHost(ERROR_TEXT), ToHost(READY)]
        return acts + [ToHost(b"succeeded.\n"), ToHost(READY)]

    def _open_wave(self, name: str) -> tuple[PlayedStream | None, str | None]:
        if self.last_stream is not None:
            # the previous play is over: its file is closed, the buffer holds its end
            self.last_stream.finish()
            self.last_stream = None
        fh = self.card.open(name)
        if fh is None:
            return None, f"{name!r} is not on the SD card"
        try:
            head = fh.read(HEADER_BYTES)
            header = parse_header(head)
            if header is None:
                fh.close()
                return None, f"{name!r} has no canonical 44-byte WAV header (RIFF/WAVEfmt /data)"
            why = configure_error(header)
            if why is not None:
                fh.close()
                return None, f"{name!r}: {why}"
            size = fh.seek(0, 2)
        except OSError as exc:
            fh.close()
            return None, f"{name!r} cannot be read: {exc}"
        self.last_stream = PlayedStream(header, fh, size - HEADER_BYTES, self.play_buffer,
                                        kernel_hz=SAI_KERNEL_HZ * (1 + self.audio_clock_ppm * 1e-6))
        return self.last_stream, None
