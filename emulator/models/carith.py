"""C arithmetic as the Cortex-M4F firmware does it: float32 (single-precision FPU,
round to nearest even), fused multiply-add, float -> int conversions, C ``%``."""
from __future__ import annotations

import array
import math
import struct

import numpy as np

F32 = np.float32
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1


_pack_f = struct.Struct("<f")
_pack_i = struct.Struct("<i")


def f32(x) -> float:
    """Round a number to float32 (nearest even) and return it as a Python float."""
    try:
        return _pack_f.unpack(_pack_f.pack(x))[0]
    except OverflowError:  # beyond float32: +-inf, as the FPU rounds
        with np.errstate(over="ignore"):
            return float(F32(x))


def _f32_next(r: float, up: bool) -> float:
    """The float32 neighbour of the (finite) float32 value ``r``."""
    if r == 0.0:
        tiny = _pack_f.unpack(_pack_i.pack(1))[0]
        return tiny if up else -tiny
    bits = _pack_i.unpack(_pack_f.pack(r))[0]
    step = 1 if (up == (r > 0)) else -1
    try:
        return _pack_f.unpack(_pack_i.pack(bits + step))[0]
    except struct.error:
        return math.inf if up else -math.inf


# Products of two float32 values are exact in a double, and a double has more than
# 2*24+2 bits, so rounding the double result of +, -, * or / of float32 operands to
# float32 gives the correctly rounded float32 operation (no double-rounding error).


def mul(a: float, b: float) -> float:
    """float32 a * b (one rounding); a and b must be float32 values."""
    return f32(a * b)


def add(a: float, b: float) -> float:
    """float32 a + b (one rounding); a and b must be float32 values."""
    return f32(a + b)


def sub(a: float, b: float) -> float:
    """float32 a - b (one rounding); a and b must be float32 values."""
    return f32(a - b)


def div(a: float, b: float) -> float:
    """float32 a / b (one rounding; IEEE for b == 0)."""
    with np.errstate(all="ignore"):
        return float(F32(a) / F32(b))


def fma(a: float, b: float, c: float) -> float:
    """float32 fused multiply-add: a*b + c with a single rounding (VFMA.F32).

    The product of two float32 values is exact in a double; the sum with ``c`` is
    rounded once to double and its error recovered exactly (TwoSum), so the only
    case where rounding that double to float32 could differ from rounding the exact
    value (a tie between two float32 neighbours) is resolved with the error's sign.
    """
    p = a * b  # exact (a, b are float32 values)
    s = p + c
    if not math.isfinite(s):
        return f32(s)
    bb = s - p
    err = (p - (s - bb)) + (c - bb)  # s + err == p + c exactly
    r = f32(s)
    if err == 0.0 or r == s or math.isinf(r):
        return r
    other = _f32_next(r, s > r)  # the float32 on the other side of s
    if (r + other) / 2.0 == s:  # s is exactly a tie; the exact value is not
        lo, hi = (r, other) if r < other else (other, r)
        return hi if err > 0 else lo
    return r


#: the smallest normal float32
_F32_MIN_NORMAL = 2.0**-126


def fma_sum_squares(values, acc: float = 0.0) -> float:
    """``acc = fma(d, d, acc)`` for each ``d`` in turn (float32 values): the
    same result as calling :func:`fma` in a loop, several times faster.

    ``d*d + acc`` rounded once to double and then to float32 is the correctly
    rounded float32 unless the double sits exactly halfway between two float32
    values (then the double rounding may have lost which side the exact value
    is on); only those steps, and sums outside the normal float32 range, go
    through :func:`fma`. (Storing into a float32 array item is C's
    double-to-float conversion: round to nearest even, as ``f32``.)
    """
    box = array.array("f", [0.0])
    frexp, floor = math.frexp, math.floor
    for d in values:
        s = d * d + acc
        box[0] = s
        r = box[0]
        if r != s:
            if not _F32_MIN_NORMAL <= abs(s) <= 3.4e38:  # tiny, huge, inf, nan
                acc = fma(d, d, acc)
                continue
            t = frexp(s)[0] * 16777216.0  # s in units of its float32 ulp
            if t - floor(t) == 0.5:
                acc = fma(d, d, acc)
                continue
        acc = r
    return acc


def fma_array(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Element-wise float32 fused multiply-add of float32 arrays (see :func:`fma`)."""
    a = np.asarray(a, np.float32).astype(np.float64)
    b = np.asarray(b, np.float32).astype(np.float64)
    c = np.asarray(c, np.float32).astype(np.float64)
    with np.errstate(all="ignore"):
        p = a * b
        s = p + c
        bb = s - p
        err = (p - (s - bb)) + (c - bb)
        r = s.astype(np.float32)
        r64 = r.astype(np.float64)
        toward = np.where(s > r64, np.float32(np.inf), np.float32(-np.inf)).astype(np.float32)
        other = np.nextafter(r, toward)
        o64 = other.astype(np.float64)
        tie = np.isfinite(s) & np.isfinite(r64) & (err != 0) & (r64 != s) & ((r64 + o64) / 2.0 == s)
        hi = np.maximum(r, other)
        lo = np.minimum(r, other)
        return np.where(tie, np.where(err > 0, hi, lo), r).astype(np.float32)


def f2i(x: float) -> int:
    """float -> int32 as VCVT.S32.F32 does: truncate, saturate, NaN -> 0."""
    if math.isnan(x):
        return 0
    if math.isinf(x):
        return _I32_MAX if x > 0 else _I32_MIN
    t = math.trunc(x)
    return _I32_MIN if t < _I32_MIN else _I32_MAX if t > _I32_MAX else t


def cmod(a: int, b: int) -> int:
    """C's ``a % b`` for ints (the result has the sign of ``a``)."""
    q = abs(a) // abs(b)
    if (a < 0) != (b < 0):
        q = -q
    return a - b * q


def round_half_away(x: np.ndarray) -> np.ndarray:
    """C ``round()`` of float32 values (exact in float64): halves go away from zero."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        mag = np.abs(x)
        # float32 values >= 2**23 are integers already; below, |x| + 0.5 is exact
        r = np.where(mag >= 2.0**23, mag, np.floor(mag + 0.5))
    return np.copysign(r, x)


def to_i32_saturating(x: np.ndarray) -> np.ndarray:
    """Float values -> int32 like VCVT (truncate, saturate, NaN -> 0)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.where(np.isnan(x), 0.0, np.trunc(np.clip(np.nan_to_num(x, nan=0.0), _I32_MIN, _I32_MAX)))
    return out.astype(np.int64)
