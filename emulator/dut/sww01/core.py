"""The sww01 DUT firmware as a pure protocol core: bytes and I2S frames in, actions out.

This is mlcommons/tiny's streaming-wakeword reference firmware
(``benchmark/reference_submissions/streaming_wakeword/sww_ref_l4r5zi``, bare-metal
STM32 HAL, newlib-nano printf) as a state machine without I/O and without time:

* :meth:`Sww01Core.feed` buffers bytes received on the DUT's UART (LPUART1);
* :meth:`Sww01Core.feed_audio` hands over one completed SAI DMA transfer (1024
  int16 = 512 stereo samples = 32 ms at 16 kHz);
* :meth:`Sww01Core.step` returns the next unit of firmware work as a list of
  frozen :data:`Action` values, in the firmware's order, or ``None`` when the
  firmware waits for input.

A unit is one of: the DMA-complete interrupt for one audio frame (served first:
it preempts the main loop), the echo line of a command (``Received command: ...``,
printed before the command is looked at), or the body of that command. A device
executes the actions in order on its clock; actions that take time carry what is
needed to time them (:class:`Extract`, :class:`Invoke`, :class:`MemOp`, the bytes of
:class:`Print`), the device decides durations.

The model runs through an injected engine (:class:`ModelEngine`) so the core stays
pure; :func:`emulator.dut.sww01.model.open_sww01` gives the real one.

Quirks kept (details in ``firmware_api_spec/sww01_protocol.md``): the command
buffer keeps 1028 characters; only spaces separate tokens and at most 8 count; a
missing argument reads the empty string at address 0 (``run_model`` falls back to
class0, ``db load`` prints ``()``); ``Unrecognized command`` names only the text up
to the end of the first token; ``db setptr`` without a number prints no line end;
the help text runs three entries together; ``i2scap`` above 32000 samples says it
captures 32000 but captures 16000 and pulls WW_DETECTED low after every chunk; the
pre-emphasis memory is shared by every path and never reset; the model window is
zero-filled by ``start`` and by the first ``extract_uart_stream`` only; every
frame whose score ``out[0] > 115`` pulses WW_DETECTED, and so does the first frame
after ``start`` (and the first ``infer_wav`` step) whatever its score.
"""
from __future__ import annotations

import enum
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Protocol

import numpy as np

from ...clib import c_atoi, c_int
from . import features as F

# -- firmware constants (sww_ref_util.h, sww_ref_util_submitter.h, sww_ref_util.c)
EE_CMD_SIZE = 1028  # characters kept of one command
TERMINATOR = ord("%")
MAX_CMD_TOKENS = 8
FW_VERSION = "MLPerf Tiny Firmware V0.1.0"
DEVICE_NAME = "dut"
VENDOR = "ML Commons"
MODEL_VERSION = "sww01"
DETECT_THRESHOLD = 115  # out[0] > 115 is a detection
NEAR_MISS = 100  # infer_wav reports out[0] > 100 as a near miss
I2S_CHUNK_BYTES = F.I2S_FRAME_BYTES  # g_i2s_chunk_size_bytes = 2048
GP_BUFF_BYTES = 64000  # g_gp_buff_bytes: activation log / wav capture
LOG_BUFFER_SIZE = 8192
TEST_WAV_LONG_LEN = 160000
DEFAULT_CAPTURE = GP_BUFF_BYTES // 2  # i2scap without a length: 32000 int16

# HAL values printed by `state` and `i2scap`
HAL_OK, HAL_ERROR, HAL_BUSY, HAL_TIMEOUT = 0, 1, 2, 3
SAI_STATE_READY, SAI_STATE_BUSY_RX = 1, 0x22

MSG_READY = b"m-ready\r\n"
STATUS_LEGEND = (
    b"    Status: 0=OK, 1=Error, 2=Busy, 3=Timeout; State: 0=Reset, 1=Ready, "
    b"2=Busy (internal process), 18=Busy (Tx), 34=Busy (Rx)\r\n"
)
#: printf(help_message): three entries lack their "\r\n"; the message ends in a lone
#: "%" after which newlib-nano's printf reads past the string (stack contents the
#: twin cannot know; it prints nothing more)
HELP_TEXT = (
    b"name        -- print out an identifying message\r\n"
    b"run_model   -- run the NN model. An optional  argument class0, class1, or class2 runs the model\r\n"
    b"               on a selected input that is expected to return 0 (WW), 1 (silent), or 2(other)\r\n"
    b"extract     -- run the feature extractor on the first block of a predefined wav form (test_wav_marvin)\r\n"
    b"i2scap      -- Captures about 1s of stereo audio over an I2S link\r\n"
    b"start       -- Start wakeword detection.  Repeatedly runs feature extraction and model on incoming I2S wav data"
    b"stop        -- Stop wakeword detection"
    b"state       -- print out the current operating mode (as int) and status of the I2S link"
    b"log         -- The I2S capture function can write debug messages to a log. Prints and clears that log.\r\n"
    b"help        -- Print this help message\r\n"
)


