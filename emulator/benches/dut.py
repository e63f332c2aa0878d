"""Assembling twins: the devices of a bench, wired in one simulation."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..dut.device import Dut
from ..dut.timing import DutTiming, timing_for
from ..sim import Speed, Twin
from ..hw.usb_bridge import HostBridge


@dataclass
class DutBench:
    """A DUT on its own, as in performance mode: host <-> USB bridge <-> DUT."""

    twin: Twin
    dut: Dut
    bridge: HostBridge


def load_engine(model: str, models_dir: str | Path | None = None, backend: str = "tflm", io_profile: str | None = None):
    from ..models.engine import open_engine

    return open_engine(model, models_dir=models_dir, backend=backend, profile=io_profile)


def build_dut_bench(
    model: str,
    *,
    models_dir: str | Path | None = None,
    backend: str = "tflm",
    io_profile: str | None = None,
    speed: str | float | Speed = "fast",
    baud: int | None = None,
    energy_mode: bool = False,
    timer_start_us: int = 0,
    timing: DutTiming | None = None,
    timing_profile: str | Path | None = None,
    clock_mhz: float | None = None,
    honour_host_baud: bool = True,
    engine=None,
) -> DutBench:
    from .sww01 import build_dut_bench as build_sww01_bench, is_sww01

    if is_sww01(model):  # the streaming-wakeword firmware (one firmware, 115200 baud in every mode)
        return build_sww01_bench(models_dir=models_dir, backend=backend, speed=speed, baud=baud, engine=engine,
                                 timing=timing, timing_profile=timing_profile, honour_host_baud=honour_host_baud)
    engine = engine if engine is not None else load_engine(model, models_dir, backend, io_profile)
    if timing is None:
        timing = timing_for(engine.profile.name, model_path=getattr(engine, "model_path", None),
                            profile=timing_profile, clock_mhz=clock_mhz, engine=engine)
    twin = Twin(speed)
    dut = Dut(twin, engine, timing, energy_mode=energy_mode, baud=baud, timer_start_us=timer_start_us)
    bridge = HostBridge(twin, dut.uart, "dut", honour_host_baud=honour_host_baud)
    return DutBench(twin, dut, bridge)
