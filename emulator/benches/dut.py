"""Assembling twins: the devices of a bench, wired in one simulation."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import TwinConfig
from ..dut.device import Dut
from ..dut.express import DbExpress
from ..dut.timing import DutTiming
from ..hw.usb_bridge import HostBridge
from ..sim import Twin


@dataclass
class DutBench:
    """A DUT on its own, as in performance mode: host <-> USB bridge <-> DUT."""

    twin: Twin
    dut: Dut
    bridge: HostBridge
    config: TwinConfig


def build_dut_bench(
    cfg: TwinConfig | str,
    *,
    engine=None,
    timing: DutTiming | None = None,
    **fields,
) -> DutBench:
    """One DUT behind its USB-serial bridge, in a twin that is not yet running.

    ``cfg`` is a :class:`~emulator.config.TwinConfig`, or a model name with
    TwinConfig's fields as keywords (``build_dut_bench("kws01", speed="fast")``).
    ``engine`` and ``timing`` replace what the configuration would build (a
    test engine, a fixed timing). ``sww01`` is the streaming-wakeword firmware
    (:func:`emulator.benches.sww01.build_dut_bench`)."""
    from .sww01 import build_dut_bench as build_sww01_bench, is_sww01

    cfg = as_config(cfg, **fields)
    if is_sww01(cfg.model):  # one firmware, 115200 baud in every mode
        return build_sww01_bench(models_dir=cfg.models_dir, backend=cfg.backend, speed=cfg.speed, baud=cfg.baud,
                                 engine=engine, timing=timing, timing_profile=cfg.timing_profile,
                                 honour_host_baud=cfg.honour_host_baud, config=cfg)
    engine = engine if engine is not None else cfg.engine()
    if timing is None:
        timing = cfg.timing(engine)
    twin = Twin(cfg.speed)
    dut = Dut(twin, engine, timing, energy_mode=cfg.energy_mode, baud=cfg.baud, timer_start_us=cfg.timer_start_us,
              variant=cfg.firmware_variant)
    bridge = HostBridge(twin, dut.uart, "dut", honour_host_baud=cfg.honour_host_baud)
    bridge.express = DbExpress(bridge, dut)
    return DutBench(twin, dut, bridge, cfg)


def as_config(cfg: TwinConfig | str, **fields) -> TwinConfig:
    """``cfg`` itself (with ``fields`` replaced), or a TwinConfig for the model
    named ``cfg`` with ``fields``."""
    if isinstance(cfg, TwinConfig):
        return cfg.replace(**fields) if fields else cfg
    return TwinConfig(model=cfg, **fields)


def load_engine(model: str, models_dir=None, backend: str = "tflm", io_profile: str | None = None):
    """The model engine for ``model`` (as :meth:`TwinConfig.engine`)."""
    return TwinConfig(model=model, models_dir=models_dir, backend=backend, io_profile=io_profile).engine()