class State(enum.IntEnum):
    """``i2s_state_t`` (``state`` prints the number)."""

    IDLE = 0
    FILE_CAPTURE = 1
    STREAMING = 2
    STOPPING = 3


class Pin(enum.Enum):
    """The DUT's GPIO outputs that leave the board (NUCLEO-L4R5ZI pin names)."""

    WW_DETECTED = "PB8"  # to the interface board: falling edge = detection; idle high
    PROCESSING = "PE9"  # to the interface board: high while a frame is processed
    TIMESTAMP = "PF13"  # Arduino D7, to the energy monitor: falling edge = timestamp; idle high


#: levels MX_GPIO_Init() sets at boot
INITIAL_LEVELS = {Pin.WW_DETECTED: 1, Pin.PROCESSING: 0, Pin.TIMESTAMP: 1}


# ------------------------------------------------------------------ actions


@dataclass(frozen=True)
class Print:
    """Bytes written to the UART (``printf`` -> one blocking ``HAL_UART_Transmit`` per byte)."""

    text: bytes


@dataclass(frozen=True)
class SetPin:
    pin: Pin
    level: int


@dataclass(frozen=True)
class Pulse:
    """Drive ``pin`` low, ``th_delay_us(1)``, drive it high (``ee_timestamp()`` on
    TIMESTAMP; a detection on WW_DETECTED). ``th_delay_us(1)`` waits for TIM16 to
    tick; it never returns if it starts at 65535 (the device decides)."""

    pin: Pin


@dataclass(frozen=True)
class DelayUs:
    """``th_delay_us(us)`` (same caveat as :class:`Pulse`)."""

    us: int


@dataclass(frozen=True)
class ArmDma:
    """``th_dma_receive()``: SAI1 block A receives the next 1024 half-words (one
    32 ms frame) by DMA; its completion is the next :meth:`Sww01Core.feed_audio`."""


@dataclass(frozen=True)
class StopDma:
    """``th_dma_stop()`` (``HAL_SAI_DMAStop``)."""


@dataclass(frozen=True)
class MemOp:
    """A ``memset``/``memcpy`` of ``nbytes`` (``kind`` says which)."""

    kind: str
    nbytes: int


@dataclass(frozen=True)
class Extract:
    """One ``th_compute_lfbe_f32()`` over a 1024-sample window (data-independent work)."""


@dataclass(frozen=True)
class Invoke:
    """One ``th_ai_run()``: the model ran on ``window`` (1200 int8) and gave ``output``."""

    window: bytes
    output: tuple[int, ...]


@dataclass(frozen=True)
class Tim16Mark:
    """The firmware reads TIM16 (1 µs ticks, 16 bit) here."""


@dataclass(frozen=True)
class PrintTim16:
    """Print the timing line of ``kind`` (``"th_ai_run"`` or ``"th_compute_lfbe_f32"``)
    from the last two :class:`Tim16Mark` readings; see :func:`tim16_line`."""

    kind: str


Action = Print | SetPin | Pulse | DelayUs | ArmDma | StopDma | MemOp | Extract | Invoke | Tim16Mark | PrintTim16


def tim16_line(kind: str, start: int, stop: int) -> bytes:
    """The line ``run_model`` (``kind="th_ai_run"``: ``uint16_t`` values, ``%u``) or
    ``extract`` (``kind="th_compute_lfbe_f32"``: ``uint32_t`` values, ``%lu``) prints
    for TIM16 readings ``start`` and ``stop``."""
    start &= 0xFFFF
    stop &= 0xFFFF
    if kind == "th_ai_run":
        diff = (stop - start) & 0xFFFF
    elif kind == "th_compute_lfbe_f32":
        diff = (stop - start) & 0xFFFFFFFF
    else:
        raise ValueError(f"unknown timing line {kind!r}")
    return f"TIM16: {kind} took ({start} : {stop}) = {diff} TIM16 cycles\r\n".encode()


# ------------------------------------------------------------------ inputs


class ModelEngine(Protocol):
    """What the core needs of the model (``th_ai_run``)."""

    input_scale: np.float32  # the model input's quantisation scale, read by the firmware

    def set_input(self, window: np.ndarray) -> None: ...  # 1200 int8

    def invoke(self) -> None: ...

    def output(self) -> np.ndarray: ...  # 3 int8


