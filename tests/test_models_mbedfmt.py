"""mbed minimal-printf %f and the float32 C arithmetic of the firmware."""
from __future__ import annotations

import math
import re
from fractions import Fraction

import numpy as np
import pytest

from emulator.models import carith
from emulator.models.mbedfmt import format_d, format_f, format_signed


@pytest.mark.parametrize(
    "value, text",
    [
        (0.0, "0.000000"),
        (1.0, "1.000000"),
        (0.5, "0.500000"),
        (0.9765625, "0.976563"),  # half-up on the 7th decimal (C printf: 0.976562)
        (0.0234375, "0.023438"),  # ditto (C: 0.023437)
        (0.00390625, "0.003906"),
        (0.99609375, "0.996094"),
        (0.9999996, "0.1000000"),  # the carry is not propagated into the integer part
        (94.518875, "94.518875"),
        (12.0000004, "12.000000"),
        (3.0000015, "3.000002"),
        (-1.25, "-1.250001"),  # negative fractions round up in magnitude
        (-0.5, "0.500001"),  # and a value in (-1, 0) loses its sign
        (-0.25, "0.250001"),
        (-2.0, "-2.000000"),
        (1e-7, "0.000000"),
        (5e-7, "0.000001"),
        (123456.000001, "123456.000001"),
    ],
)
def test_format_f_values(value, text):
    assert format_f(value) == text


def test_format_f_differs_from_c_rounding():
    assert format_f(0.9765625) != "%.6f" % 0.9765625
    assert "%.6f" % 0.9765625 == "0.976562"


def test_format_f_32bit_storage_saturates_and_nan():
    # 64-bit support is off on the board: the integer part is an int32
    assert format_f(3e9) == "2147483647.000000"
    assert format_f(3e9, storage_bits=64) == "3000000000.000000"
    assert format_f(math.inf) == "2147483647.000000"
    assert format_f(math.nan) == "0.000001"
    assert format_f(-3e9).startswith("-2147483648.")


def test_format_signed_and_d():
    assert format_d(0) == "0"
    assert format_d(-7) == "-7"
    assert format_d(2**31) == "-2147483648"  # an int is 32 bits
    assert format_signed(-(2**31)) == "-2147483648"
    assert format_d(123) == "123"


def _all_k_over_256():
    return {format_f(k / 256.0): k for k in range(257)}


@pytest.mark.parametrize("model", ["ic", "vww"])
def test_board_printed_probabilities_follow_minimal_printf(golden, model):
    """Every number the board printed for ic01/vww01 (uint8 softmax steps k/256)
    is minimal printf's rendering of such a step, including half-up cases."""
    table = _all_k_over_256()
    seen = 0
    half_up = 0
    for log in ("accuracy", "performance", "energy"):
        for line in (golden / model / log / "log.txt").read_text().splitlines():
            m = re.search(r"m-results-\[(.*)\]", line)
            if not m:
                continue
            for v in filter(None, m.group(1).split(",")):
                assert v in table, (model, log, v)
                seen += 1
                k = table[v]
                half_up += format_f(k / 256.0) != "%.6f" % (k / 256.0)
    assert seen > 1000
    assert half_up > 0  # the board's lines do contain values C would round differently


def test_board_ad_results_are_float32_rendered(golden):
    """ad01's results are float32 MSEs: each printed value is minimal printf of a
    float32 (parsing and re-rendering the nearest float32 gives the same text)."""
    n = 0
    for log in ("performance", "energy"):
        for line in (golden / "ad" / log / "log.txt").read_text().splitlines():
            m = re.search(r"m-results-\[([0-9.]+)\]", line)
            if m:
                v = m.group(1)
                assert format_f(carith.f32(float(v))) == v
                n += 1
    assert n == 10


