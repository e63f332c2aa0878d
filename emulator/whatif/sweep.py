"""Sweep plans: a grid of what-if questions (models x clocks x supplies x
profiles), one table of answers.

A plan is YAML::

    models: [kws01, ad01]              # names (resolved in models_dir) or .tflite paths
    clocks_mhz: [80, 120]              # optional: default each profile's board clock
    supplies_v: [1.8, 3.0]             # optional: default each board's supply
    profiles:                          # optional: default the reference stack
      - name: reference                # a label for the table
      - name: on-u575
        board: NUCLEO-U575ZI-Q         # the reference stack moved to another board
      - name: mine
        profile: my_stack.json         # a stack profile from `tinytwin calibrate --board`
    app: {period_s: 1.0, sleep_mode: stop2, battery_mah: 220}   # optional duty cycle
    accuracy: {datasets_dir: ../shared/datasets, limit: 100}  # optional: <dir>/<model>/y_labels.csv
    models_dir: ../shared/models       # optional
    level: 0.9                         # optional interval level
    output: {csv: sweep.csv, json: sweep.json, plot: sweep.png}   # optional

Relative paths are relative to the plan file. Every point is independent
(:func:`compute_point` is a pure function of its arguments), so the table is
the same whichever executor computed it.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..errors import TinytwinError

#: the table's columns, in order (a row has all of them; missing values are empty)
COLUMNS = (
    "index", "profile", "stack", "board", "core", "model", "clock_mhz", "supply_v", "regulator",
    "flash_wait_states", "latency_us", "latency_lo_us", "latency_hi_us", "power_mw", "energy_uj", "energy_lo_uj",
    "energy_hi_uj", "period_s", "sleep_mode", "avg_power_mw", "avg_power_lo_mw", "avg_power_hi_mw",
    "battery_life_h", "battery_life_lo_h", "battery_life_hi_h", "arena_bytes", "sram_used_bytes", "sram_bytes",
    "model_bytes", "flash_bytes", "memory_fits", "accuracy_top1", "accuracy_n", "note",
)


class PlanError(TinytwinError, ValueError):
    """A sweep plan that cannot be run as written."""


@dataclass
class ProfileSpec:
    name: str
    profile: str | None = None
    board: str | None = None


@dataclass
class Plan:
    models: list[str]
    clocks_mhz: list[float | None] = field(default_factory=lambda: [None])
    supplies_v: list[float | None] = field(default_factory=lambda: [None])
    profiles: list[ProfileSpec] = field(default_factory=lambda: [ProfileSpec("reference")])
    app: dict | None = None
    accuracy: dict | None = None
    models_dir: str | None = None
    level: float | None = None
    output: dict = field(default_factory=dict)
    base: Path = Path(".")

    def points(self) -> list[dict]:
        """The grid in table order: profile, model, clock, supply."""
        out = []
        for p in self.profiles:
            for m in self.models:
                for f in self.clocks_mhz:
                    for v in self.supplies_v:
                        out.append({"index": len(out), "profile_name": p.name, "profile": p.profile, "board": p.board,
                                    "model": m, "clock_mhz": f, "supply_v": v, "app": self.app,
                                    "models_dir": self.models_dir, "level": self.level})
        return out


def _path(base: Path, p: str | None) -> str | None:
    if p is None:
        return None
    q = Path(p).expanduser()
    if q.is_absolute() or (q.suffix == "" and "/" not in p):
        return str(q) if q.is_absolute() else p
    return str((base / q).resolve())


def load_plan(path: str | Path) -> Plan:
    path = Path(path)
    try:
        d = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PlanError(f"plan {path} not found") from None
    except yaml.YAMLError as exc:
        raise PlanError(f"plan {path} is not YAML ({exc})") from None
    return plan_from_dict(d, path.resolve().parent, str(path))


def plan_from_dict(d: Any, base: Path = Path("."), where: str = "plan") -> Plan:
    if not isinstance(d, dict) or not d.get("models"):
        raise PlanError(f"{where}: give at least 'models: [kws01, ...]'")
    unknown = set(d) - {"models", "clocks_mhz", "supplies_v", "profiles", "app", "accuracy", "models_dir", "level",
                        "output"}
    if unknown:
        raise PlanError(f"{where}: unknown keys {sorted(unknown)} (see `tinytwin sweep --help`)")

    def nums(key):
        v = d.get(key)
        if v is None:
            return [None]
        if not isinstance(v, list) or not v or not all(isinstance(x, (int, float)) for x in v):
            raise PlanError(f"{where}: {key} must be a list of numbers")
        return [float(x) for x in v]

    profiles = []
    for i, p in enumerate(d.get("profiles") or [{"name": "reference"}]):
        if not isinstance(p, dict) or set(p) - {"name", "profile", "board"}:
            raise PlanError(f"{where}: profiles[{i}] must be a mapping with name, profile (a stack JSON) and/or board")
        prof = p.get("profile")
        board = p.get("board")
        profiles.append(ProfileSpec(str(p.get("name") or prof or board or f"profile{i}"), _path(base, prof),
                                    _path(base, board) if board and str(board).endswith(".json") else board))
    app = d.get("app")
    if app is not None and (not isinstance(app, dict) or "period_s" not in app or "sleep_mode" not in app):
        raise PlanError(f"{where}: app needs period_s and sleep_mode (and optionally battery_mah)")
    acc = d.get("accuracy")
    if acc is not None:
        if not isinstance(acc, dict) or "datasets_dir" not in acc:
            raise PlanError(f"{where}: accuracy needs datasets_dir (holding <model>/y_labels.csv)")
        acc = dict(acc, datasets_dir=_path(base, acc["datasets_dir"]))
    out = dict(d.get("output") or {})
    for k in ("csv", "json", "plot"):
        if out.get(k):
            out[k] = _path(base, out[k])
    return Plan(
        models=[_path(base, m) if str(m).endswith(".tflite") else str(m) for m in d["models"]],
        clocks_mhz=nums("clocks_mhz"), supplies_v=nums("supplies_v"), profiles=profiles, app=app, accuracy=acc,
        models_dir=_path(base, d.get("models_dir")) if d.get("models_dir") else None,
        level=float(d["level"]) if d.get("level") is not None else None, output=out, base=base,
    )


def compute_point(point: dict) -> dict:
    """One row of the table (a pure function of ``point``; run in any process)."""
    from .answer import answer
    from .boards import BoardError
    from .energy import DutyCycle
    from .stack import StackError, profile_from

    row: dict[str, Any] = {c: "" for c in COLUMNS}
    row.update(index=point["index"], profile=point["profile_name"], model=Path(str(point["model"])).stem)
    try:
        prof = profile_from(point["profile"], point["board"])
        app = point.get("app")
        dc = DutyCycle(float(app["period_s"]), str(app["sleep_mode"]),
                       float(app["battery_mah"]) if app.get("battery_mah") else None) if app else None
        a = answer(point["model"], prof, point["clock_mhz"], point["supply_v"], dc, point.get("level"),
                   point.get("models_dir"))
    except (BoardError, StackError, FileNotFoundError, ValueError) as exc:
        row["note"] = f"skipped: {exc}"
        return row
    for c in COLUMNS:
        if c in a and c not in ("index", "profile", "model"):
            row[c] = a[c]
    row["note"] = "; ".join(a[k] for k in ("in_sample", "energy_note", "app_note") if a.get(k))
    return row


def merge_accuracy(rows: list[dict], accuracy: dict[str, dict]) -> list[dict]:
    """Put each model's accuracy (one run per model) on its rows."""
    for r in rows:
        acc = accuracy.get(r["model"])
        if acc is None:
            continue
        if "error" in acc:
            r["note"] = "; ".join(x for x in (r["note"], f"accuracy not run: {acc['error']}") if x)
        else:
            r["accuracy_top1"], r["accuracy_n"] = acc["accuracy_top1"], acc["accuracy_n"]
    return rows


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ""
    return str(v)


