"""Board descriptions: core, clock, flash wait states and cache, memories,
supply and regulator, datasheet currents (run mode and low-power modes).

Shipped boards live in ``emulator/whatif/boards/*.json``, each figure with
the document it comes from (datasheet DS..., reference manual RM...). A board
is named by its name (``NUCLEO-U575ZI-Q``, case-insensitive) or by a path to
your own JSON of the same shape (:meth:`Board.to_dict` shows it).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import TinytwinError
from ..power.model import PowerModel

BOARDS_DIR = Path(__file__).resolve().parent / "boards"
PRIORS_FILE = Path(__file__).resolve().parent / "priors.json"
CORES = ("M4F", "M7", "M33", "M55")
REGULATORS = ("LDO", "SMPS")


class BoardError(TinytwinError, ValueError):
    """A board description that cannot be found or read."""


def read_json(path: Path, error: type[Exception], what: str) -> Any:
    """A JSON file, or ``error`` naming the file and what is wrong with it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise error(f"{what} {path} not found") from None
    except json.JSONDecodeError as exc:
        raise error(f"{what} {path} is not JSON ({exc})") from None


def priors() -> dict[str, Any]:
    """The shipped priors (``priors.json``): per core, per kernel library,
    model error, power."""
    return json.loads(PRIORS_FILE.read_text())


@dataclass(frozen=True)
class LowPowerMode:
    name: str
    ua: float
    what: str


