"""How long the sww01 firmware takes, as a named profile (pure: numbers and parsing).

A profile is a JSON file (the shipped one: ``profiles/sww01_l4r5zi_estimate.json``)
with the per-frame work (``th_compute_lfbe_f32``, ``th_ai_run``, the rest of the
DMA interrupt), the firmware's other costs, the power state of the frame work
and the provenance of every number. No per-frame time of the reference
firmware is published, so the shipped numbers are estimates; the firmware's
own ``run_model`` and ``extract`` commands print the microseconds of exactly
these two parts on a board::

    TIM16: th_ai_run took (12345 : 26245) = 13900 TIM16 cycles
    TIM16: th_compute_lfbe_f32 took (100 : 4100) = 4000 TIM16 cycles

and :func:`calibrate_from_log` turns such lines (a serial log of a board
session) into a profile (``tinytwin calibrate --sww01-log LOG --out P.json``).
TIM16 counts microseconds on 16 bits, so each reading is taken modulo 65536.
"""
from __future__ import annotations

from ...errors import TinytwinError

import copy
import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
DEFAULT_PROFILE = PROFILES_DIR / "sww01_l4r5zi_estimate.json"
POWER_STATES = ("idle", "busy", "infer", "tx")

_TIM16 = re.compile(r"TIM16: (th_ai_run|th_compute_lfbe_f32) took \((\d+) : (\d+)\) = (\d+) TIM16 cycles")


class ProfileError(TinytwinError, ValueError):
    """A timing profile that cannot be used; the message names the file and the fix."""