def to_csv(rows: Sequence[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_cell(r.get(c, "")) for c in COLUMNS])
    return buf.getvalue()


def to_json(rows: Sequence[dict]) -> str:
    return json.dumps([{c: r.get(c, "") for c in COLUMNS} for r in rows], indent=1) + "\n"


def plot(rows: Sequence[dict], path: str | Path, title: str = "tinytwin sweep", level: float | None = None) -> Path:
    """Latency (top row) and energy per inference (bottom row) against the
    clock with their intervals: one column per model, one colour per profile,
    one line style per supply."""
    import matplotlib

    from ..figures import new_figure

    ok = [r for r in rows if r.get("latency_us") not in ("", None)]
    if not ok:
        raise PlanError("nothing to plot: every point was skipped")
    models = list(dict.fromkeys(r["model"] for r in ok))
    profiles = list(dict.fromkeys(r["profile"] for r in ok))
    supplies = list(dict.fromkeys(r["supply_v"] for r in ok))
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    fig = new_figure(figsize=(3.4 * len(models) + 1.5, 6.0))
    axes = fig.subplots(2, len(models), squeeze=False, sharex=True)
    for j, m in enumerate(models):
        for pi, prof in enumerate(profiles):
            for si, v in enumerate(supplies):
                pts = sorted((r for r in ok if (r["model"], r["profile"], r["supply_v"]) == (m, prof, v)),
                             key=lambda r: r["clock_mhz"])
                if not pts:
                    continue
                kw = dict(color=colours[pi % len(colours)], linestyle=styles[si % len(styles)], marker="o",
                          capsize=3, label=f"{prof}, {v:g} V")
                f = [r["clock_mhz"] for r in pts]
                lat = [r["latency_us"] / 1e3 for r in pts]
                axes[0][j].errorbar(f, lat, yerr=[[a - r["latency_lo_us"] / 1e3 for a, r in zip(lat, pts)],
                                                  [r["latency_hi_us"] / 1e3 - a for a, r in zip(lat, pts)]], **kw)
                if all(r.get("energy_uj") not in ("", None) for r in pts):
                    e = [r["energy_uj"] for r in pts]
                    axes[1][j].errorbar(f, e, yerr=[[a - r["energy_lo_uj"] for a, r in zip(e, pts)],
                                                    [r["energy_hi_uj"] - a for a, r in zip(e, pts)]], **kw)
        axes[0][j].set_title(m)
        axes[1][j].set_xlabel("clock (MHz)")
        for ax in (axes[0][j], axes[1][j]):
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("latency per inference (ms)")
    axes[1][0].set_ylabel("energy per inference (uJ)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8)
    if level is None:
        from .boards import priors

        level = float(priors()["interval"])
    fig.suptitle(f"{title} (bars: {int(round(100 * level))} % intervals)")
    fig.tight_layout(rect=(0, 0, 1 - 1.4 / fig.get_figwidth(), 1))
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
