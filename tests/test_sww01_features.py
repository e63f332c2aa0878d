"""The sww01 feature extraction (emulator/dut/sww01/features.py) against an
independent float64 reference, plus hand-checked edge cases.

The reference is written differently on purpose: pre-emphasis over the whole
signal at once (not per frame with a carried sample), the Hamming window and the
HTK mel matrix from their formulas in float64 (not the firmware's rounded float32
tables), an explicit DFT matrix (not an FFT), power as re^2 + im^2 (not a squared
square root) and a dense matrix product (not packed dot products).

Tolerances (measured, then stated here): the float32 features differ from the
float64 ones by at most 3.6e-6 on the 312 frames of short_wav_easy10s.wav and
5.4e-7 on 64 frames of a synthetic tone+noise signal (FEATURE_TOL = 1e-5 allows 3x);
int8 features: 0 of 12,480 differ on the wav, 1 of 2,560 (by one LSB) on the
synthetic signal (INT8_FLIPS_PER_1000 = 1). Each plausible wrong order of
operations moves the features by far more: symmetric instead of periodic window
4.9e-4 (synthetic) / 1.2e-3 (wav), pre-emphasis restarted every frame 0.031 /
0.065, natural log 0.46, power not divided by 1024 0.47, no +52 offset 0.70 / 0.81;
test_wrong_orders_are_caught asserts more than 20x the tolerance.
"""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from emulator.dut.sww01 import features as F

FEATURE_TOL = 1e-5  # measured max |float32 - float64|: 3.6e-6 (see the module docstring)
INT8_FLIPS_PER_1000 = 1  # measured: 0 of 12,480 (wav), 1 of 2,560 (synthetic)


# ------------------------------------------------------------ the float64 reference


def _htk_mel_matrix() -> np.ndarray:
    """(513, 40) triangular filters, linear in mel = 1127 ln(1 + f/700), DC bin excluded."""
    hz = np.arange(F.SPECTRUM_BINS) * (F.SAMPLE_RATE / 2) / (F.SPECTRUM_BINS - 1)
    mel = 1127.0 * np.log1p(hz / 700.0)
    edges = np.linspace(0.0, 1127.0 * np.log1p(8000.0 / 700.0), F.NUM_MEL + 2)
    m = np.zeros((F.SPECTRUM_BINS, F.NUM_MEL))
    for i in range(F.NUM_MEL):
        lo, c, hi = edges[i : i + 3]
        up = (mel - lo) / (c - lo)
        down = (hi - mel) / (hi - c)
        m[:, i] = np.clip(np.minimum(up, down), 0.0, None)
    m[0, :] = 0.0
    return m


def reference(signal: np.ndarray, frames: int, *, symmetric=False, restart_preemphasis=False,
              natural_log=False, divide_power=True, offset=52.0) -> np.ndarray:
    """Features of frames 0..frames-1 of an int16 signal as the firmware's stream
    sees it (frame j's window: samples 512(j-1) .. 512(j+1), zeros before the start)."""
    x = np.concatenate([np.zeros(F.STRIDE), np.asarray(signal, dtype=np.float64) / 32768.0])
    n = np.arange(F.WINDOW)
    denom = F.WINDOW - 1 if symmetric else F.WINDOW
    win = 0.54 - 0.46 * np.cos(2.0 * np.pi * n / denom)
    k = np.arange(F.SPECTRUM_BINS)
    dft = np.exp(-2j * np.pi * np.outer(n, k) / F.WINDOW)
    mel = _htk_mel_matrix()
    if restart_preemphasis:
        segs = [x[F.STRIDE * j : F.STRIDE * j + F.WINDOW] for j in range(frames)]
        ys = [np.concatenate([[s[0]], s[1:] - 0.96875 * s[:-1]]) for s in segs]
    else:
        y = x - 0.96875 * np.concatenate([[0.0], x[:-1]])
        ys = [y[F.STRIDE * j : F.STRIDE * j + F.WINDOW] for j in range(frames)]
    spec = (np.stack(ys) * win) @ dft
    power = spec.real**2 + spec.imag**2
    if divide_power:
        power = power / F.WINDOW
    energy = np.maximum(power @ mel, 1e-30)
    db = 10.0 * (np.log(energy) if natural_log else np.log10(energy))
    return np.clip((db + offset) / 64.0, 0.0, 1.0)


def firmware(signal: np.ndarray, frames: int) -> np.ndarray:
    """The same frames through the emulator's float32 path, frame by frame."""
    ex, win = F.FeatureExtractor(), F.AudioWindow()
    s = np.asarray(signal, dtype=np.int16)
    return np.stack([ex(win.push(s[F.STRIDE * j : F.STRIDE * (j + 1)])) for j in range(frames)])


