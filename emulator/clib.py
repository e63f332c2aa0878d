"""C library behaviour the simulated firmwares rely on (newlib on 32-bit Arm)."""
from __future__ import annotations


def strtol_value(s: bytes | None) -> int:
    """The value ``strtol(s, NULL, 10)`` reads, before any range limit:
    leading white space, an optional sign, then decimal digits up to the first
    non-digit (``b"5x"`` is 5, ``b"abc"`` is 0)."""
    if not s:
        return 0
    i, n = 0, len(s)
    while i < n and s[i] in b" \t\n\v\f\r":
        i += 1
    neg = False
    if i < n and s[i] in b"+-":
        neg = s[i] == ord("-")
        i += 1
    v = 0
    while i < n and 48 <= s[i] <= 57:
        v = v * 10 + (s[i] - 48)
        i += 1
    return -v if neg else v


def c_atoi(s: bytes | None) -> int:
    """newlib ``atoi`` (= ``(int)strtol(s, NULL, 10)``) with a 32-bit ``long``:
    saturates at LONG_MIN / LONG_MAX."""
    return max(-(2**31), min(2**31 - 1, strtol_value(s)))


def c_int(v: int) -> int:
    """A 32-bit value as ``%d`` prints it."""
    v &= 0xFFFFFFFF
    return v - 2**32 if v >= 2**31 else v
