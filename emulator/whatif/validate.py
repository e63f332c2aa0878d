"""Held-out validation of stack calibration on published runs.

For every system of a published-runs table (``benchmarks/data/published_runs.csv``:
one kernel stack on one board), calibrate the stack from a subset of its
models (two or three), predict the others' latency and energy, and compare
with what was published; plus the supply check: same firmware, same board,
published at two supplies.
"""
from __future__ import annotations

import csv
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .boards import Board, BoardError
from .energy import fit_power, predict_energy
from .stack import REFERENCE_LIBRARY, Run, StackError, fit

COLUMNS = ("system", "board", "core", "clock_mhz", "stack", "model", "latency_us", "energy_uj",
           "energy_latency_us", "supply_v", "source")


@dataclass
class PublishedSystem:
    system: str
    board: str
    core: str
    clock_mhz: float
    stack: str
    runs: list[Run] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def is_reference(self) -> bool:
        return self.stack == REFERENCE_LIBRARY

    def board_description(self) -> Board:
        """The shipped board of that name, else a generic one (core, clock)."""
        try:
            return Board.load(self.board)
        except BoardError:
            return Board.generic(self.core, self.clock_mhz, self.board)

    def run(self, model: str) -> Run:
        return next(r for r in self.runs if r.model == model)

    @property
    def models(self) -> list[str]:
        return [r.model for r in self.runs]


def read_published(path: str | Path) -> dict[str, PublishedSystem]:
    """The published-runs CSV, grouped by system (in file order)."""
    path = Path(path)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    if not rows or set(COLUMNS) - set(rows[0]):
        raise StackError(f"{path}: expected the columns {', '.join(COLUMNS)}")
    out: dict[str, PublishedSystem] = {}
    for i, r in enumerate(rows, start=3):
        s = out.setdefault(r["system"], PublishedSystem(r["system"], r["board"], r["core"], float(r["clock_mhz"]),
                                                         r["stack"]))
        def f(k):
            v = (r.get(k) or "").strip()
            return float(v) if v else None
        s.runs.append(Run(r["model"], float(r["clock_mhz"]), float(r["latency_us"]), f("supply_v"), f("energy_uj"),
                          f("energy_latency_us"), f"{path.name}:{i}"))
        s.sources[r["model"]] = r["source"]
    return out


def _subsets(models: Sequence[str], sizes: Iterable[int], only: Sequence[Sequence[str]] | None):
    if only:
        for sub in only:
            if set(sub) <= set(models) and len(set(sub)) < len(models):
                yield tuple(sub)
        return
    for k in sizes:
        if k < len(models):
            yield from itertools.combinations(models, k)


def held_out(systems: dict[str, PublishedSystem], sizes: Iterable[int] = (2, 3),
             subsets: Sequence[Sequence[str]] | None = None, include_reference: bool = False,
             models_dir=None, noise_only: bool = False) -> list[dict]:
    """One row per (system, calibration subset, held-out model)
    (``noise_only``: see :func:`~emulator.whatif.stack.fit`)."""
    rows = []
    for s in systems.values():
        if s.is_reference and not include_reference:
            continue
        board = s.board_description()
        for sub in _subsets(s.models, sizes, subsets):
            cal = [s.run(m) for m in sub]
            # the published stacks are not the reference library: structural prior
            prof = fit(cal, board, library=s.stack if not s.is_reference else "reference-as-unknown",
                       models_dir=models_dir, noise_only=noise_only)
            power = None
            if sum(r.uj_per_inference is not None for r in cal) >= 1:
                power = fit_power(cal, board)
            for m in s.models:
                if m in sub:
                    continue
                truth = s.run(m)
                row = {"system": s.system, "board": s.board, "core": s.core, "clock_mhz": s.clock_mhz,
                       "stack": s.stack, "calibrated_on": "+".join(sub), "n_cal": len(sub), "model": m,
                       "source": s.sources.get(m, "")}
                if power is not None and truth.uj_per_inference is not None:
                    ep = predict_energy(prof, m, truth.clock_mhz, truth.supply_v, power, models_dir=models_dir)
                    lat = ep.latency
                    row.update({"supply_v": truth.supply_v, "energy_uj": truth.uj_per_inference,
                                "pred_energy_uj": ep.energy_uj, "energy_lo_uj": ep.lo_uj, "energy_hi_uj": ep.hi_uj,
                                "energy_err_pct": 100 * (ep.energy_uj / truth.uj_per_inference - 1),
                                "energy_covered": ep.lo_uj <= truth.uj_per_inference <= ep.hi_uj})
                else:
                    lat = prof.predict(m, truth.clock_mhz, models_dir=models_dir)
                row.update({"latency_us": truth.us_per_inference, "pred_latency_us": lat.latency_us,
                            "latency_lo_us": lat.lo_us, "latency_hi_us": lat.hi_us,
                            "latency_err_pct": 100 * (lat.latency_us / truth.us_per_inference - 1),
                            "latency_covered": lat.lo_us <= truth.us_per_inference <= lat.hi_us})
                rows.append(row)
    return rows


