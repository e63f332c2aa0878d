"""The ST X-NUCLEO-LPM01A "PowerShield" energy monitor: its data stream
(:mod:`.stream`), its shell as a protocol core (:mod:`.core`) and the board on
the twin's clock (:mod:`.device`)."""
from .core import Lpm01aCore, Settings
from .device import Lpm01a
from .stream import (
    ParsedStream,
    decode_ascii_value,
    decode_bin_value,
    encode_bin_value,
    format_ascii_value,
    parse_ascii_stream,
    parse_binary_stream,
    parse_value,
)

__all__ = [
    "Lpm01a",
    "Lpm01aCore",
    "Settings",
    "ParsedStream",
    "decode_ascii_value",
    "decode_bin_value",
    "encode_bin_value",
    "format_ascii_value",
    "parse_ascii_stream",
    "parse_binary_stream",
    "parse_value",
]