def _exact_fma_f32(a: float, b: float, c: float) -> float:
    """Reference: exact rational a*b + c rounded once to float32 (nearest even)."""
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    lo = float(np.float32(float(exact)))
    # search the float32 neighbours for the nearest to the exact value
    cands = {lo, float(np.nextafter(np.float32(lo), np.float32(np.inf))),
             float(np.nextafter(np.float32(lo), np.float32(-np.inf)))}
    best = min(cands, key=lambda x: (abs(Fraction(x) - exact), int(np.float32(x).view(np.uint32)) & 1))
    return best


def test_fma_matches_exact_rounding_including_ties():
    rng = np.random.default_rng(1)
    a = rng.standard_normal(4000).astype(np.float32)
    b = rng.standard_normal(4000).astype(np.float32)
    c = (rng.standard_normal(4000) * 10).astype(np.float32)
    # crafted double-rounding traps: a*b + c where rounding to double first lands on a tie
    t = [(1.0 + 2.0**-23, 1.0 + 2.0**-23, -1.0), (1.0 + 2.0**-12, 1.0 - 2.0**-12, 2.0**-24),
         (3.0, 1.0 + 2.0**-23, 2.0**-30), (float(np.float32(0.1)), 10.0, -1.0)]
    cases = list(zip(a.tolist(), b.tolist(), c.tolist())) + t
    got = [carith.fma(x, y, z) for x, y, z in cases]
    want = [_exact_fma_f32(x, y, z) for x, y, z in cases]
    assert got == want
    arr = carith.fma_array(np.array([x for x, _, _ in cases], np.float32), np.array([y for _, y, _ in cases], np.float32),
                           np.array([z for _, _, z in cases], np.float32))
    assert arr.tolist() == want


def test_fma_differs_from_separate_rounding_somewhere():
    x = 1.0 + 2.0**-22  # x*x = 1 + 2**-21 + 2**-44: the 2**-44 survives only when fused
    fused = carith.fma(x, x, -1.0)
    separate = carith.add(carith.mul(x, x), -1.0)
    assert fused == 2.0**-21 + 2.0**-44 and separate == 2.0**-21


def test_f2i_cmod_round():
    assert carith.f2i(9.99) == 9 and carith.f2i(-9.99) == -9
    assert carith.f2i(math.nan) == 0 and carith.f2i(1e20) == 2**31 - 1 and carith.f2i(-1e20) == -(2**31)
    assert carith.cmod(-7, 10) == -7 and carith.cmod(17, 10) == 7 and carith.cmod(-17, 10) == -7
    r = carith.round_half_away(np.array([0.5, -0.5, 1.5, 2.5, -2.5, 0.49999997, 8388609.0], np.float32))
    assert r.tolist() == [1.0, -1.0, 2.0, 3.0, -3.0, 0.0, 8388609.0]


def test_float32_ops_are_single_rounding():
    a, b = carith.f32(0.1), carith.f32(0.2)
    assert carith.add(a, b) == float(np.float32(a) + np.float32(b))
    assert carith.mul(a, b) == float(np.float32(a) * np.float32(b))
    assert carith.f32(1e39) == math.inf


def test_fma_sum_squares_equals_the_fma_loop():
    """The fast chain of fma(d, d, acc) (ad01's MSE) against :func:`carith.fma`
    step by step: random values, values whose squares land on float32 ties,
    tiny and zero values."""
    rng = np.random.default_rng(7)
    sets = [rng.standard_normal(640).astype(np.float32) * s for s in (1e-3, 1.0, 30.0)]
    sets.append(np.float32(1.0 + 2.0**-12) * np.ones(50, np.float32))  # squares 1 + 2**-11 + 2**-24: ties
    sets.append(np.array([0.0, 1e-30, 2.0**-70, 1e-20, 0.0, 3.0, 1e-23] * 20, np.float32))
    sets.append((rng.integers(-2**12, 2**12, 640) * 2.0**-12).astype(np.float32))  # exact sums, many ties
    for values in sets:
        ds = [float(v) for v in values]
        for start in (0.0, float(np.float32(0.1)), float(np.float32(1e6))):
            acc = start
            for d in ds:
                acc = carith.fma(d, d, acc)
            assert carith.fma_sum_squares(ds, start) == acc