@dataclass(frozen=True, eq=False)
class FixedData:
    """Arrays compiled into the firmware (``Core/Src/fixed_data.c``) that debug
    commands use. The twin ships none of them: ``test_wav_long`` is the left channel
    of ``short_wav_easy10s.wav`` (checked sample for sample); the others come from a
    user's mlcommons/tiny checkout through :meth:`from_c_source`."""

    test_input_class0: bytes | None = None  # 1200 int8 (run_model class0)
    test_input_class1: bytes | None = None
    test_input_class2: bytes | None = None
    test_wav_marvin: np.ndarray | None = None  # int16 (extract)
    test_wav_long: np.ndarray | None = None  # 160000 int16 (infer_wav)

    @classmethod
    def from_c_source(cls, text: str) -> "FixedData":
        """Read the arrays out of the text of ``fixed_data.c``; absent ones stay None."""

        def array(name: str) -> list[int] | None:
            m = re.search(rf"\b{name}\s*\[[^\]]*\]\s*=\s*\{{([^}}]*)\}}", text)
            if m is None:
                return None
            return [int(v, 0) for v in m.group(1).replace("\n", " ").split(",") if v.strip()]

        out: dict = {}
        for n in ("test_input_class0", "test_input_class1", "test_input_class2"):
            v = array(n)
            if v is not None:
                out[n] = np.array(v, dtype=np.int64).astype(np.int8).tobytes()
        for n in ("test_wav_marvin", "test_wav_long"):
            v = array(n)
            if v is not None:
                out[n] = np.array(v, dtype=np.int16)
        return cls(**out)


def _missing(command: str, array: str) -> bytes:
    return (
        f"tinytwin: {command} needs {array} from the sww01 firmware's Core/Src/fixed_data.c, "
        f"which is not loaded\r\n"
    ).encode()


# ------------------------------------------------------------------ printing


def dump_int8(values) -> bytes:
    """``ee_print_vals_int8()``: ``[`` then 16 values a line as ``%d%c `` (``,`` after
    each value but the last, which gets a space), ``\\r\\n`` after each line, ``]\\r\\n``."""
    vals = [int(v) for v in values]
    out = [b"["]
    n = len(vals)
    for i in range(0, n, 16):
        out.append(b"".join(b"%d%c " % (vals[j], 32 if j == n - 1 else 44) for j in range(i, min(i + 16, n))))
        out.append(b"\r\n")
    out.append(b"]\r\n")
    return b"".join(out)


def dump_int16(values) -> bytes:
    """``ee_print_vals_int16()``: like :func:`dump_int8` but the last value is followed
    by ``]`` and no closing line is printed."""
    vals = [int(v) for v in values]
    out = [b"["]
    n = len(vals)
    for i in range(0, n, 16):
        out.append(b"".join(b"%d%c " % (vals[j], 93 if j == n - 1 else 44) for j in range(i, min(i + 16, n))))
        out.append(b"\r\n")
    return b"".join(out)


def dump_float(values) -> bytes:
    """``ee_print_vals_float()``: 8 values a line as ``%3.5e%c ``, then ``]\\r\\n\\r\\n``."""
    vals = [float(v) for v in values]
    out = [b"["]
    n = len(vals)
    for i in range(0, n, 8):
        out.append(b"".join(b"%3.5e%c " % (vals[j], 32 if j == n - 1 else 44) for j in range(i, min(i + 8, n))))
        out.append(b"\r\n")
    out.append(b"]\r\n\r\n")
    return b"".join(out)


def _plus3(v: int) -> bytes:
    return f"{int(v):+3d}".encode()


# ------------------------------------------------------------------ the firmware


