"""Energy per inference, average power and battery life, with intervals.

Power while inferring, on a board at clock f and supply V::

    P = rail(V) x I(f),   I(f) = static + k x s(f) x f

``rail(V)`` is V itself behind an LDO (the current does not depend on the
supply) and the calibration supply behind an SMPS (the converter keeps the
power, so the current falls as V rises); ``s(f)`` is the core voltage of the
regulator range the clock needs relative to the calibration clock's; ``k``
(µA/MHz) is the one inference term of the power model, the same for every
model (as on the reference board, where one term predicts each held-out
model's window power within 2.4 %).

Where ``k`` comes from, in order: energies you measured on this board and
stack (:func:`fit_power`: each run gives k_i = (E_i / (rail t_i) - static) /
(s f); log k is their mean, its spread pooled with a 3 % prior worth 2
pseudo-observations), the board's own fitted power profile (the reference
board), else the datasheet's headline run current (good to a factor of about
2: ``priors.json``). Energy per inference = P x latency, so its log variance is
the latency's plus the power's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from scipy import stats

from ..power.model import PowerModel
from .boards import Board, BoardError, priors
from .stack import Prediction, Run, StackError, StackProfile


def _scale(vcore_ranges, f: float, f_ref: float) -> float:
    """s(f) = Vcore(f) / Vcore(f_ref) (1 without ranges)."""
    if not vcore_ranges:
        return 1.0
    def v(x):
        for fm, vc in vcore_ranges:
            if x <= fm + 1e-9:
                return vc
        return vcore_ranges[-1][1]
    return v(f) / v(f_ref)


@dataclass
class PowerTerm:
    """The inference power of a stack on a board (see the module docstring)."""

    k_ua_per_mhz: float
    static_ua: float
    regulator: str  # "LDO" | "SMPS"
    rail_ref_v: float
    ref_clock_mhz: float
    vcore_ranges: tuple[tuple[float, float], ...]
    sd_log: float
    dof: float
    source: str
    runs: list[dict] | None = None

    def rail_v(self, supply_v: float) -> float:
        return supply_v if self.regulator == "LDO" else self.rail_ref_v

    def current_ua(self, clock_mhz: float) -> float:
        return self.static_ua + self.k_ua_per_mhz * _scale(self.vcore_ranges, clock_mhz, self.ref_clock_mhz) * clock_mhz

    def power_mw(self, clock_mhz: float, supply_v: float) -> float:
        return self.rail_v(supply_v) * self.current_ua(clock_mhz) * 1e-3

    def to_dict(self) -> dict:
        return {"k_ua_per_mhz": self.k_ua_per_mhz, "static_ua": self.static_ua, "regulator": self.regulator,
                "rail_ref_v": self.rail_ref_v, "ref_clock_mhz": self.ref_clock_mhz,
                "vcore_ranges": [list(r) for r in self.vcore_ranges], "sd_log": self.sd_log, "dof": self.dof,
                "source": self.source, "runs": self.runs or []}

    @classmethod
    def from_dict(cls, d: dict) -> "PowerTerm":
        return cls(float(d["k_ua_per_mhz"]), float(d["static_ua"]), str(d["regulator"]), float(d["rail_ref_v"]),
                   float(d["ref_clock_mhz"]), tuple(tuple(r) for r in d.get("vcore_ranges", [])), float(d["sd_log"]),
                   float(d["dof"]), str(d.get("source", "")), list(d.get("runs") or []))

    def power_model(self, name: str) -> PowerModel:
        """A :class:`PowerModel` the energy rig can run (``--power-profile``):
        the inference current split into run mode and the inference extra by
        the reference board's share; the print current is the reference's."""
        share = float(priors()["power"]["infer_extra_share"])
        ref = PowerModel.default()
        k = self.k_ua_per_mhz
        return PowerModel(
            static_ua=self.static_ua, run_ua_per_mhz=k / (1 + share), tx_extra_ua=ref.tx_extra_ua,
            infer_extra_ua_per_mhz=k * share / (1 + share), ref_clock_mhz=self.ref_clock_mhz,
            vcore_ranges=self.vcore_ranges or ((self.ref_clock_mhz, 1.0),), name=name,
            regulator=self.regulator.lower(), rail_ref_v=self.rail_ref_v,
            provenance={"source": self.source, "split": "run / inference extra by the reference board's share "
                        f"({share}); print current: the reference board's"},
        )


def board_power(board: Board) -> PowerTerm:
    """The power term a board brings without measurements of your own."""
    cfg = priors()["power"]
    model, how = board.power_model()
    if how == "fitted":
        sd, dof, src = float(cfg["sigma0_log"]), float(cfg["nu0"]), f"{board.name}: its fitted power profile"
    else:
        sd, dof, src = (float(cfg["datasheet_log_sigma"]), 1e6,
                        f"{board.name}: datasheet run current (headline, best case: the published energies on such "
                        "boards are 1.6-2.1 times this, so this energy is a lower estimate; calibrate the board's power "
                        "from measured energies)")
    k = model.run_ua_per_mhz + model.infer_extra_ua_per_mhz
    return PowerTerm(k, model.static_ua, board.regulator, model.rail_ref_v if board.regulator == "SMPS" else board.supply_v,
                     model.ref_clock_mhz, tuple(model.vcore_ranges), sd, dof, src)


def fit_power(runs: Sequence[Run], board: Board, latency: dict[str, float] | None = None) -> PowerTerm:
    """The inference term from measured energies per inference (runs with
    ``uj_per_inference`` and ``supply_v``). ``latency``: model -> µs, for runs
    that give no latency of their own."""
    cfg = priors()["power"]
    er = [r for r in runs if r.uj_per_inference is not None]
    if not er:
        raise StackError("no energies to fit the power from (columns supply_v,uj_per_inference)")
    try:
        base = board_power(board)
        static = base.static_ua
        ranges = base.vcore_ranges
    except BoardError:
        static, ranges = 0.0, board.vcore_ranges
    f_ref = er[0].clock_mhz
    rail_ref = er[0].supply_v if board.regulator == "SMPS" else 0.0
    logs, rows = [], []
    for r in er:
        t = r.energy_us_per_inference or r.us_per_inference or (latency or {}).get(r.model)
        if not t:
            raise StackError(f"{r.model}: no latency to turn its energy into a power")
        board.check_supply(r.supply_v)
        rail = r.supply_v if board.regulator == "LDO" else rail_ref
        i_ua = r.uj_per_inference / (rail * t) * 1e6
        k = (i_ua - static) / (_scale(ranges, r.clock_mhz, f_ref) * r.clock_mhz)
        if k <= 0:
            raise StackError(f"{r.model}: {i_ua:.0f} uA is below the board's static current {static:.0f} uA")
        logs.append(math.log(k))
        rows.append({"model": r.model, "clock_mhz": r.clock_mhz, "supply_v": r.supply_v, "uj": r.uj_per_inference,
                     "us": t, "current_ua": i_ua, "k_ua_per_mhz": k})
    n = len(logs)
    mean = sum(logs) / n
    s0, nu0 = float(cfg["sigma0_log"]), float(cfg["nu0"])
    ss = sum((x - mean) ** 2 for x in logs)
    s2 = (nu0 * s0 ** 2 + ss) / (nu0 + n - 1)
    return PowerTerm(math.exp(mean), static, board.regulator, rail_ref or board.supply_v, f_ref, tuple(ranges),
                     math.sqrt(s2 * (1 + 1 / n)), nu0 + n - 1,
                     f"fitted on {n} measured energies ({', '.join(r.model for r in er)}) on {board.name}", rows)


def power_of(profile: StackProfile) -> PowerTerm:
    """The profile's fitted power term, else its board's."""
    if profile.power:
        return PowerTerm.from_dict(profile.power)
    return board_power(profile.board)


@dataclass(frozen=True)
class EnergyPrediction:
    latency: Prediction
    supply_v: float
    power_mw: float
    energy_uj: float
    lo_uj: float
    hi_uj: float
    sd_log: float
    power_source: str

    def to_dict(self) -> dict:
        d = self.latency.to_dict()
        d.update({"supply_v": self.supply_v, "power_mw": self.power_mw, "energy_uj": self.energy_uj,
                  "energy_lo_uj": self.lo_uj, "energy_hi_uj": self.hi_uj, "energy_sd_log": self.sd_log,
                  "power_source": self.power_source})
        return d


def predict_energy(profile: StackProfile, model, clock_mhz: float | None = None, supply_v: float | None = None,
                   power: PowerTerm | None = None, level: float | None = None, models_dir=None) -> EnergyPrediction:
    """Energy per inference (with its interval) of ``model`` under ``profile``."""
    lat = profile.predict(model, clock_mhz, level, models_dir)
    v = float(supply_v if supply_v is not None else profile.board.supply_v)
    profile.board.check_supply(v)
    pw = power if power is not None else power_of(profile)
    p_mw = pw.power_mw(lat.clock_mhz, v)
    e = p_mw * lat.latency_us * 1e-3
    sd = math.sqrt(lat.sd_log ** 2 + pw.sd_log ** 2)
    dof = min(profile.dof, pw.dof)
    t = float(stats.t.ppf(0.5 + lat.level / 2, dof))
    return EnergyPrediction(lat, v, p_mw, e, e * math.exp(-t * sd), e * math.exp(t * sd), sd, pw.source)


# --------------------------------------------------------------------------
# duty cycle and battery
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class DutyCycle:
    """An application: one inference every ``period_s``, the rest of the time
    in the board's ``sleep_mode`` (a datasheet low-power mode)."""

    period_s: float
    sleep_mode: str
    battery_mah: float | None = None