def reference_loo(models_dir=None, noise_only: bool = False) -> list[dict]:
    """Leave-one-out on the reference stack: the shipped profile's four
    reference latencies, each predicted from the other three with the
    structural prior and the what-if fit's likelihood (measurement noise and
    the model error, as every what-if calibration). The shipped profile itself
    was fitted by ``emulator.cpu.calibrate``, with measurement noise only
    (``MEASUREMENT_LOG_SIGMA``), hence the different leave-one-out figures of
    ``benchmarks/latency_table.py``."""
    from .stack import StackProfile, structural_prior

    ref = StackProfile.reference()
    board = ref.board
    runs = [Run(m["model"], float(m["clock_mhz"]), float(m["us_per_inference"])) for m in
            ref.provenance["measurements"]]
    out = []
    for i, held in enumerate(runs):
        prof = fit([r for j, r in enumerate(runs) if j != i], board, prior=structural_prior(board),
                   models_dir=models_dir, noise_only=noise_only)
        p = prof.predict(held.model, held.clock_mhz, models_dir=models_dir)
        out.append({"model": held.model, "latency_us": held.us_per_inference, "pred_latency_us": p.latency_us,
                    "latency_lo_us": p.lo_us, "latency_hi_us": p.hi_us,
                    "latency_err_pct": 100 * (p.latency_us / held.us_per_inference - 1),
                    "latency_covered": p.lo_us <= held.us_per_inference <= p.hi_us})
    return out


def supply_pairs(systems: dict[str, PublishedSystem]) -> list[dict]:
    """Same board, same stack (same firmware), energy published at two
    supplies: the lower supply's energy scaled by the power model's rail ratio
    (LDO: V2/V1; SMPS: 1) against the other supply's published energy."""
    out = []
    groups: dict[tuple[str, str], list[PublishedSystem]] = {}
    for s in systems.values():
        groups.setdefault((s.board, s.stack), []).append(s)
    for (board_name, stack), ss in groups.items():
        for a, b in itertools.combinations(ss, 2):
            try:
                board = Board.load(board_name)
            except BoardError:
                continue
            for m in a.models:
                if m not in b.models:
                    continue
                ra, rb = a.run(m), b.run(m)
                if None in (ra.uj_per_inference, rb.uj_per_inference) or ra.supply_v == rb.supply_v:
                    continue
                lo, hi = (ra, rb) if ra.supply_v < rb.supply_v else (rb, ra)
                sl, sh = (a, b) if lo is ra else (b, a)
                ratio = (hi.supply_v / lo.supply_v) if board.regulator == "LDO" else 1.0
                pred = lo.uj_per_inference * ratio
                out.append({"board": board_name, "regulator": board.regulator, "stack": stack, "model": m,
                            "from_system": sl.system, "from_supply_v": lo.supply_v, "from_energy_uj": lo.uj_per_inference,
                            "to_system": sh.system, "to_supply_v": hi.supply_v, "energy_uj": hi.uj_per_inference,
                            "pred_energy_uj": pred, "energy_err_pct": 100 * (pred / hi.uj_per_inference - 1),
                            "latency_ratio": (hi.energy_us_per_inference or hi.us_per_inference)
                            / (lo.energy_us_per_inference or lo.us_per_inference),
                            "source_from": sl.sources.get(m, ""), "source_to": sh.sources.get(m, "")})
    return out