@dataclass
class Sww01Core:
    """The firmware's state. See the module docstring for the calling convention."""

    engine: ModelEngine | None = None
    fixed: FixedData = field(default_factory=FixedData)
    extractor: F.FeatureExtractor = field(default_factory=F.FeatureExtractor)

    state: State = State.IDLE  # g_i2s_state
    i2s_status: int = HAL_OK  # g_i2s_status (a device may set HAL_ERROR after a clock-less DMA stop)
    sai_state: int = SAI_STATE_READY  # hsai_BlockA1.State
    first_frame: int = 1  # g_first_frame
    int16s_read: int = 0  # g_int16s_read (uint32)
    wav_len: int = 0  # g_i2s_wav_len (uint32)
    act_idx: int = 0  # g_act_idx
    frames_dropped: int = 0  # transfers fed while no DMA was armed (the SAI would not have taken them)
    lost_writes: int = 0  # db bytes written outside the 2048-byte buffer (memory corruption on a board)

    def __post_init__(self) -> None:
        self._rx = bytearray()  # received, not yet read by the main loop
        self._cmd = bytearray()  # g_cmd_buf
        self._body: bytes | None = None  # echoed command waiting to be executed
        self._audio: deque[bytes] = deque()
        # malloc'ed buffers (uninitialised heap, modelled as zeros)
        self.buffers = [bytearray(I2S_CHUNK_BYTES), bytearray(I2S_CHUNK_BYTES)]  # g_i2s_buffer0/1
        self.buff_sel = 0  # g_i2s_buff_sel; g_i2s_current_buff is buffers[buff_sel]
        self._dma_target: int | None = None  # buffer the armed DMA writes, None = not armed
        self.gp = bytearray(GP_BUFF_BYTES)  # g_gp_buffer: activation log or wav record
        self.audio_window = F.AudioWindow()  # g_wav_block_buff
        self.model_window = F.ModelWindow()  # g_model_input
        self.log = bytearray()  # g_log (text up to current_pos)
        # ee_load_or_print_buff() statics
        self.db_state = 0
        self.transfer_size = 0
        self.bytes_loaded = 0
        self.uart_stream_calls = 0  # th_extract_features_on_chunk()'s num_calls

    # -- boot -------------------------------------------------------------------
    def boot(self) -> list[Action]:
        """``main()`` up to the UART loop: pin levels, then one timestamp pulse."""
        acts: list[Action] = [SetPin(p, v) for p, v in INITIAL_LEVELS.items()]
        acts.append(Pulse(Pin.TIMESTAMP))
        return acts

    # -- inputs -------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Bytes received on the UART, in order."""
        self._rx += data

    def feed_audio(self, frame: bytes) -> None:
        """One completed SAI DMA transfer: 2048 bytes, 512 stereo int16 pairs, left slot first."""
        if len(frame) != I2S_CHUNK_BYTES:
            raise ValueError(f"an SAI DMA transfer is {I2S_CHUNK_BYTES} bytes, got {len(frame)}")
        self._audio.append(bytes(frame))

    @property
    def dma_armed(self) -> bool:
        return self._dma_target is not None

    @property
    def activations(self) -> list[int]:
        """The activation log: ``out[0]`` of every frame since ``start``."""
        return [int(v) for v in np.frombuffer(bytes(self.gp[: self.act_idx]), dtype=np.int8)]

    # -- the main loop and the interrupt ------------------------------------------------
    def step(self) -> list[Action] | None:
        while self._audio:
            acts = self._dma_complete(self._audio.popleft())
            if acts is not None:
                return acts
        if self._body is not None:
            line, self._body = self._body, None
            return self._process(line) + [Print(MSG_READY)]
        if not self._rx:
            return None
        end = self._rx.find(TERMINATOR)
        if end < 0:
            self._take(self._rx)
            self._rx.clear()
            return None
        self._take(self._rx[:end])
        del self._rx[: end + 1]
        raw = bytes(self._cmd)
        self._cmd.clear()
        nul = raw.find(b"\0")
        line = raw if nul < 0 else raw[:nul]  # a C string ends at the first NUL
        self._body = line
        return [Print(b"Received command: " + line + b"\r\n")]

    def _take(self, data: bytes | bytearray) -> None:
        # g_cmd_buf[pos] = c; pos saturates at 1028, so whatever lands there is
        # overwritten by the terminating NUL: the first 1028 characters are kept
        room = EE_CMD_SIZE - len(self._cmd)
        if room > 0:
            self._cmd += data[:room]

    def _dma_complete(self, frame: bytes) -> list[Action] | None:
        """``HAL_SAI_RxCpltCallback()`` for one transfer (None: nothing was armed)."""
        if self._dma_target is None:
            self.frames_dropped += 1
            return None
        self.buffers[self._dma_target][:] = frame
        self._dma_target = None
        self.sai_state = SAI_STATE_READY  # normal-mode DMA: the HAL marks the SAI ready
        if self.state == State.FILE_CAPTURE:
            return self._capture_chunk()
        if self.state == State.STREAMING:
            return self._stream_chunk()
        if self.state == State.STOPPING:
            self.state = State.IDLE
            return [Print(b"Streaming stopped\r\n")]
        return []

    def _arm(self) -> ArmDma:
        """``th_dma_receive()`` into the current buffer."""
        if self.sai_state == SAI_STATE_READY:
            self.sai_state = SAI_STATE_BUSY_RX
            self._dma_target = self.buff_sel
            self.i2s_status = HAL_OK
        else:
            self.i2s_status = HAL_BUSY
        return ArmDma()

    def _toggle(self) -> int:
        idle = self.buff_sel
        self.buff_sel ^= 1
        return idle

    def _run_model(self, window: np.ndarray) -> tuple[np.ndarray, Invoke]:
        if self.engine is None:
            raise RuntimeError("the sww01 core needs a model engine for this (emulator.dut.sww01.model.open_sww01)")
        self.engine.set_input(window)
        self.engine.invoke()
        out = np.asarray(self.engine.output(), dtype=np.int8).reshape(-1)
        return out, Invoke(window.astype(np.int8).tobytes(), tuple(int(v) for v in out))

    def _scale(self) -> np.float32:
        if self.engine is None:
            raise RuntimeError("the sww01 core needs a model engine for this (emulator.dut.sww01.model.open_sww01)")
        return np.float32(self.engine.input_scale)

    def _new_frame(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[Action]]:
        """Features of ``window``, pushed into the model window, the model run on it."""
        q = F.quantize(self.extractor(window), self._scale())
        self.model_window.push(q)
        out, inv = self._run_model(self.model_window.data)
        return q, out, [Extract(), inv]

    def _stream_chunk(self) -> list[Action]:
        """``th_process_chunk_and_cont_streaming()``."""
        acts: list[Action] = [SetPin(Pin.PROCESSING, 1)]
        idle = self._toggle()
        acts.append(self._arm())
        left = np.frombuffer(bytes(self.buffers[idle]), dtype="<i2")[0::2]
        _, out, work = self._new_frame(self.audio_window.push(left))
        acts += work
        if int(out[0]) > DETECT_THRESHOLD or self.first_frame:
            acts.append(Pulse(Pin.WW_DETECTED))
            self.first_frame = 0
        if self.act_idx < GP_BUFF_BYTES:
            self.gp[self.act_idx] = int(out[0]) & 0xFF
            self.act_idx += 1
        acts.append(SetPin(Pin.PROCESSING, 0))
        return acts

    def _capture_chunk(self) -> list[Action]:
        """``ee_process_chunk_and_cont_capture()``."""
        acts: list[Action] = []
        half_words = I2S_CHUNK_BYTES // 2
        self.int16s_read = (self.int16s_read + half_words) & 0xFFFFFFFF
        idle = self._toggle()
        complete = not (self.int16s_read + half_words <= self.wav_len)
        if not complete:
            acts.append(self._arm())
        acts.append(SetPin(Pin.WW_DETECTED, 1))
        at = 2 * (self.int16s_read - half_words)
        self.gp[at : at + I2S_CHUNK_BYTES] = self.buffers[idle]
        acts.append(MemOp("memcpy", I2S_CHUNK_BYTES))
        if complete:
            acts.append(Print(f"DMA Receive completed {self.int16s_read} int16s read out of {self.wav_len} requested\r\n".encode()))
            rec = np.frombuffer(bytes(self.gp[: 2 * self.int16s_read]), dtype="<i2")
            acts.append(Print(dump_int16(rec)))
            self.state = State.IDLE
        acts.append(SetPin(Pin.WW_DETECTED, 0))
        return acts

    # -- commands -------------------------------------------------------------------
    def _process(self, line: bytes) -> list[Action]:
        """``ee_process_command()`` after the echo line."""
        toks = [t for t in line.split(b" ") if t][:MAX_CMD_TOKENS]
        if not toks:
            return [Print(b"Empty command (only a % read).  Type 'help%' for help\r\n")]
        args: list[bytes | None] = toks[1:] + [None] * (MAX_CMD_TOKENS - len(toks))
        cmd = toks[0]
        handler = self._COMMANDS.get(cmd)
        if handler is None:
            # full_command after strtok(): the text up to the end of the first token
            upto = len(line) - len(line.lstrip(b" ")) + len(cmd)
            return [Print(b"Unrecognized command " + line[:upto] + b"\r\n")]
        return handler(self, args)

    def _cmd_name(self, args) -> list[Action]:
        return [Print(f"m-name-{DEVICE_NAME}-[{VENDOR}]\r\n".encode())]

    def _cmd_profile(self, args) -> list[Action]:
        return [Print(f"m-profile-[{FW_VERSION}]\r\nm-model-[{MODEL_VERSION}]\r\n".encode())]

    def _cmd_help(self, args) -> list[Action]:
        return [Print(HELP_TEXT)]

    def _cmd_timestamp(self, args) -> list[Action]:
        return [Pulse(Pin.TIMESTAMP)]

    def _cmd_proc_hi(self, args) -> list[Action]:
        return [SetPin(Pin.PROCESSING, 1)]

    def _cmd_proc_lo(self, args) -> list[Action]:
        return [SetPin(Pin.PROCESSING, 0)]

    def _cmd_state(self, args) -> list[Action]:
        return [
            Print(f"g_i2s_status={self.i2s_status}, SAI state={self.sai_state}\r\n".encode()),
            Print(STATUS_LEGEND),
            Print(f"g_i2s_state = {int(self.state)}, g_int16s_read={self.int16s_read}\r\n".encode()),
        ]

    def _cmd_log(self, args) -> list[Action]:
        text = bytes(self.log)
        self.log.clear()
        return [Print(b"Log contents[cp=%d]:\r\n<" % len(text) + text + b">\r\n")]

    def _cmd_start(self, args) -> list[Action]:
        """``ee_start_detection()``."""
        if self.state != State.IDLE:
            return [Print(b"I2S Rx currently in progress. Ignoring request\r\n")]
        self.state = State.STREAMING
        self.int16s_read = 0
        self.first_frame = 1
        self.gp[:] = bytes(GP_BUFF_BYTES)
        self.act_idx = 0
        acts: list[Action] = [MemOp("memset", GP_BUFF_BYTES), Print(b"Listening for I2S data ... \r\n")]
        for buf in self.buffers:
            buf[:] = b"\xff" * I2S_CHUNK_BYTES
        self.model_window.clear()
        self.audio_window.clear()
        acts += [
            MemOp("memset", 2 * I2S_CHUNK_BYTES + F.MODEL_INPUT_SIZE + 2 * F.WINDOW),
            Pulse(Pin.TIMESTAMP),  # the energy window starts here
            SetPin(Pin.PROCESSING, 0),
            SetPin(Pin.PROCESSING, 1),
            DelayUs(1),
            SetPin(Pin.PROCESSING, 0),
            self._arm(),
            Print(b"DMA receive initiated.\r\n"),
        ]
        return acts

    def _cmd_stop(self, args) -> list[Action]:
        """``ee_stop_detection()``."""
        if self.state == State.STREAMING:
            self._dma_stop()
            self.state = State.IDLE
            return [
                StopDma(),
                Pulse(Pin.TIMESTAMP),  # the energy window ends here
                Print(b"Streaming stopped.\r\n"),
                Print(b"target activations: \r\n"),
                Print(dump_int8(self.activations)),
            ]
        if self.state == State.FILE_CAPTURE:
            self._dma_stop()
            self.state = State.IDLE
            return [StopDma(), Print(b"Wav capture stopped.\r\n")]
        if self.state == State.IDLE:
            return [Print(b"I2S is already idle.  Ignoring stop request\r\n")]
        return [Print(b"Stop already requested.\r\n")]

    def _dma_stop(self) -> None:
        self._dma_target = None
        self.sai_state = SAI_STATE_READY
        self.i2s_status = HAL_OK

    def _cmd_i2scap(self, args) -> list[Action]:
        """``ee_i2s_capture()``."""
        if self.state != State.IDLE:
            return [Print(b"I2S Rx currently in progress. Ignoring request\r\n")]
        acts: list[Action] = []
        if args[0] is not None:
            self.wav_len = c_atoi(args[0]) & 0xFFFFFFFF
            if self.wav_len > GP_BUFF_BYTES // 2:
                acts.append(Print(
                    f"Requested length {self.wav_len} exceeds available memory. "
                    f"Capturing {GP_BUFF_BYTES // 2} samples\r\n".encode()))
                self.wav_len = GP_BUFF_BYTES // 4  # sic: says 32000, captures 16000
        else:
            self.wav_len = DEFAULT_CAPTURE
            acts.append(Print(f"No length specified.  Capturing {self.wav_len} samples\r\n".encode()))
        self.state = State.FILE_CAPTURE
        self.int16s_read = 0
        acts.append(Print(b"Listening for I2S data ... \r\n"))
        self.gp[:] = bytes(GP_BUFF_BYTES)
        for buf in self.buffers:
            buf[:] = b"\xff" * I2S_CHUNK_BYTES
        acts.append(MemOp("memset", GP_BUFF_BYTES + 2 * I2S_CHUNK_BYTES))
        acts.append(self._arm())
        acts.append(Print(f"DMA receive initiated. status={self.i2s_status}, state={self.sai_state}\r\n".encode()))
        acts.append(Print(STATUS_LEGEND))
        return acts

    # -- db -----------------------------------------------------------------------------
    def _cmd_db(self, args) -> list[Action]:
        """``ee_load_or_print_buff()``: the buffer is g_i2s_buffer0 (2048 bytes)."""
        sub, arg = args[0], args[1]
        buf = self.buffers[0]
        size = I2S_CHUNK_BYTES
        if sub is None:
            return [Print(b"Error: db requires a sub-command: 'db load <Nbytes>'; 'db print [Nbytes]', 'db <hexstring>'\r\n")]
        if sub == b"load":
            self.transfer_size = c_atoi(arg)
            if self.transfer_size == 0:
                self.db_state = 0
                # a missing N is the empty string at address 0
                return [Print(b"Error: Transfer size (" + (arg or b"") + b") must be valid int; greater than 0.\r\n"
                              b"Usage: 'db load N'; N>0\r\n")]
            self.db_state = 1
            self.bytes_loaded = 0
            return [Print(b"Expecting %d bytes\r\n" % self.transfer_size)]
        if sub[:1] in b"0123456789abcdefABCDEF":  # isxdigit(first character)
            if self.db_state != 1:
                return [Print(b"Error: Must issue db load <Nbytes> command before transmitting data.\r\n")]
            if len(sub) % 2:
                return [Print(b"Error: number of hex digits in data string must be even. Received %d\r\n"
                              b"Still waiting for data\r\n" % len(sub))]
            for i in range(0, len(sub), 2):
                pair = sub[i : i + 2]
                if any(c not in b"0123456789abcdefABCDEF" for c in pair):
                    return [Print(b"Error: Received non-hex digit in character pair '" + pair
                                  + b"' at location %d\r\nCanceling segment upload. Still waiting for data\r\n" % (i + 2))]
                if 0 <= self.bytes_loaded < size:
                    buf[self.bytes_loaded] = int(pair, 16)
                else:
                    self.lost_writes += 1
                self.bytes_loaded = c_int(self.bytes_loaded + 1)
                if self.bytes_loaded >= size or self.bytes_loaded >= self.transfer_size:
                    self.db_state = 0
                    return [Print(b"m-load-done\r\n")]
            return [Print(b"%d bytes received\r\n" % self.bytes_loaded)]
        if sub == b"getptr":
            return [Print(b"m-buff-ptr-%d\r\n" % self.bytes_loaded)]
        if sub == b"setptr":
            if arg is not None:
                self.bytes_loaded = c_atoi(arg)
                return []
            return [Print(b"Error: setptr requires a numeric argument: 'db setptr 123%'")]  # no line end
        if sub == b"print":
            n = c_atoi(arg) if arg is not None else 0
            if n <= 0 or n > size:
                n = size
            return [Print(b"m-buffer-" + b"-".join(b"%02x" % v for v in buf[:n]) + b"\r\n")]
        if sub == b"print_i16":
            n = c_atoi(arg) if arg is not None else 0
            if n <= 0 or n > size // 2:
                n = size // 2
            return [Print(dump_int16(np.frombuffer(bytes(buf[: 2 * n]), dtype="<i2")))]
        return [Print(b"Error: db: Unrecognized sub-command " + sub + b"\r\n")]

    # -- model and feature commands -----------------------------------------------------------
    def _cmd_extract_uart_stream(self, args) -> list[Action]:
        """``th_extract_features_on_chunk()``: 512 mono samples from the db buffer."""
        if self.uart_stream_calls == 0:
            self.model_window.clear()
        mono = np.frombuffer(bytes(self.buffers[0][: 2 * F.STRIDE]), dtype="<i2")
        q, out, work = self._new_frame(self.audio_window.push(mono))
        self.uart_stream_calls += 1
        return work + [
            Print(b"m-features-[" + b", ".join(_plus3(v) for v in q) + b"]\r\n"),
            Print(b"m-activations-[" + b", ".join(_plus3(v) for v in out[:3]) + b"]\r\n"),
        ]

    def _cmd_run_model(self, args) -> list[Action]:
        """``th_run_model_on_test_data()``."""
        acts: list[Action] = [Print(b"In run_model. about to run model\r\n")]
        name = {b"class0": "test_input_class0", b"class1": "test_input_class1", b"class2": "test_input_class2"}.get(args[0])
        if name is None:
            acts.append(Print(b"Unknown input tensor name, defaulting to test_input_class0\r\n"))
            name = "test_input_class0"
        data = getattr(self.fixed, name)
        if data is None:
            return acts + [Print(_missing("run_model", name))]
        window = np.frombuffer(data, dtype=np.int8)
        acts += [SetPin(Pin.PROCESSING, 1), Tim16Mark()]
        out, inv = self._run_model(window)
        acts += [inv, Tim16Mark(), SetPin(Pin.PROCESSING, 0), PrintTim16("th_ai_run")]
        acts.append(Print(b"Output = [" + b"".join(b"%02d, " % int(v) for v in out) + b"]\r\n"))
        return acts

    def _cmd_extract(self, args) -> list[Action]:
        """``th_run_extraction()``: features of 1024 samples of test_wav_marvin."""
        wav = self.fixed.test_wav_marvin
        offset = c_atoi(args[0]) & 0xFFFFFFFF if args[0] else 0  # strtol -> uint32_t
        if wav is None:
            return [Print(_missing("extract", "test_wav_marvin"))]
        if offset + F.WINDOW > len(wav):
            return [Print(
                f"tinytwin: extract {offset} reads past test_wav_marvin ({len(wav)} samples); "
                f"the board would read whatever follows it in flash\r\n".encode())]
        samples = np.asarray(wav[offset : offset + F.WINDOW], dtype=np.int16)
        feats = self.extractor(samples)
        return [
            Tim16Mark(), Extract(), Tim16Mark(), PrintTim16("th_compute_lfbe_f32"),
            Print(b"\r\n{\r\n\"Input\": " + dump_int16(samples) + b",\r\n \"Output\": " + dump_float(feats) + b"}\r\n"),
        ]

    def _cmd_infer_wav(self, args) -> list[Action]:
        """``th_infer_static_wav()``: the whole pipeline over the built-in 10 s wav."""
        offset = c_atoi(args[0])
        acts: list[Action] = [Print(b"Infering on static wav with offset = %d\r\n" % offset)]
        wav = self.fixed.test_wav_long
        if wav is None:
            return acts + [Print(_missing("infer_wav", "test_wav_long"))]
        if not 0 <= offset <= len(wav) - F.STRIDE:
            return acts + [Print(
                f"tinytwin: infer_wav {offset} reads outside test_wav_long ({len(wav)} samples); "
                f"the board would read whatever surrounds it in flash\r\n".encode())]
        steps = (len(wav) - offset - (F.WINDOW - F.STRIDE)) // F.STRIDE
        self.model_window.clear()
        for k in range(steps):
            start = offset + k * F.STRIDE
            q, out, work = self._new_frame(np.asarray(wav[start : start + F.WINDOW], dtype=np.int16))
            score = int(out[0])
            acts += [work[0], Print(b"(" + dump_int8(q) + b", "), work[1]]
            if score > DETECT_THRESHOLD or self.first_frame:
                line = b"[%d]: Detection (%d).  g_first_frame=%d\r\n" % (k, score, self.first_frame)
                acts.append(Print(line))
                self._log(line)
                self.first_frame = 0
            elif score > NEAR_MISS:
                acts.append(Print(b"[%d]: Near miss (%d). \r\n" % (k, score)))
            acts.append(Print(b"%d), \r\n" % score))
        return acts

    def _log(self, text: bytes) -> None:
        """``ee_log_printf()``: a line that would not fit empties the log first."""
        if len(self.log) + len(text) >= LOG_BUFFER_SIZE:
            self.log.clear()
        self.log += text[: LOG_BUFFER_SIZE - 1]

    _COMMANDS: ClassVar[dict[bytes, Callable]] = {
        b"name": _cmd_name,
        b"profile": _cmd_profile,
        b"run_model": _cmd_run_model,
        b"extract": _cmd_extract,
        b"i2scap": _cmd_i2scap,
        b"log": _cmd_log,
        b"start": _cmd_start,
        b"stop": _cmd_stop,
        b"state": _cmd_state,
        b"db": _cmd_db,
        b"help": _cmd_help,
        b"timestamp": _cmd_timestamp,
        b"proc_hi": _cmd_proc_hi,
        b"proc_lo": _cmd_proc_lo,
        b"infer_wav": _cmd_infer_wav,
        b"extract_uart_stream": _cmd_extract_uart_stream,
    }


# ------------------------------------------------------------------ an instant executor


def printed(actions: list[Action], tim16: Callable[[], int] = lambda: 0) -> bytes:
    """What ``actions`` print when no time passes (TIM16 read through ``tim16``)."""
    out = bytearray()
    marks: list[int] = []
    for a in actions:
        if isinstance(a, Print):
            out += a.text
        elif isinstance(a, Tim16Mark):
            marks.append(tim16())
        elif isinstance(a, PrintTim16):
            out += tim16_line(a.kind, marks[-2], marks[-1])
    return bytes(out)


def run_until_idle(core: Sww01Core, tim16: Callable[[], int] = lambda: 0) -> bytes:
    """Step ``core`` until it waits for input; everything it printed."""
    out = bytearray()
    while (acts := core.step()) is not None:
        out += printed(acts, tim16)
    return bytes(out)
