"""One what-if answer: latency, energy per inference, average power and
battery life of a duty cycle, memory fit, each with where it comes from."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..cpu import cycles as C
from .boards import BoardError
from .energy import DutyCycle, duty_cycle, power_of, predict_energy
from .stack import StackProfile, graph


def answer(model: "str | Path", profile: StackProfile, clock_mhz: float | None = None, supply_v: float | None = None,
           app: DutyCycle | None = None, level: float | None = None, models_dir=None) -> dict[str, Any]:
    """Everything ``tinytwin whatif`` prints, as one flat-ish dict (JSON-ready)."""
    b = profile.board
    f = float(clock_mhz if clock_mhz is not None else b.clock_mhz)
    v = float(supply_v if supply_v is not None else b.supply_v)
    g = graph(model, models_dir)
    out: dict[str, Any] = {
        "model": g.name, "stack": profile.library, "profile": profile.name, "board": b.name, "core": b.core,
        "clock_mhz": f, "supply_v": v, "regulator": b.regulator, "flash_wait_states": b.wait_states(f),
    }
    try:
        power = power_of(profile)
    except BoardError as exc:
        power = None
        out["energy_note"] = str(exc)
    if power is not None:
        ep = predict_energy(profile, g, f, v, power, level)
        out.update(ep.to_dict())
        if app is not None:
            try:
                out.update(duty_cycle(ep, b, app))
            except BoardError as exc:
                out["app_note"] = str(exc)
    else:
        b.check_supply(v)
        out.update(profile.predict(g, f, level).to_dict())
    est = C.estimate(g, profile.kernel_profile(), f)
    m = est.memory
    out.update({
        "macs": est.macs,
        "arena_bytes": m.arena_bytes, "stack_bytes": m.stack_bytes, "sram_used_bytes": m.sram_used,
        "sram_bytes": m.sram_bytes, "model_bytes": m.model_bytes, "flash_bytes": m.flash_bytes,
        "memory_fits": m.fits, "memory_verdict": m.verdict,
    })
    note = in_sample(profile, g.name, f)
    if note:
        out["in_sample"] = note
    out["assumptions"] = assumptions(profile, power)
    return out


def in_sample(profile: StackProfile, model: str, clock_mhz: float) -> str | None:
    """Why the latency is a fit rather than a prediction, when ``model`` at
    ``clock_mhz`` is one of the measurements ``profile`` was fitted to (its
    interval then shows the fit's spread, not a prediction's). A stack moved
    to another board (``on_board``) keeps its measurements but was never
    fitted there."""
    prov = profile.provenance
    if prov.get("moved_to") or prov.get("board", profile.board.name) != profile.board.name:
        return None
    for m in prov.get("measurements", []):
        if m.get("model") == model and m.get("us_per_inference") and float(m["clock_mhz"]) == clock_mhz:
            return (f"{model} at {clock_mhz:g} MHz is one of the measurements this profile was fitted to "
                    f"({m['us_per_inference'] / 1e3:,.3f} ms, {m.get('source') or 'measured'}): its latency is a fit, "
                    "not a prediction")
    return None


def assumptions(profile: StackProfile, power) -> list[str]:
    b = profile.board
    out = [
        f"latency: cycle model of the graph with the {profile.library} profile ({profile.provenance.get('kind', '')}); "
        "intervals: posterior covariance of the fit propagated "
        f"to the prediction plus a model error of {100 * profile.sigma_model:.0f} % (log), Student t with "
        f"{profile.dof:g} degrees of freedom",
        f"board {b.name}: {b.core}, flash {'not modelled' if b.flash_mhz_per_ws is None else f'{b.flash_mhz_per_ws:g} MHz per wait state'}, "
        f"{b.regulator} ({'power = VDD x current' if b.regulator == 'LDO' else 'power independent of VDD'})",
    ]
    if power is not None:
        out.append(f"power: {power.source}; {power.k_ua_per_mhz:.1f} uA/MHz while inferring + {power.static_ua:.0f} uA "
                   f"static, uncertainty {100 * power.sd_log:.0f} % (log)")
    return out


def render(a: dict[str, Any]) -> str:
    """The answer as text."""
    lvl = int(round(100 * a.get("level", 0.9)))
    lines = [
        f"{a['model']} on {a['board']} ({a['core']}, {a['clock_mhz']:g} MHz, {a['supply_v']:g} V {a['regulator']}), "
        f"stack {a['stack']}",
        f"  latency        {a['latency_us'] / 1e3:10.3f} ms   [{a['latency_lo_us'] / 1e3:.3f}, {a['latency_hi_us'] / 1e3:.3f}] "
        f"({lvl} %)",
    ]
    if "energy_uj" in a:
        lines += [
            f"  energy/inf     {a['energy_uj']:10.1f} uJ   [{a['energy_lo_uj']:.1f}, {a['energy_hi_uj']:.1f}]",
            f"  power (infer)  {a['power_mw']:10.3f} mW",
        ]
    else:
        lines.append(f"  energy         not available: {a.get('energy_note', '')}")
    if "avg_power_mw" in a:
        lines.append(
            f"  duty cycle     one inference every {a['period_s']:g} s, else {a['sleep_mode']} ({a['sleep_what']}, "
            f"{a['sleep_ua']:g} uA): average {a['avg_power_mw'] * 1e3:.2f} uW [{a['avg_power_lo_mw'] * 1e3:.2f}, "
            f"{a['avg_power_hi_mw'] * 1e3:.2f}], inference {100 * a['inference_share']:.1f} % of the energy"
        )
    if "app_note" in a:
        lines.append(f"  duty cycle     not available: {a['app_note']}")
    if "battery_life_h" in a:
        lines.append(
            f"  battery        {a['battery_mah']:g} mAh at {a['supply_v']:g} V: {a['battery_life_h'] / 24:.1f} days "
            f"[{a['battery_life_lo_h'] / 24:.1f}, {a['battery_life_hi_h'] / 24:.1f}]"
        )
    lines.append(
        f"  memory         arena {a['arena_bytes'] / 1024:.1f} KiB + stack {a['stack_bytes'] / 1024:.1f} KiB of "
        f"{a['sram_bytes'] / 1024:.0f} KiB SRAM; model {a['model_bytes'] / 1024:.1f} KiB of {a['flash_bytes'] / 1024:.0f} KiB "
        f"flash: {a['memory_verdict']}"
    )
    if "in_sample" in a:
        lines.append(f"  in-sample      {a['in_sample']}")
    lines.append("  assumptions:")
    lines += [f"    - {s}" for s in a["assumptions"]]
    return "\n".join(lines)