def duty_cycle(ep: EnergyPrediction, board: Board, app: DutyCycle) -> dict[str, Any]:
    """Average power and battery life of ``app`` (intervals from the energy's).

    Sleep current: the datasheet's typical figure for the mode (no interval
    of its own); the supply feeds the board directly (battery voltage =
    supply). Wake-up and sensor energy are not included."""
    mode = board.low_power_modes.get(app.sleep_mode)
    if mode is None:
        known = ", ".join(board.low_power_modes) or "none transcribed"
        raise BoardError(f"{board.name} has no low-power mode {app.sleep_mode!r} (known: {known})")
    t_inf = ep.latency.latency_us * 1e-6
    if app.period_s <= t_inf:
        raise StackError(f"the period {app.period_s:g} s is not longer than one inference ({t_inf:.4g} s)")
    sleep_mw = ep.supply_v * mode.ua * 1e-3
    def avg(e_uj: float) -> float:
        return (e_uj * 1e-3 + sleep_mw * (app.period_s - t_inf)) / app.period_s  # mW
    out = {
        "period_s": app.period_s, "sleep_mode": mode.name, "sleep_what": mode.what, "sleep_ua": mode.ua,
        "sleep_mw": sleep_mw, "avg_power_mw": avg(ep.energy_uj), "avg_power_lo_mw": avg(ep.lo_uj),
        "avg_power_hi_mw": avg(ep.hi_uj), "inference_share": ep.energy_uj * 1e-3 / (avg(ep.energy_uj) * app.period_s),
    }
    if app.battery_mah:
        def life_h(p_mw: float) -> float:
            return app.battery_mah / (p_mw / ep.supply_v)
        out.update({"battery_mah": app.battery_mah, "battery_life_h": life_h(out["avg_power_mw"]),
                    "battery_life_lo_h": life_h(out["avg_power_hi_mw"]),
                    "battery_life_hi_h": life_h(out["avg_power_lo_mw"])})
    return out