def _short_wav_left(shared: Path) -> np.ndarray:
    with wave.open(str(shared / "sd_card" / "short_wav_easy10s.wav")) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels())
    return data[:, 0].copy()


def _synthetic() -> np.ndarray:
    rng = np.random.default_rng(12)
    t = np.arange(64 * F.STRIDE) / F.SAMPLE_RATE
    sig = 9000 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 0.7 * t) + rng.normal(0, 300, t.size)
    return np.clip(np.round(sig), -32768, 32767).astype(np.int16)


def _signal(name: str) -> tuple[np.ndarray, int]:
    if name == "synthetic":
        return _synthetic(), 64
    from conftest import shared_dir

    shared = shared_dir()
    if shared is None or not (shared / "sd_card" / "short_wav_easy10s.wav").is_file():
        pytest.skip("short_wav_easy10s.wav is absent: it is mlcommons/tiny's benchmark/runner/sd_card/"
                    "short_wav_easy10s.wav, expected in ../shared/sd_card (or set TINYTWIN_SHARED)")
    return _short_wav_left(shared), 312


# ------------------------------------------------------------ comparisons


@pytest.mark.parametrize("name", ["synthetic", "short_wav"])
def test_matches_float64_reference(name):
    sig, frames = _signal(name)
    got = firmware(sig, frames)
    ref = reference(sig, frames)
    assert got.dtype == np.float32 and got.shape == (frames, F.NUM_MEL)
    diff = np.abs(got.astype(np.float64) - ref)
    assert diff.max() <= FEATURE_TOL, diff.max()
    q_got = F.quantize(got).astype(int)
    q_ref = F.quantize(ref.astype(np.float32)).astype(int)
    flips = np.abs(q_got - q_ref)
    assert flips.max() <= 1
    assert flips.sum() * 1000 <= INT8_FLIPS_PER_1000 * flips.size, int(flips.sum())


@pytest.mark.parametrize("mutation", [
    {"symmetric": True},
    {"restart_preemphasis": True},
    {"natural_log": True},
    {"divide_power": False},
    {"offset": 0.0},
])
def test_wrong_orders_are_caught(mutation):
    sig = _synthetic()
    good = firmware(sig, 64).astype(np.float64)
    bad = reference(sig, 64, **mutation)
    assert np.abs(good - bad).max() > 20 * FEATURE_TOL


# ------------------------------------------------------------ hand-checked cases


def test_silence_is_zero_and_minus_128():
    ex = F.FeatureExtractor()
    f = ex(np.zeros(F.WINDOW, dtype=np.int16))
    # every mel energy is 0 -> floor 1e-30 -> 10*log10 = -300 -> (-300+52)/64 < 0 -> 0
    assert np.array_equal(f, np.zeros(F.NUM_MEL, dtype=np.float32))
    assert np.array_equal(F.quantize(f), np.full(F.NUM_MEL, -128, dtype=np.int8))


def test_full_scale_tone_clips_and_wraps():
    # 4 kHz = bin 256 exactly, full scale: filter 30 (weight 0.98 at bin 256)
    # saturates at 1.0, and 1.0 / 0.0037010426 - 128 = 142.19 -> 142 -> low byte -> -114;
    # filter 29 (weight 0.018 there) stays below 1 and does not wrap
    n = np.arange(F.WINDOW)
    tone = np.round(32767 * np.sin(2 * np.pi * 256 * n / F.WINDOW)).astype(np.int16)
    f = F.FeatureExtractor()(tone)
    main = int(np.argmax(F.mel_table().dense()[256]))
    assert main == 30
    assert f[30] == np.float32(1.0) and F.quantize(f)[30] == -114
    assert 0.9 < f[29] < 1.0 and 100 < F.quantize(f)[29] <= 127
    assert f.max() == np.float32(1.0) and f.min() >= 0.0


def test_quantization_truncates_toward_zero_and_wraps():
    s = F.OFFICIAL_INPUT_SCALE
    cases = {
        0.0: -128,  # silence
        1.0: -114,  # 142.19 -> 142 -> 142 - 256
        float(np.float32(127.6) * s): -0,  # 127.6 - 128 = -0.4 -> 0 (toward zero, not -1)
        float(np.float32(0.5) * s): -127,  # 0.5 - 128 = -127.5 -> -127
        float(np.float32(255.5) * s): 127,  # 127.5 -> 127
        float(np.float32(256.5) * s): -128,  # 128.5 -> 128 -> wraps to -128
    }
    got = F.quantize(np.array(list(cases), dtype=np.float32))
    assert [int(v) for v in got] == list(cases.values())


