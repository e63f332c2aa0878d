"""The streaming-wakeword (sww01) benches: the DUT alone, and the full bench
of mlcommons/tiny's runner (``devices_sww.yaml``)::

    host ── pty io ──(ST-LINK VCP, 115200)── STM32H573I-DK ──(USART3, 115200)── DUT (sww01 firmware)
                                              │ SD card = --sd-card DIR           │
                                              ├─ SAI1_B (I2S master) ─────────────┤ SAI1_A (slave, DMA)
                                              ├─ WW_DET_IN (PG15)  <── PB8 WW_DETECTED
                                              └─ DUT_DUTY_CYCLE (PB5) <── PE9 Processing
    host ── pty emon ─────────────────── LPM01A ──(VOUT 3.3 V, D7 <── PF13 timestamp)──┘

All devices share one simulated clock. The DUT is unpowered until the LPM01A
switches its output on (the runner's ``pwr on``); without an EMON it is
powered at once (a board on its own USB supply).
"""
from __future__ import annotations

from pathlib import Path

from ..dut.sww01.device import Sww01Dut, Sww01Power
from ..emon import Lpm01a
from ..dut.sww01.model import open_sww01
from ..dut.sww01.timing import Sww01Timing
from ..hw.i2s import I2sLink
from ..hw.sdcard import SdCard
from ..hw.usb_bridge import HostBridge
from ..ioman.device import H573IoManager
from ..sim import Speed, Twin

MODEL = "sww01"


def is_sww01(model: str) -> bool:
    return str(model).strip().lower() == MODEL


def load_timing(profile: str | Path | None) -> Sww01Timing:
    return Sww01Timing.load(profile)


def build_dut(twin: Twin, *, models_dir=None, backend: str = "tflm", engine=None, timing_profile=None,
              timing: Sww01Timing | None = None, baud: int | None = None, powered: bool = True,
              link: I2sLink | None = None) -> Sww01Dut:
    engine = engine if engine is not None else open_sww01(models_dir, backend)
    timing = timing if timing is not None else load_timing(timing_profile)
    return Sww01Dut(twin, engine, timing, link=link, baud=baud, powered=powered)


def build_dut_bench(*, models_dir=None, backend: str = "tflm", speed: str | float | Speed = "fast",
                    baud: int | None = None, engine=None, timing_profile=None, timing=None,
                    honour_host_baud: bool = True, config=None):
    """The sww01 DUT alone behind its ST-LINK bridge (for ``stream_wav_uart.py``,
    the spec cases, a terminal): a :class:`emulator.benches.dut.DutBench`."""
    from .dut import DutBench

    twin = Twin(speed)
    dut = build_dut(twin, models_dir=models_dir, backend=backend, engine=engine, timing_profile=timing_profile,
                    timing=timing, baud=baud)
    bridge = HostBridge(twin, dut.uart, "dut", honour_host_baud=honour_host_baud)
    return DutBench(twin, dut, bridge, config)


def build_rig(*, models_dir=None, interface: str = "h573", emon: str | None = "lpm01a",
              speed: str | float | Speed = "fast", dir: str | Path | None = "/tmp/tinytwin", backend: str = "tflm",
              engine=None, timing_profile=None, timing: Sww01Timing | None = None,
              h573_flash_baud: int | None = None, honour_host_baud: bool = True, power_profile=None,
              sd_card: str | Path | None = None, trace=None, drops=(), baud: int | None = None,
              h573_audio_ppm: float = 0.0):
    """The mlcommons/tiny sww bench in one twin (see the module docstring);
    returns an :class:`emulator.benches.rig.Rig` (not yet running). Its host
    ports have taps (``trace``, ``drops``: the ``--drop-line`` rules) and
    ``rig.control`` is its :class:`~emulator.control.BenchControl`."""
    from ..control.bench import BenchControl
    from ..ioman.actions import HOST_BAUD
    from ..power.model import PowerModel
    from .rig import EMON_BAUD, Rig, RigError
    from .wiring import make_tap, pty_plug

    if interface != "h573":
        raise RigError(
            f"sww01 needs the STM32H573I-DK interface board (--interface h573): the {interface} io-manager "
            "has no SD card, no I2S output and no detection inputs"
        )
    if emon not in (None, "lpm01a"):
        raise RigError(f"the sww01 bench measures with the LPM01A (--emon lpm01a) or nothing; got {emon!r}")
    card = SdCard(sd_card) if sd_card is not None else None
    timing = timing if timing is not None else load_timing(timing_profile)
    base = Path(dir).expanduser() if dir is not None else None
    twin = Twin(speed)
    link = I2sLink(twin, "i2s")
    dut = build_dut(twin, models_dir=models_dir, backend=backend, engine=engine, timing=timing,
                    powered=not emon, link=link, baud=baud)
    ioman = H573IoManager(twin, name="io", flash_baud=h573_flash_baud, card=card, i2s=link,
                          audio_clock_ppm=h573_audio_ppm)
    ioman.connect_dut(dut.uart)
    ioman.attach_ww_detection(dut.ww_pin)
    ioman.attach_dutycycle(dut.processing_pin)
    bridge = HostBridge(twin, ioman.host_uart, "io", honour_host_baud=honour_host_baud)
    notes = [f"sww01 timing profile {timing.name} (frame {timing.frame_us / 1000:.2f} ms of 32 ms)"]
    notes.append(f"SD card: {card.root} ({len(card.listing())} files)" if card is not None
                 else "SD card: none given (--sd-card DIR): `play` finds no file")
    try:
        plugs = {"io": pty_plug("io", "stm32h573i-dk", bridge.attach, make_tap("io", trace=trace, drops=drops),
                                link=base / "io" if base else None, baud=HOST_BAUD,
                                power=lambda on: ioman.power_on() if on else ioman.power_off())}
        rig = Rig(twin=twin, dut=dut, ioman=ioman, io_bridge=bridge, io_port=plugs["io"].port, dir=base,
                  interface=interface, notes=notes)
        lpm = None
        if emon:
            lpm = Lpm01a(twin, dut, power_model=PowerModel.load(power_profile) if power_profile is not None else None)
            lpm.power_model = Sww01Power(lpm.power_model, timing)
            plugs["emon"] = pty_plug("emon", "lpm01a", lpm.attach, make_tap("emon", trace=trace),
                                     link=base / "emon" if base else None, baud=EMON_BAUD,
                                     power=lambda on: lpm.power_on() if on else lpm.power_off())
            rig.emon, rig.emon_port = lpm, plugs["emon"].port
        rig.control = BenchControl(twin, dut, plugs, ioman=ioman, lpm01a=lpm,
                                   dut_supply="lpm01a" if lpm is not None else "supply")
    except BaseException:
        twin.close()
        raise
    return rig


__all__ = ["MODEL", "build_dut", "build_dut_bench", "build_rig", "is_sww01", "load_timing"]