@dataclass
class Board:
    """One board: what the cycle and power models need to know about it."""

    name: str
    mcu: str
    core: str
    clock_mhz: float
    max_clock_mhz: float
    #: flash latency step (MHz per wait state); None: not modelled (weights
    #: assumed cached, stalls folded into the fitted costs)
    flash_mhz_per_ws: float | None
    flash_cache: str = ""
    #: prior of the exposed stall per wait state and 64-bit weight line
    stall_center: float = 1.0
    stall_log_sigma: float = 0.7
    sram_bytes: int | None = None
    flash_bytes: int | None = None
    supply_v: float = 1.8
    supply_min_v: float = 1.71
    supply_max_v: float = 3.6
    regulator: str = "LDO"
    #: datasheet run-mode current per MHz (at ``rail_ref_v`` for an SMPS part)
    run_ua_per_mhz: float | None = None
    static_ua: float | None = None
    rail_ref_v: float | None = None
    vcore_ranges: tuple[tuple[float, float], ...] = ()
    #: a fitted PowerModel JSON for this very board (the reference board)
    fitted_power_profile: str | None = None
    low_power_modes: dict[str, LowPowerMode] = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False)

    # -- reading ----------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "board") -> "Board":
        try:
            core = str(d["core"])
            if core not in CORES:
                raise BoardError(f"{where}: core {core!r} is not one of {', '.join(CORES)}")
            flash = d.get("flash") or {}
            stall = flash.get("stall_per_line") or {}
            supply = d.get("supply") or {}
            reg = str(supply.get("regulator", "LDO")).upper()
            if reg not in REGULATORS:
                raise BoardError(f"{where}: regulator {reg!r} is not one of {', '.join(REGULATORS)}")
            mem = d.get("memory") or {}
            power = d.get("power") or {}
            modes = {k: LowPowerMode(k, float(v["ua"]), str(v.get("what", k)))
                     for k, v in (d.get("low_power_modes") or {}).items() if isinstance(v, Mapping)}
            return cls(
                name=str(d["name"]),
                mcu=str(d.get("mcu", "")),
                core=core,
                clock_mhz=float(d["clock_mhz"]),
                max_clock_mhz=float(d.get("max_clock_mhz", d["clock_mhz"])),
                flash_mhz_per_ws=float(flash["mhz_per_ws"]) if flash.get("mhz_per_ws") else None,
                flash_cache=str(flash.get("cache", "")),
                stall_center=float(stall.get("center", 1.0)),
                stall_log_sigma=float(stall.get("log_sigma", 0.7)),
                sram_bytes=int(mem["sram_bytes"]) if mem.get("sram_bytes") else None,
                flash_bytes=int(mem["flash_bytes"]) if mem.get("flash_bytes") else None,
                supply_v=float(supply.get("default_v", 1.8)),
                supply_min_v=float(supply.get("min_v", 0.0)),
                supply_max_v=float(supply.get("max_v", 99.0)),
                regulator=reg,
                run_ua_per_mhz=float(power["run_ua_per_mhz"]) if power.get("run_ua_per_mhz") else None,
                static_ua=float(power["static_ua"]) if power.get("static_ua") is not None else None,
                rail_ref_v=float(power["rail_ref_v"]) if power.get("rail_ref_v") else None,
                vcore_ranges=tuple((float(r["max_mhz"]), float(r["vcore_v"])) for r in power.get("vcore_ranges", [])),
                fitted_power_profile=power.get("fitted_profile"),
                low_power_modes=modes,
                raw=dict(d),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, BoardError):
                raise
            raise BoardError(f"{where} is not a board description ({exc}); see emulator/whatif/boards/*.json") from None

    @classmethod
    def load(cls, name_or_path: "str | Path | Board") -> "Board":
        """A shipped board by name, or a board JSON by path."""
        if isinstance(name_or_path, Board):
            return name_or_path
        p = Path(str(name_or_path))
        if p.suffix == ".json" or p.exists():
            return cls.from_dict(read_json(p, BoardError, "board file"), str(p))
        f = BOARDS_DIR / f"{str(name_or_path).lower()}.json"
        if not f.exists():
            raise BoardError(
                f"unknown board {name_or_path!r}: shipped boards are {', '.join(board_names())}; "
                "or give the path of your own board JSON"
            )
        return cls.from_dict(json.loads(f.read_text()), str(f))

    @classmethod
    def generic(cls, core: str, clock_mhz: float, name: str | None = None) -> "Board":
        """A board known only by its core and clock (no flash model, no power
        data): what a published run on an unshipped board gives."""
        if core not in CORES:
            raise BoardError(f"core {core!r} is not one of {', '.join(CORES)}")
        return cls(name=name or f"generic {core} @ {clock_mhz:g} MHz", mcu="", core=core, clock_mhz=float(clock_mhz),
                   max_clock_mhz=float(clock_mhz), flash_mhz_per_ws=None, stall_log_sigma=0.0)

    def to_dict(self) -> dict:
        return dict(self.raw) if self.raw else {"name": self.name, "core": self.core, "clock_mhz": self.clock_mhz}

    # -- physics ----------------------------------------------------------------
    def wait_states(self, clock_mhz: float) -> int:
        if self.flash_mhz_per_ws is None:
            return 0
        from ..cpu.cycles import flash_wait_states

        return flash_wait_states(clock_mhz, self.flash_mhz_per_ws)

    def check_clock(self, clock_mhz: float) -> None:
        if not 0 < clock_mhz <= self.max_clock_mhz + 1e-9:
            raise BoardError(f"{clock_mhz:g} MHz is outside {self.name}'s clock range (up to {self.max_clock_mhz:g} MHz)")

    def check_supply(self, supply_v: float) -> None:
        if not self.supply_min_v - 1e-9 <= supply_v <= self.supply_max_v + 1e-9:
            raise BoardError(
                f"{supply_v:g} V is outside {self.name}'s supply range ({self.supply_min_v:g}-{self.supply_max_v:g} V)"
            )

    @property
    def has_power(self) -> bool:
        return self.fitted_power_profile is not None or self.run_ua_per_mhz is not None

    def power_model(self) -> tuple[PowerModel, str]:
        """The board's power model and where it comes from: the fitted profile
        of this very board when there is one, else one built from the
        datasheet's run current (the inference share of the reference board)."""
        if self.fitted_power_profile:
            from ..power.model import PROFILES_DIR

            return PowerModel.load(PROFILES_DIR / self.fitted_power_profile), "fitted"
        if self.run_ua_per_mhz is None:
            raise BoardError(
                f"{self.name} has no power data: {self.raw.get('power_note') or 'calibrate it from measured energies'}"
            )
        share = float(priors()["power"]["infer_extra_share"])
        ranges = self.vcore_ranges or ((self.max_clock_mhz, 1.0),)
        model = PowerModel(
            static_ua=float(self.static_ua or 0.0),
            run_ua_per_mhz=self.run_ua_per_mhz,
            tx_extra_ua=0.0,
            infer_extra_ua_per_mhz=share * self.run_ua_per_mhz,
            ref_clock_mhz=self.clock_mhz,
            vcore_ranges=ranges,
            name=self.name,
            regulator=self.regulator.lower(),
            rail_ref_v=self.rail_ref_v or self.supply_v,
            provenance={"source": f"{self.name} datasheet run current ({self.raw.get('power', {}).get('source', '')}); "
                                  "inference share of the reference board"},
        )
        return model, "datasheet"

    def memory_section(self) -> dict:
        """The cycle model's ``memory`` section for this board."""
        out: dict[str, Any] = {}
        if self.sram_bytes:
            out["sram_bytes"] = self.sram_bytes
        if self.flash_bytes:
            out["flash_bytes"] = self.flash_bytes
        if self.flash_mhz_per_ws:
            out["flash_mhz_per_ws"] = self.flash_mhz_per_ws
        return out


def board_names() -> list[str]:
    return sorted(json.loads(p.read_text())["name"] for p in BOARDS_DIR.glob("*.json"))


def shipped_boards() -> list[Board]:
    return [Board.load(n) for n in board_names()]
