"""mbed-os *minimal printf* number formatting, as the reference firmwares print.

The ic01, vww01 and ad01 firmwares build with ``target.printf_lib = minimal-printf``,
``minimal-printf-enable-floating-point = true``, ``...-set-floating-point-max-decimals = 6``
and ``minimal-printf-enable-64-bit = false`` (their ``mbed_app.json``). Minimal printf
ignores a precision on ``%f``: ``"%0.3f"`` prints six decimals, with its own rounding.
With 64-bit support off its storage types are 32 bits on the Cortex-M4, and because the
M4's FPU is single precision every double operation here is a soft-float library call:

* double -> int32 (``__aeabi_d2iz``) truncates toward zero, saturates out of range
  values to INT32_MIN/INT32_MAX, and turns NaN into 0;
* double -> uint32 (``__aeabi_d2uiz``) gives 0 for anything negative or NaN and
  0xFFFFFFFF above the range.

The algorithm (``mbed_minimal_formatted_string_double``) is re-derived here step by
step; its quirks are reproduced on purpose: rounding is half-up on the 7th decimal
(0.9765625 -> ``0.976563`` where C would give ``0.976562``), a carry out of the
decimals is not propagated (0.9999996 -> ``0.1000000``), the sign of a value in (-1, 0)
is lost, and a negative fraction is rounded up in magnitude (-0.5 -> ``0.500001``).
"""
from __future__ import annotations

import math

_DECIMALS = 6  # MBED_CONF_PLATFORM_MINIMAL_PRINTF_SET_FLOATING_POINT_MAX_DECIMALS


def _d2i(value: float, bits: int) -> int:
    """double -> signed integer of ``bits`` the way the ARM EABI helper does."""
    if math.isnan(value):
        return 0
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if math.isinf(value):
        return hi if value > 0 else lo
    t = math.trunc(value)
    return lo if t < lo else hi if t > hi else t


def _d2u(value: float, bits: int) -> int:
    """double -> unsigned integer of ``bits`` the way the ARM EABI helper does."""
    if math.isnan(value) or value < 0:
        return 0
    hi = (1 << bits) - 1
    if math.isinf(value):
        return hi
    t = math.trunc(value)
    return hi if t > hi else t


def format_signed(value: int, bits: int = 32) -> str:
    """``mbed_minimal_formatted_string_signed``: a minus sign, then the magnitude
    as the two's complement negation in the unsigned storage type."""
    mask = (1 << bits) - 1
    value &= mask
    if value >> (bits - 1):  # negative
        return "-" + str(((~value) + 1) & mask)
    return str(value)


def format_f(value: float, *, decimals: int = _DECIMALS, storage_bits: int = 32) -> str:
    """What mbed minimal printf prints for ``%f`` (any width/precision) of ``value``.

    ``value`` is the double the variadic call promotes a float to. ``storage_bits``
    is 32 on the reference board (``minimal-printf-enable-64-bit: false``); 64 gives
    the behaviour of a build with 64-bit support.
    """
    value = float(value)
    mask = (1 << storage_bits) - 1
    integer = _d2i(value, storage_bits)
    out = format_signed(integer, storage_bits) + "."

    precision = 1.0
    for _ in range(decimals):
        precision *= 10
    value = (value - float(integer)) * precision

    if value < 0:
        temp = _d2i(value, storage_bits) & mask
        decimal = ((~temp) + 1) & mask
    else:
        decimal = _d2u(value, storage_bits)

    value -= float(decimal)
    if not (-0.5 < value < 0.5):
        decimal = (decimal + 1) & mask

    precision_in_uint = _d2u(precision, storage_bits) // 10
    val = decimal if decimal else decimal + 1
    while precision_in_uint > val:
        out += "0"
        precision_in_uint //= 10
    return out + str(decimal)


def format_d(value: int) -> str:
    """``%d`` of a C ``int`` (32 bits on the board)."""
    return format_signed(int(value), 32)
