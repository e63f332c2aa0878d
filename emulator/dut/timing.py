"""How long the DUT firmware spends on each thing it does.

:class:`DutTiming` is what the SimPy DUT model (:mod:`emulator.dut.device`)
asks. UART time is not here: it follows from the baud rate in
:mod:`emulator.hw.uart`. The inference latency and the firmware's fixed costs
come from the calibrated cycle model of :mod:`emulator.cpu.cycles` (see
:func:`timing_for`).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
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
    """The firmware's durations the DUT device asks for (µs/ms fields, ns
    methods): inference (from the cycle model, see :func:`timing_for`), tensor
    load, command dispatch, boot, the lap line's printf, the energy-mode
    timestamp pulse; :attr:`source` says where the inference figure came from."""

    inference_us: float
    #: th_load_tensor(): copying/converting the db buffer into the input tensor
    load_tensor_us: float = 10.0
    #: parsing and dispatching one command
    command_us: float = 15.0
    #: from power-on (reset) to the first banner character
    boot_ms: float = 100.0
    #: th_timestamp() in performance mode: reading the µs ticker and the
    #: printf call, before the line's characters go out
    timestamp_print_us: float = 0.0
    #: energy mode: how long th_timestamp() holds the GPIO low
    #: (100000 iterations of a nop loop)
    timestamp_hold_us: float = 100_000 * 4 / 120.0
    clock_mhz: float = 120.0
    source: str = "given by the caller"

    def inference_ns(self, count: int = 1) -> float:
        return count * self.inference_us * US

    def load_tensor_ns(self, nbytes: int | None = None) -> float:
        return self.load_tensor_us * US

    @property
    def command_ns(self) -> float:
        return self.command_us * US

    @property
    def boot_ns(self) -> float:
        return self.boot_ms * MS

    @property
    def timestamp_hold_ns(self) -> float:
        return self.timestamp_hold_us * US

    @property
    def timestamp_print_ns(self) -> float:
        return self.timestamp_print_us * US


def timing_for(model_name: str, model_path=None, profile=None, clock_mhz: float | None = None, engine=None) -> DutTiming:
    """The DUT's timing from the calibrated cycle model.

    ``profile`` is a kernel-profile JSON (``tinytwin calibrate``); ``None`` is
    the shipped profile fitted to the reference board. The inference latency
    is derived from the model's graph, so it applies to your own models and
    other clocks too, with the held-out errors of :mod:`emulator.cpu.cycles`
    (within 8 % for the conv models, +48 % for the FC-heavy ad01).
    """
    from ..cpu.cycles import KernelProfile, estimate, firmware_timing

    try:
        prof = KernelProfile.load(profile)
    except FileNotFoundError:
        raise ConfigError(f"timing profile {profile} not found; give the JSON written by `tinytwin calibrate`") from None
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"timing profile {profile} is not a tinytwin kernel profile ({exc})") from None
    if model_path is None and engine is not None:
        model_path = getattr(engine, "model_path", None)
    model = str(model_path) if model_path is not None else model_name
    est = estimate(model, prof, clock_mhz)
    fw = firmware_timing(prof, clock_mhz)
    nbytes = None
    if engine is not None:
        nbytes = engine.profile.input_count * engine.profile.input_elem_size
    return DutTiming(
        inference_us=est.latency_us,
        load_tensor_us=fw.load_tensor_us(model_name, nbytes),
        command_us=fw.command_overhead_us,
        boot_ms=fw.boot_ms,
        timestamp_print_us=fw.printf_overhead_us_per_call,
        timestamp_hold_us=fw.timestamp_hold_us,
        clock_mhz=est.clock_mhz,
        source=f"cycle model, profile {prof.name}",
    )
