"""The sww01 firmware's feature extraction, in its float32 order of operations.

What ``th_compute_lfbe_f32()`` of the streaming-wakeword reference firmware
(mlcommons/tiny ``sww_ref_l4r5zi``, ``Core/Src/sww_ref_util_submitter.c``) does
with a 1024-sample window every 32 ms, and what the frame handler does with
its result. Step by step (float32 unless noted):

1. ``x = (float)s / 32768.0`` (a double divide by a power of two, exact);
2. pre-emphasis with 0.96875 = 1 - 2**-5: ``y[0] = x[0] - last * 0.96875`` where
   ``last`` is the *previous* call's ``x[511]`` (a function static, never reset,
   shared by every command that extracts features), ``y[i] = x[i] - 0.96875 *
   x[i-1]``; every one of these products and differences is exact in float32
   (16-bit samples, a 5-bit coefficient), so no rounding happens here;
3. times a periodic Hamming window (the firmware's table: TensorFlow's float32
   ``hamming_window(1024, periodic=True)`` printed with 8 decimals);
4. a 1024-point real FFT (CMSIS ``arm_rfft_fast_f32``); the Nyquist value that
   CMSIS packs into the imaginary slot of bin 0 is moved to bin 512;
5. ``mag = sqrt(re*re + im*im)`` for bins 0..511 (``arm_cmplx_mag_f32``), bin
   512 the raw Nyquist value; ``power = mag * mag`` then ``* (1/1024)``;
6. 40 mel filters: one sequential float32 dot product each over a packed table
   (filter ``i`` covers bins ``starts[i] .. starts[i]+lens[i]-1``; DC excluded);
7. ``max(mel, 1e-30)`` (compared in double), ``10*log10()`` in double, stored
   as float, ``+52``, ``*(1/64)``, clipped to [0, 1].

Then the frame handler quantises each feature with ``(int8_t)(f / scale -
128)``: a float32 divide by the model's input scale, a float32 subtraction,
truncation toward zero, and, above 127, the low byte of the int32 (what GCC's
``vcvt.s32.f32`` + byte store does with this undefined conversion: 1.0 gives
-114). The 30x40 int8 model window shifts by 40 every frame, oldest frame
first; ``start`` fills it with int8 0 (not -128, the value of silence).

Where this differs from the board, and by how much (see ``tests/test_sww01_features.py``):

* the FFT is numpy's (pocketfft, float32 arithmetic), not CMSIS-DSP's radix-8
  algorithm; both are float32 FFTs, they round differently (a few ULP);
* the dot products and the magnitude are plain float32 without fused
  multiply-adds (whether the prebuilt CMSIS library fuses is not known);
* the tables are computed, not copied: the Hamming window matches the
  firmware's table to within 1 ULP (6 of 1024 entries differ), the mel table
  has the firmware's exact starts and lengths and matches its weights to within
  7.0e-6 (77 of 987 entries differ in the 6th decimal, where TensorFlow's float32
  ``log`` and numpy's differ by an ULP).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000
WINDOW = 1024  # SWW_WINLEN_SAMPLES
STRIDE = 512  # SWW_WINSTRIDE_SAMPLES: new samples per frame (32 ms)
SPECTRUM_BINS = WINDOW // 2 + 1  # 513
NUM_MEL = 40  # NUM_MEL_FILTERS
MODEL_FRAMES = 30
MODEL_INPUT_SIZE = MODEL_FRAMES * NUM_MEL  # SWW_MODEL_INPUT_SIZE = 1200
I2S_FRAME_BYTES = 2 * STRIDE * 2  # one DMA transfer: 512 stereo int16 pairs = 2048 bytes

PREEMPHASIS = np.float32(0.96875)
POWER_OFFSET = np.float32(52.0)
INV_BLOCK = np.float32(1.0 / WINDOW)
INV_64 = np.float32(1.0 / 64.0)
LOG_FLOOR = 1e-30  # compared in double; the value stored is (float)1e-30
#: the official model's input scale as a float32 (the firmware reads it from the
#: model: X-CUBE-AI's 0.003701042616739869f, the .tflite's scale)
OFFICIAL_INPUT_SCALE = np.float32(0.003701042616739869)
ZERO_POINT_OFFSET = np.float32(128.0)  # the firmware hard-codes "- 128"

_F32 = np.float32


# ---------------------------------------------------------------------- tables


@lru_cache(maxsize=1)
def hamming_window() -> np.ndarray:
    """The firmware's ``hamm_win_1024``: a periodic Hamming window computed as
    TensorFlow computes it in float32 (``0.54 - 0.46*cos(2*pi*n/N)``), then
    written with 8 decimals and read back as float32, as the C table is."""
    n = np.arange(WINDOW, dtype=_F32)
    arg = (_F32(2.0 * np.pi) * n) / _F32(WINDOW)
    w = (_F32(0.54) - _F32(0.46) * np.cos(arg)).astype(_F32)
    out = np.array([float(f"{v:.8f}") for v in w.tolist()], dtype=_F32)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class MelTable:
    """The packed mel filter bank: filter ``i`` weights bins
    ``starts[i] .. starts[i]+lens[i]-1`` with ``weights[offsets[i]:offsets[i]+lens[i]]``."""

    weights: np.ndarray  # float32, all non-zero runs packed together
    starts: tuple[int, ...]
    lens: tuple[int, ...]

    @property
    def offsets(self) -> tuple[int, ...]:
        out, acc = [], 0
        for n in self.lens:
            out.append(acc)
            acc += n
        return tuple(out)

    def dense(self) -> np.ndarray:
        """The (513, 40) matrix the packed table stands for (float64)."""
        m = np.zeros((SPECTRUM_BINS, len(self.starts)))
        for i, (s, n, o) in enumerate(zip(self.starts, self.lens, self.offsets)):
            m[s : s + n, i] = self.weights[o : o + n]
        return m


def _tf_linspace(start: np.float32, stop: np.float32, num: int) -> np.ndarray:
    """tf.linspace in float32: start + i * ((stop - start) / (num - 1))."""
    step = _F32((stop - start) / _F32(num - 1))
    return (start + step * np.arange(num, dtype=_F32)).astype(_F32)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return (_F32(1127.0) * np.log(_F32(1.0) + f / _F32(700.0))).astype(_F32)


@lru_cache(maxsize=1)
def mel_table() -> MelTable:
    """The firmware's ``lin2mel_packed_513x40``: TensorFlow's HTK
    ``linear_to_mel_weight_matrix(40, 513, 16000, 0, 8000)`` computed in float32
    (as training does, ``get_dataset.py``), DC bin excluded, each filter's run of
    non-zero weights packed, written with 6 decimals and read back as float32."""
    lin = _tf_linspace(_F32(0.0), _F32(SAMPLE_RATE / 2), SPECTRUM_BINS)[1:]
    bins_mel = _hz_to_mel(lin)[:, None]
    edges = _tf_linspace(_hz_to_mel(_F32(0.0)), _hz_to_mel(_F32(SAMPLE_RATE / 2)), NUM_MEL + 2)
    lower, center, upper = edges[:-2][None, :], edges[1:-1][None, :], edges[2:][None, :]
    lower_slope = (bins_mel - lower) / (center - lower)
    upper_slope = (upper - bins_mel) / (upper - center)
    w = np.maximum(_F32(0.0), np.minimum(lower_slope, upper_slope)).astype(_F32)
    w = np.vstack([np.zeros((1, NUM_MEL), _F32), w])  # the DC bin, zero
    packed: list[float] = []
    starts: list[int] = []
    lens: list[int] = []
    for i in range(NUM_MEL):
        nz = np.flatnonzero(w[:, i])
        s, e = int(nz[0]), int(nz[-1]) + 1
        starts.append(s)
        lens.append(e - s)
        packed += [float(f"{v:.6f}") for v in w[s:e, i].tolist()]
    weights = np.array(packed, dtype=_F32)
    weights.setflags(write=False)
    return MelTable(weights, tuple(starts), tuple(lens))


# ---------------------------------------------------------------- extraction


class FeatureExtractor:
    """``th_compute_lfbe_f32()`` with its static pre-emphasis memory.

    One instance stands for the firmware's one function: every path that
    extracts features (streaming, ``extract``, ``extract_uart_stream``,
    ``infer_wav``) shares ``last_value``, which nothing ever resets.
    """

    def __init__(self, window: np.ndarray | None = None, mel: MelTable | None = None):
        self.window = np.asarray(hamming_window() if window is None else window, dtype=_F32)
        if self.window.shape != (WINDOW,):
            raise ValueError(f"the window must have {WINDOW} values")
        table = mel_table() if mel is None else mel
        if len(table.starts) != NUM_MEL or len(table.lens) != NUM_MEL:
            raise ValueError(f"the mel table must have {NUM_MEL} filters")
        self.mel = table
        width = max(table.lens)
        # (40, width) gather indices and weights; the padding weights are 0 and
        # adding 0.0f to a float32 sum leaves it unchanged, so the padded loop
        # performs exactly each filter's sequential sum
        self._idx = np.zeros((NUM_MEL, width), dtype=np.intp)
        self._w = np.zeros((NUM_MEL, width), dtype=_F32)
        for i, (s, n, o) in enumerate(zip(table.starts, table.lens, table.offsets)):
            self._idx[i, :n] = np.arange(s, s + n)
            self._w[i, :n] = table.weights[o : o + n]
        self.last_value = _F32(0.0)  # static float32_t last_value = 0.0

    def mel_energies(self, power: np.ndarray) -> np.ndarray:
        """Step 6: each filter's ``arm_dot_prod_f32`` over its run of the power
        spectrum, read as ``acc = f32(acc + f32(p*w))`` one weight after the
        other. ``add.accumulate`` is that running float32 sum along each row
        (the same roundings; checked bit for bit in tests/test_sww01_features.py)."""
        products = (np.asarray(power, dtype=_F32)[self._idx] * self._w).astype(_F32)
        return np.add.accumulate(products, axis=1, dtype=_F32)[:, -1]

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """40 float32 features of one window of 1024 int16 samples."""
        s = np.asarray(samples)
        if s.shape != (WINDOW,):
            raise ValueError(f"a window has {WINDOW} samples, got shape {s.shape}")
        # 1. int16 -> float in [-1, 1)
        x = (s.astype(np.float64) / 32768.0).astype(_F32)
        # 2. pre-emphasis, continuous across calls through last_value
        tmp = (x * PREEMPHASIS).astype(_F32)  # arm_scale_f32
        y = np.empty(WINDOW, dtype=_F32)
        y[0] = _F32(x[0] - _F32(self.last_value * PREEMPHASIS))
        self.last_value = _F32(x[STRIDE - 1])  # pDst[511] (pDst[0] only changes if STRIDE == 1)
        y[1:] = x[1:] - tmp[:-1]  # arm_sub_f32
        # 3. window
        windowed = (y * self.window).astype(_F32)  # arm_mult_f32
        # 4. real FFT; CMSIS's packed layout: bin 0 real, Nyquist real, then bins 1..511
        spec = np.fft.rfft(windowed)
        re = spec.real.astype(_F32)
        im = spec.imag.astype(_F32)
        nyquist = re[WINDOW // 2]
        im[0] = _F32(0.0)  # pDst[1] = 0
        # 5. magnitude (bins 0..511), then squared; bin 512 is the raw Nyquist value
        mag = np.empty(SPECTRUM_BINS, dtype=_F32)
        mag[: WINDOW // 2] = np.sqrt((re[: WINDOW // 2] * re[: WINDOW // 2] + im[: WINDOW // 2] * im[: WINDOW // 2]).astype(_F32))
        mag[WINDOW // 2] = nyquist
        power = ((mag * mag).astype(_F32) * INV_BLOCK).astype(_F32)
        # 6. mel filters: sequential float32 dot products
        acc = self.mel_energies(power)
        # 7. floor, 10*log10 in double, +52, /64, clip
        floor = np.where(acc.astype(np.float64) > LOG_FLOOR, acc, _F32(LOG_FLOOR)).astype(_F32)
        db = (10.0 * np.log10(floor.astype(np.float64))).astype(_F32)
        db = (db + POWER_OFFSET).astype(_F32)  # arm_offset_f32
        scaled = (db * INV_64).astype(_F32)  # arm_scale_f32
        return np.where(scaled < 0.0, _F32(0.0), np.where(scaled > 1.0, _F32(1.0), scaled)).astype(_F32)


def quantize(features: np.ndarray, scale: np.float32 = OFFICIAL_INPUT_SCALE) -> np.ndarray:
    """``(int8_t)(f / scale - 128)`` for each feature: float32 arithmetic,
    truncation toward zero, values above 127 keep their low byte (1.0 -> -114)."""
    f = np.asarray(features, dtype=_F32)
    v = ((f / _F32(scale)).astype(_F32) - ZERO_POINT_OFFSET).astype(_F32)
    return (np.trunc(v).astype(np.int64) & 0xFF).astype(np.uint8).view(np.int8)


# ---------------------------------------------------------------- bookkeeping


def left_channel(frame: bytes) -> np.ndarray:
    """The samples the firmware keeps of one I2S DMA transfer: the even
    (first, left) slot of each of the 512 stereo pairs, int16 little-endian."""
    if len(frame) != I2S_FRAME_BYTES:
        raise ValueError(f"an I2S DMA transfer is {I2S_FRAME_BYTES} bytes, got {len(frame)}")
    return np.frombuffer(frame, dtype="<i2")[0::2].astype(np.int16)


class AudioWindow:
    """``g_wav_block_buff``: the newest 1024 samples, shifted by 512 per frame."""

    def __init__(self) -> None:
        self.samples = np.zeros(WINDOW, dtype=np.int16)

    def clear(self) -> None:
        self.samples[:] = 0

    def push(self, new: np.ndarray) -> np.ndarray:
        """Shift out the oldest 512 samples, append ``new``; returns the window."""
        new = np.asarray(new, dtype=np.int16)
        if new.shape != (STRIDE,):
            raise ValueError(f"a frame has {STRIDE} new samples")
        self.samples[: WINDOW - STRIDE] = self.samples[STRIDE:]
        self.samples[WINDOW - STRIDE :] = new
        return self.samples


class ModelWindow:
    """``g_model_input``: 30 frames x 40 int8 features, oldest first."""

    def __init__(self) -> None:
        self.data = np.zeros(MODEL_INPUT_SIZE, dtype=np.int8)

    def clear(self) -> None:
        """What ``start`` does: int8 0 everywhere (feature 0.474, not silence)."""
        self.data[:] = 0

    def push(self, q: np.ndarray) -> np.ndarray:
        """Shift by one frame and append the newest 40 int8 features."""
        q = np.asarray(q, dtype=np.int8)
        if q.shape != (NUM_MEL,):
            raise ValueError(f"a frame has {NUM_MEL} features")
        self.data[: MODEL_INPUT_SIZE - NUM_MEL] = self.data[NUM_MEL:]
        self.data[MODEL_INPUT_SIZE - NUM_MEL :] = q
        return self.data