def test_preemphasis_memory_is_carried_from_the_previous_window():
    ex = F.FeatureExtractor()
    first = np.zeros(F.WINDOW, dtype=np.int16)
    first[F.STRIDE - 1] = 32767  # the sample just before the next window starts
    ex(first)
    assert ex.last_value == np.float32(32767 / 32768)
    # an all-zero window now starts with y[0] = -0.96875 * 32767/32768: an impulse
    # of height v = y[0] * w[0], whose power is v^2/1024 in every bin
    f = ex(np.zeros(F.WINDOW, dtype=np.int16))
    v = float(np.float32(np.float32(-F.PREEMPHASIS * np.float32(32767 / 32768)) * F.hamming_window()[0]))
    p = v * v / 1024.0
    table = F.mel_table()
    expect = [
        np.clip((10 * np.log10(p * float(table.weights[o : o + n].astype(np.float64).sum())) + 52) / 64, 0, 1)
        for o, n in zip(table.offsets, table.lens)
    ]
    assert np.allclose(f, expect, atol=1e-6)
    assert f.min() > 0.05  # well above the clip: the carried sample is what makes them non-zero
    assert np.array_equal(F.FeatureExtractor()(np.zeros(F.WINDOW, dtype=np.int16)), np.zeros(F.NUM_MEL, np.float32))
    assert ex.last_value == np.float32(0.0)


# ------------------------------------------------------------ tables and bookkeeping


def test_tables_have_the_firmware_shape():
    w = F.hamming_window()
    assert w.dtype == np.float32 and w.shape == (1024,)
    assert w[0] == np.float32(0.08000001)  # TF's float32 0.54 - 0.46, printed with 8 decimals
    assert w[512] == np.float32(1.0)
    periodic = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    assert np.abs(w - periodic).max() < 2e-7
    t = F.mel_table()
    # the firmware's lin2mel_513x40_filter_starts / _lens (fixed_data.c)
    assert t.starts[:5] == (1, 3, 6, 10, 13) and t.starts[-3:] == (391, 419, 448)
    assert t.lens[:5] == (5, 7, 7, 7, 7) and t.lens[-3:] == (57, 60, 64)
    assert sum(t.lens) == 987 == t.weights.size
    assert np.abs(t.dense() - _htk_mel_matrix()).max() < 1e-5


def test_left_channel_and_windows():
    pairs = np.arange(2 * F.STRIDE, dtype=np.int16).reshape(F.STRIDE, 2)
    pairs[:, 1] = -1  # right slot: ignored
    left = F.left_channel(pairs.astype("<i2").tobytes())
    assert np.array_equal(left, np.arange(0, 2 * F.STRIDE, 2))
    with pytest.raises(ValueError):
        F.left_channel(bytes(100))
    aw = F.AudioWindow()
    win = aw.push(np.ones(F.STRIDE, dtype=np.int16))
    assert win[: F.STRIDE].sum() == 0 and win[F.STRIDE :].sum() == F.STRIDE  # frame 0 is half zeros
    win = aw.push(np.full(F.STRIDE, 2, dtype=np.int16))
    assert win[: F.STRIDE].sum() == F.STRIDE and win[F.STRIDE :].sum() == 2 * F.STRIDE
    mw = F.ModelWindow()
    assert np.array_equal(mw.data, np.zeros(1200, np.int8))  # start: int8 0, not -128
    mw.push(np.full(40, 5, np.int8))
    mw.push(np.full(40, 7, np.int8))
    assert (mw.data[:1120] == 0).all() and (mw.data[1120:1160] == 5).all() and (mw.data[1160:] == 7).all()


def test_mel_sums_are_the_sequential_float32_loop():
    """The extractor's vectorised mel sums equal the firmware's loop
    (arm_dot_prod_f32 read as acc = f32(acc + f32(p * w)), one weight after the
    other) bit for bit, on spectra spanning 15 decades with zeros."""
    x = F.FeatureExtractor()
    f32 = np.float32
    rng = np.random.default_rng(12)
    for trial in range(300):
        power = (rng.random(F.SPECTRUM_BINS).astype(f32) * f32(10.0 ** rng.integers(-12, 3))).astype(f32)
        power[rng.integers(0, F.SPECTRUM_BINS, 40)] = 0
        acc = np.zeros(F.NUM_MEL, dtype=f32)
        for i, (s, n, o) in enumerate(zip(x.mel.starts, x.mel.lens, x.mel.offsets)):
            a = f32(0.0)
            for k in range(n):
                a = f32(a + f32(power[s + k] * x.mel.weights[o + k]))
            acc[i] = a
        got = x.mel_energies(power)
        assert np.array_equal(acc.view(np.uint32), got.view(np.uint32)), trial