@dataclass
class Sww01Timing:
    name: str
    extract_us: float
    invoke_us: float
    overhead_us: float
    command_us: float = 20.0
    boot_us: float = 20_000.0
    memory_bytes_per_us: float = 40.0
    dma_call_us: float = 5.0
    dma_stop_timeout_us: float = 4_000.0
    #: printf's per-byte HAL_UART_Transmit: the idle time between two bytes
    putchar_gap_us: float = 2.5
    clock_mhz: float = 120.0
    baud: int = 115200
    processing_state: str = "infer"
    peripherals_ua: float = 0.0
    #: a quirk, opt-in: th_delay_us(1) started when TIM16 reads 65535 never
    #: returns (the board freezes, about once in 65,536 pulses). On a board the
    #: TIM16 phase of each pulse is random; in the twin it is fixed by the
    #: run, so by default the twin does not freeze (it would freeze on the same
    #: pulse of the same file every time).
    delay_hang: bool = False
    source: str = ""
    data: dict = field(default_factory=dict, repr=False)

    @property
    def frame_us(self) -> float:
        """The whole per-frame interrupt (the Processing pin's high time)."""
        return self.extract_us + self.invoke_us + self.overhead_us

    # -- persistence -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict, source: str = "") -> "Sww01Timing":
        try:
            fr = d["frame"]
            fw = d.get("firmware_us", {})
            pw = d.get("power", {})
            t = cls(
                name=str(d.get("name", "custom")),
                extract_us=float(fr["extract_us"]),
                invoke_us=float(fr["invoke_us"]),
                overhead_us=float(fr.get("overhead_us", 0.0)),
                command_us=float(fw.get("command_us", 20.0)),
                boot_us=float(fw.get("boot_us", 20_000.0)),
                memory_bytes_per_us=float(fw.get("memory_bytes_per_us", 40.0)),
                dma_call_us=float(fw.get("dma_call_us", 5.0)),
                dma_stop_timeout_us=float(fw.get("dma_stop_timeout_us", 4_000.0)),
                putchar_gap_us=float(fw.get("putchar_gap_us", 2.5)),
                clock_mhz=float(d.get("clock_mhz", 120.0)),
                baud=int(d.get("baud", 115200)),
                processing_state=str(pw.get("processing_state", "infer")),
                peripherals_ua=float(pw.get("peripherals_ua", 0.0)),
                delay_hang=bool(d.get("delay_hang", False)),
                source=source,
                data=copy.deepcopy(dict(d)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"{source or 'the profile'} is not a sww01 timing profile ({exc!r}); "
                               "start from emulator/dut/sww01/profiles/sww01_l4r5zi_estimate.json") from None
        problems = [k for k in ("extract_us", "invoke_us") if not getattr(t, k) > 0]
        problems += [k for k in ("overhead_us", "command_us", "boot_us", "dma_call_us", "dma_stop_timeout_us",
                                 "putchar_gap_us")
                     if getattr(t, k) < 0]
        if not t.memory_bytes_per_us > 0 or not t.clock_mhz > 0 or t.baud <= 0:
            problems.append("memory_bytes_per_us/clock_mhz/baud")
        if t.processing_state not in POWER_STATES:
            problems.append(f"processing_state {t.processing_state!r} (one of {', '.join(POWER_STATES)})")
        if problems:
            raise ProfileError(f"{source or 'the profile'}: bad values for {', '.join(problems)}")
        return t

    def to_dict(self) -> dict:
        d = copy.deepcopy(self.data) if self.data else {}
        d["name"] = self.name
        d["clock_mhz"] = self.clock_mhz
        d["baud"] = self.baud
        d["frame"] = {"extract_us": self.extract_us, "invoke_us": self.invoke_us, "overhead_us": self.overhead_us}
        d["firmware_us"] = {
            "command_us": self.command_us,
            "boot_us": self.boot_us,
            "memory_bytes_per_us": self.memory_bytes_per_us,
            "dma_call_us": self.dma_call_us,
            "dma_stop_timeout_us": self.dma_stop_timeout_us,
            "putchar_gap_us": self.putchar_gap_us,
        }
        d["power"] = {"processing_state": self.processing_state, "peripherals_ua": self.peripherals_ua}
        if self.delay_hang:
            d["delay_hang"] = True
        return d

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Sww01Timing":
        """A profile by path; ``None``: the shipped estimate."""
        p = Path(path) if path is not None else DEFAULT_PROFILE
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise ProfileError(f"sww01 timing profile {p} not found") from None
        except (OSError, ValueError) as exc:
            raise ProfileError(f"sww01 timing profile {p} cannot be read: {exc}") from None
        if not isinstance(d, dict) or "frame" not in d:
            raise ProfileError(f"{p} is not a sww01 timing profile (no 'frame' section); make one with "
                               "`tinytwin calibrate --sww01-log LOG --out P.json`")
        return cls.from_dict(d, str(p))

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return p


# ---------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Tim16Reading:
    kind: str  # th_ai_run | th_compute_lfbe_f32
    start: int
    stop: int

    @property
    def us(self) -> int:
        """Microseconds, modulo TIM16's 16 bits (what the start/stop pair says,
        whatever the printed difference: extract prints it as a 32-bit value)."""
        return (self.stop - self.start) & 0xFFFF


def tim16_readings(text: str) -> list[Tim16Reading]:
    """Every ``TIM16: ... took (a : b) = c TIM16 cycles`` line in ``text``."""
    return [Tim16Reading(m.group(1), int(m.group(2)), int(m.group(3))) for m in _TIM16.finditer(text)]


def calibrate_from_log(text: str, base: Sww01Timing | None = None, source: str = "a board log") -> Sww01Timing:
    """A profile whose ``invoke_us`` / ``extract_us`` are the medians of the
    board's ``run_model`` / ``extract`` timing lines in ``text`` (either may be
    missing: that part keeps the base profile's value)."""
    base = base if base is not None else Sww01Timing.load()
    reads = tim16_readings(text)
    inv = [r.us for r in reads if r.kind == "th_ai_run"]
    ext = [r.us for r in reads if r.kind == "th_compute_lfbe_f32"]
    if not inv and not ext:
        raise ProfileError(
            f"{source} has no 'TIM16: th_ai_run took ...' or 'TIM16: th_compute_lfbe_f32 took ...' line: "
            "send the board `run_model class0%` and `extract 0%` and log its answers"
        )
    t = copy.deepcopy(base)
    prov = dict(t.data.get("provenance", {}))
    if inv:
        t.invoke_us = float(statistics.median(inv))
        prov["frame.invoke_us"] = (f"MEASURED: median of {len(inv)} 'TIM16: th_ai_run' line(s) (run_model) in {source}: "
                                   f"{t.invoke_us:g} us (min {min(inv)}, max {max(inv)})")
    if ext:
        t.extract_us = float(statistics.median(ext))
        prov["frame.extract_us"] = (f"MEASURED: median of {len(ext)} 'TIM16: th_compute_lfbe_f32' line(s) (extract) in "
                                    f"{source}: {t.extract_us:g} us (min {min(ext)}, max {max(ext)})")
    prov["summary"] = (f"calibrated from {source} ({len(inv)} run_model and {len(ext)} extract timing lines); "
                       f"the other values are {base.name}'s")
    t.name = f"{base.name}+calibrated"
    t.data = t.to_dict()
    t.data["provenance"] = prov
    t.source = source
    return t
