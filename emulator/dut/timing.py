"""How long the DUT firmware spends on each thing it does.

:class:`DutTiming` is what the SimPy DUT model (:mod:`emulator.dut.device`)
asks. UART time is not here: it follows from the baud rate in
:mod:`emulator.uart`. The inference latency comes from the cycle model of
:mod:`emulator.power.cycles` when available (see :func:`timing_for`).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..sim import MS, US

#: Per-inference latency of the reference board (µs), derived from
#: ``reference.csv`` of the v0.5 reference results (NUCLEO-L4R5ZI, TFLM 2.3.1):
#: t = (perf_window_us - single_infer_us) / (N - 1) removes the UART print that
#: both windows contain; for ad01 (no single-inference figure) the window
#: divided by N minus the ~0.2 ms lap line at 921600 baud.
REFERENCE_INFERENCE_US = {
    "kws01": (18192386 - 182985) / 99,
    "ic01": (70425574 - 706164) / 99,
    "vww01": (60053890 - 602426) / 99,
    "ad01": (10051561 - 206) / 1000,
}


@dataclass
class DutTiming:
    inference_us: float
    #: th_load_tensor(): conversion cost per input byte
    load_tensor_us_per_byte: float = 0.02
    #: parsing and dispatching one command
    command_us: float = 15.0
    #: from power-on (reset) to the first banner character
    boot_ms: float = 100.0
    #: energy mode: how long th_timestamp() holds the GPIO low
    #: (100000 iterations of a nop loop, ~4 cycles each at 120 MHz)
    timestamp_hold_us: float = 100_000 * 4 / 120.0
    clock_mhz: float = 120.0
    source: str = "reference.csv"

    def inference_ns(self, count: int = 1) -> float:
        return count * self.inference_us * US

    def load_tensor_ns(self, nbytes: int) -> float:
        return nbytes * self.load_tensor_us_per_byte * US

    @property
    def command_ns(self) -> float:
        return self.command_us * US

    @property
    def boot_ns(self) -> float:
        return self.boot_ms * MS

    @property
    def timestamp_hold_ns(self) -> float:
        return self.timestamp_hold_us * US


def timing_for(model_name: str, model_path=None, profile=None, clock_mhz: float | None = None, engine=None) -> DutTiming:
    """The timing of the given model on the reference board."""
    if model_name in REFERENCE_INFERENCE_US and profile is None and clock_mhz in (None, 120.0):
        return DutTiming(inference_us=REFERENCE_INFERENCE_US[model_name])
    raise ValueError(f"no timing model for {model_name!r} yet")