def datasheet_power(systems: dict[str, PublishedSystem], level: float | None = None) -> list[dict]:
    """The power a board brings without measurements (its datasheet's headline
    run current, :func:`~emulator.whatif.energy.board_power`), checked on
    its own: for every published energy on a shipped board whose power is
    the datasheet's, that power at the run's clock and supply times the
    energy run's own published latency, against the published energy, with
    the prior's interval (``datasheet_log_sigma``)."""
    from scipy import stats

    from .boards import priors
    from .energy import board_power

    lvl = float(level if level is not None else priors()["interval"])
    out = []
    for s in systems.values():
        try:
            board = Board.load(s.board)
            if board.power_model()[1] == "fitted":
                continue
            pw = board_power(board)
        except BoardError:
            continue
        z = float(stats.t.ppf(0.5 + lvl / 2, pw.dof))
        for r in s.runs:
            if r.uj_per_inference is None or r.supply_v is None:
                continue
            lat_us = r.energy_us_per_inference or r.us_per_inference
            pred = pw.power_mw(r.clock_mhz, r.supply_v) * lat_us * 1e-3
            lo, hi = pred * math.exp(-z * pw.sd_log), pred * math.exp(z * pw.sd_log)
            out.append({"system": s.system, "board": s.board, "stack": s.stack, "model": r.model,
                        "supply_v": r.supply_v, "energy_uj": r.uj_per_inference, "pred_energy_uj": pred,
                        "energy_lo_uj": lo, "energy_hi_uj": hi,
                        "energy_err_pct": 100 * (pred / r.uj_per_inference - 1),
                        "energy_covered": lo <= r.uj_per_inference <= hi, "source": s.sources.get(r.model, "")})
    return out


def summarize(rows: list[dict], tol_pct: float = 25.0) -> dict:
    """Counts within ``tol_pct`` and covered, for latency and energy, by calibration size."""
    out = {}
    for what in ("latency", "energy"):
        rs = [r for r in rows if f"{what}_err_pct" in r]
        by = {}
        for n in sorted({r["n_cal"] for r in rs}):
            sub = [r for r in rs if r["n_cal"] == n]
            by[n] = {"n": len(sub), "within": sum(abs(r[f"{what}_err_pct"]) <= tol_pct for r in sub),
                     "covered": sum(bool(r[f"{what}_covered"]) for r in sub),
                     "median_abs_err_pct": _median([abs(r[f"{what}_err_pct"]) for r in sub])}
        out[what] = by
    return out


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    if not xs:
        return math.nan
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def cross_board(systems: dict[str, PublishedSystem], models_dir=None) -> list[dict]:
    """Another board, same stack, same release: the stack calibrated on all of
    one system's models, moved to the other board (its core's prior cycle
    factor, its flash), predicts the other system's latencies."""
    out = []
    groups: dict[tuple[str, str, str], list[PublishedSystem]] = {}
    for s in systems.values():
        if s.is_reference:
            continue
        release = s.system.split("/")[0]
        submitter = s.system.split("/")[1]
        groups.setdefault((release, submitter, s.stack), []).append(s)
    for (_rel, _sub, stack), ss in groups.items():
        for a, b in itertools.permutations(ss, 2):
            if a.board == b.board:
                continue
            prof = fit(a.runs, a.board_description(), library=stack, models_dir=models_dir)
            moved = prof.on_board(b.board_description())
            for r in b.runs:
                if r.model not in a.models:
                    continue
                p = moved.predict(r.model, r.clock_mhz, models_dir=models_dir)
                out.append({"stack": stack, "from_system": a.system, "from_core": a.core, "to_system": b.system,
                            "to_core": b.core, "model": r.model, "latency_us": r.us_per_inference,
                            "pred_latency_us": p.latency_us,
                            "latency_err_pct": 100 * (p.latency_us / r.us_per_inference - 1),
                            "latency_covered": p.lo_us <= r.us_per_inference <= p.hi_us})
    return out
