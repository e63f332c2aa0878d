"""Fit a :class:`~emulator.cpu.cycles.KernelProfile` to measured latencies.

The cycle model is linear in its parameters (cycles per unit of each loop
count). Each fitted parameter is written as

    param_k = instr_k * CPI * exp(delta_k)

``instr_k``: instructions per unit, counted from the structure of the
CMSIS-NN / TFLM code (the profile's ``prior.instr_per_unit``); ``CPI``: one
cycles-per-instruction factor shared by all of them (free: what the data
mostly determine); ``delta_k``: how far a parameter strays from that common
efficiency, with a Gaussian prior of width ``prior.log_sigma[k]``. The fit is
a maximum a posteriori least squares on log latency errors
(``scipy.optimize.least_squares``, Levenberg-Marquardt, the priors as extra
residual rows), which stays well posed with 3-4 measurements: the
data fix the common scale and whatever ratios they can resolve, the priors
hold the rest at their structural values. Every parameter stays positive.

``python -m emulator.cpu.calibrate --from-reference`` regenerates the
shipped default profile from the v0.5 reference results.
"""
from __future__ import annotations

import csv
import datetime as _dt
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import ConfigError
from . import cycles as C
from .cycles import KernelProfile

#: relative accuracy assumed for a measured latency (log units): the build-to-
#: build variation seen in the reference logs is a few 0.1 %
MEASUREMENT_LOG_SIGMA = 0.002
#: relative tolerance of the solver (scipy.optimize.least_squares' xtol, ftol
#: and gtol): far below what the measurements resolve
FIT_XTOL = 1e-12


@dataclass(frozen=True)
class Measurement:
    model: str
    clock_mhz: float
    us_per_inference: float
    source: str = ""


def read_measurements(path: str | Path) -> list[Measurement]:
    """CSV with header ``model,clock_mhz,us_per_inference``; a file that
    cannot be used raises :class:`ConfigError` saying where."""
    out = []
    try:
        with open(path, newline="") as fh:
            rows = csv.DictReader(line for line in fh if not line.lstrip().startswith("#"))
            need = {"model", "clock_mhz", "us_per_inference"}
            if rows.fieldnames is None or not need <= set(rows.fieldnames):
                raise ConfigError(f"{path}: header must contain {sorted(need)}, got {rows.fieldnames}")
            for i, r in enumerate(rows, start=2):
                try:
                    out.append(Measurement(r["model"].strip(), float(r["clock_mhz"]), float(r["us_per_inference"]), str(path)))
                except (AttributeError, TypeError, ValueError) as exc:
                    raise ConfigError(f"{path} line {i}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the measurements {path}: {exc.strerror or exc}") from None
    if not out:
        raise ConfigError(f"{path}: no measurements")
    return out


def _graph_for(name: str, models_dir: str | Path | None) -> C.Graph:
    from ..models.store import resolve_model

    return C.load_graph(resolve_model(name, models_dir))


def _prior(base: KernelProfile) -> tuple[dict[str, float], dict[str, float]]:
    pr = base.provenance.get("prior") or {}
    instr = {k: float(v) for k, v in (pr.get("instr_per_unit") or {}).items()}
    sig = {k: float(v) for k, v in (pr.get("log_sigma") or {}).items()}
    if not instr:
        raise ValueError(f"profile {base.name!r} has no provenance.prior.instr_per_unit to fit against")
    return instr, sig


@dataclass(frozen=True)
class _MapProblem:
    """The MAP problem in ``theta = [log CPI, delta_1 .. delta_K]``.

    Rows of :meth:`residuals`: one per measurement (log latency error over
    :data:`MEASUREMENT_LOG_SIGMA`), then one per free parameter (its prior,
    ``delta_k / log_sigma_k``). A parameter is ``instr_k * exp(theta_0 + delta_k)``, so
    they stay positive without bounds."""

    X: np.ndarray  # cycles per unit of each free parameter, per measurement
    fixed_cycles: np.ndarray  # cycles of the parameters not fitted, per measurement
    log_cycles: np.ndarray  # log of the measured cycles
    instr: np.ndarray  # prior instructions per unit
    log_sigma: np.ndarray  # prior widths

    def params(self, theta: np.ndarray) -> np.ndarray:
        return self.instr * np.exp(theta[0] + theta[1:])

    def cycles(self, theta: np.ndarray) -> np.ndarray:
        return self.X @ self.params(theta) + self.fixed_cycles

    def start(self) -> np.ndarray:
        """CPI matching the data on average, every delta at its prior mean."""
        theta = np.zeros(len(self.instr) + 1)
        structural = np.maximum(self.X @ self.instr, 1.0)
        theta[0] = max(float(np.mean(self.log_cycles - np.log(structural))), math.log(1e-6))
        return theta

    def residuals(self, theta: np.ndarray) -> np.ndarray:
        r_data = (np.log(self.cycles(theta)) - self.log_cycles) / MEASUREMENT_LOG_SIGMA
        return np.concatenate([r_data, theta[1:] / self.log_sigma])

    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        contrib = self.X * self.params(theta) / self.cycles(theta)[:, None]  # d log cycles / d log param_k
        j_data = np.hstack([contrib.sum(axis=1, keepdims=True), contrib]) / MEASUREMENT_LOG_SIGMA
        j_prior = np.hstack([np.zeros((len(self.instr), 1)), np.diag(1.0 / self.log_sigma)])
        return np.vstack([j_data, j_prior])

    def solve(self) -> np.ndarray:
        from scipy.optimize import least_squares  # here: scipy costs 0.5 s of every tinytwin start

        res = least_squares(self.residuals, self.start(), jac=self.jacobian, method="lm",
                            xtol=FIT_XTOL, ftol=FIT_XTOL, gtol=FIT_XTOL)
        if not res.success:
            raise ValueError(f"calibration did not converge: {res.message}")
        return res.x


def _as_measurements(measurements: "Sequence[Measurement] | str | Path") -> tuple[list[Measurement], str]:
    if isinstance(measurements, (str, Path)):
        return read_measurements(measurements), str(measurements)
    return list(measurements), "in-memory measurements"


def _map_problem(measurements: Sequence[Measurement], base: KernelProfile, mdir: Path | None) -> tuple[list[str], _MapProblem]:
    """The free parameters (those with a prior width > 0) and their MAP problem."""
    instr, sig = _prior(base)
    free = [k for k in instr if sig.get(k, 0.0) > 0.0]
    fixed = {k: v for k, v in base.params.items() if k not in free}
    graphs = {m.model: _graph_for(m.model, mdir) for m in measurements}
    fixed_vals = np.array(list(fixed.values()))
    return free, _MapProblem(
        X=np.array([C.feature_vector(graphs[m.model], free, m.clock_mhz) for m in measurements]),
        fixed_cycles=np.array([
            float(C.feature_vector(graphs[m.model], list(fixed), m.clock_mhz) @ fixed_vals) if fixed else 0.0
            for m in measurements
        ]),
        log_cycles=np.log(np.array([m.us_per_inference * m.clock_mhz for m in measurements])),
        instr=np.array([instr[k] for k in free]),
        log_sigma=np.array([sig[k] for k in free]),
    )


def _fit_provenance(base: KernelProfile, src: str, measurements: Sequence[Measurement], free: list[str],
                    theta: np.ndarray, params: dict[str, float], cycles: np.ndarray) -> dict[str, Any]:
    resid = []
    for m, pc in zip(measurements, cycles):
        us = float(pc / m.clock_mhz)
        resid.append({
            "model": m.model, "clock_mhz": m.clock_mhz, "measured_us": m.us_per_inference,
            "predicted_us": round(us, 3), "error_pct": round(100 * (us / m.us_per_inference - 1), 4),
        })
    prov = dict(base.provenance)
    prov.update({
        "fitted_on": src,
        "fit_date": _dt.date.today().isoformat(),
        "fit_method": "MAP least squares on log latency (scipy.optimize.least_squares, method 'lm'): "
        "param_k = instr_per_unit_k * CPI * exp(delta_k), delta_k ~ N(0, log_sigma_k), "
        f"measurement log sigma {MEASUREMENT_LOG_SIGMA}",
        "fitted_cpi": round(float(math.exp(theta[0])), 4),
        "fitted_deltas": {k: round(float(d), 4) for k, d in zip(free, theta[1:])},
        "fitted_params": {k: round(float(params[k]), 4) for k in free},
        "measurements": [vars(m) for m in measurements],
        "residuals": resid,
    })
    return prov


def fit(
    measurements: "Sequence[Measurement] | str | Path",
    base: KernelProfile | None = None,
    models_dir: str | Path | None = None,
    name: str | None = None,
) -> KernelProfile:
    """Fit the profile parameters to measured per-inference latencies.

    ``measurements``: list of :class:`Measurement` or a CSV path (header
    ``model,clock_mhz,us_per_inference``; model = kws01/vww01/ic01/ad01,
    resolved in ``models_dir`` / ``$TINYTWIN_MODELS_DIR``, or a .tflite path).
    ``base``: the profile whose structure, priors, firmware and memory
    sections are kept (default: the shipped profile)."""
    measurements, src = _as_measurements(measurements)
    if not measurements:
        raise ConfigError("no measurements to fit")
    base = base if base is not None else KernelProfile.load()
    free, problem = _map_problem(measurements, base, models_dir)
    theta = problem.solve()
    fitted = dict(base.params)
    fitted.update({k: float(v) for k, v in zip(free, problem.params(theta))})
    prof = base.copy(name=name or base.name, params=fitted)
    prof.provenance = _fit_provenance(base, src, measurements, free, theta, fitted, problem.cycles(theta))
    return prof


# --------------------------------------------------------------------------
# the reference results
# --------------------------------------------------------------------------
REF_MODEL_DIRS = {"kws01": "kws", "ic01": "ic", "vww01": "vww", "ad01": "ad"}


def default_golden_dir(shared: str | Path | None = None) -> Path | None:
    """The reference board's results in the ground-truth folder ``shared``
    (default: :func:`emulator.models.store.shared_dir`), if they are there."""
    from ..models.store import shared_dir

    base = Path(shared) if shared is not None else shared_dir()
    p = base / "golden" / "l4r5zi-tflm-v0.5" if base is not None else None
    return p if p is not None and p.is_dir() else None


def read_reference_csv(path: str | Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as fh:
        rows = csv.DictReader(line for line in fh if not line.lstrip().startswith("#"))
        return {r["model"]: r for r in rows}


_LAP = re.compile(r"dut: m-lap-us-(\d+)")
_CMD = re.compile(r'Command "((?:io )?dut infer[^"]*)"')


def lap_windows(log: str | Path) -> list[tuple[str, int, int]]:
    """(command, first lap value, delta) of every ``infer`` in a host log;
    the delta is taken modulo 2**32 (the µs timer wraps)."""
    out = []
    cmd, laps = None, []
    for line in Path(log).read_text(errors="replace").splitlines():
        m = _CMD.search(line)
        if m:
            cmd, laps = m.group(1), []
            continue
        m = _LAP.search(line)
        if m and cmd is not None:
            laps.append(int(m.group(1)))
            if len(laps) == 2:
                out.append((cmd, laps[0], (laps[1] - laps[0]) % (1 << 32)))
    return out


def _host_times(log: Path, start_pat: str, end_pat: str) -> list[float]:
    """Host-side delays (s) from a line matching start_pat to the next matching end_pat."""
    out, t0 = [], None
    for line in log.read_text(errors="replace").splitlines():
        if not line[:1].isdigit():
            continue
        ts = float(line.split()[0])
        if re.search(start_pat, line):
            t0 = ts
        elif t0 is not None and re.search(end_pat, line):
            out.append(ts - t0)
            t0 = None
    return out


def derive_reference(golden: str | Path, base: KernelProfile | None = None) -> tuple[list[Measurement], dict[str, Any], dict[str, Any]]:
    """Per-inference latencies and firmware constants from the reference results.

    Returns (measurements, firmware section, derivation notes)."""
    golden = Path(golden)
    base = base if base is not None else KernelProfile.load()
    fw = dict(base.firmware)
    ref = read_reference_csv(golden / "reference.csv")
    bits = int(fw.get("bits_per_char", 10))
    clock = base.clock_mhz
    notes: dict[str, Any] = {}

    # 1. printf overhead of the lap line: models with both a single-inference
    #    figure and a performance window; per sample the line length is known
    #    from the printed value: single = t + L*tc + c ; window = N t + L*tc + c
    per_model_c = {}
    for model, d in REF_MODEL_DIRS.items():
        acc, perf = golden / d / "accuracy" / "log.txt", golden / d / "performance" / "log.txt"
        if not (acc.exists() and perf.exists()):
            continue
        baud = int(fw.get("baud", {}).get(model, fw.get("default_baud", 115200)))
        tc = C.uart_char_us(baud, bits)
        singles = [delta - len(C.LAP_FORMAT.format(first)) * tc for _c, first, delta in lap_windows(acc)]
        wins = lap_windows(perf)
        if not singles or not wins:
            continue
        n = int(ref[model]["perf_iterations"])
        w = statistics.median(delta - len(C.LAP_FORMAT.format(first)) * tc for _c, first, delta in wins)
        s = statistics.median(singles)
        t = (w - s) / (n - 1)
        per_model_c[model] = s - t
    if per_model_c:
        fw["printf_overhead_us"] = round(statistics.median(per_model_c.values()), 1)
        notes["printf_overhead_us"] = {
            "per_model_us": {k: round(v, 1) for k, v in per_model_c.items()},
            "rule": "median over models of (single - (window - single)/(N-1)) minus the lap line's "
            "characters x 10 bit times; kws01's negative value: its accuracy session ran 6 days "
            "after the performance one (another build, ~0.4 % faster)",
        }

    prof_fw = base.copy(firmware=fw)

    # 2. per-inference latency: least squares on the relative error of both
    #    figures (performance window of N and single inference), the lap line
    #    modelled as above
    meas = []
    per_inf = {}
    for model, r in ref.items():
        if model not in REF_MODEL_DIRS:
            continue
        n = int(r["perf_iterations"])
        w = float(r["perf_window_us"])
        baud = int(fw.get("baud", {}).get(model, fw.get("default_baud", 115200)))
        t_lap = C.lap_print_us(prof_fw, baud)
        single = (r.get("single_infer_us") or "").strip()
        if single:
            s = float(single)
            t = (n * (w - t_lap) / w**2 + (s - t_lap) / s**2) / (n**2 / w**2 + 1 / s**2)
            how = f"argmin_t ((N t + T)/W - 1)^2 + ((t + T)/S - 1)^2, T = lap line {t_lap:.1f} us"
        else:
            t = (w - t_lap) / n
            how = f"(W - T)/N, T = lap line {t_lap:.1f} us at {baud} baud"
        per_inf[model] = {"us_per_inference": round(t, 2), "derivation": how}
        meas.append(Measurement(model, clock, round(t, 2), str(golden / "reference.csv")))
    notes["per_inference"] = per_inf

    # 3. th_load_tensor: host-side delay from the infer command to m-warmup-start
    #    (command characters, firmware, load_tensor, the 18-character warmup line,
    #    USB latency). ic01 and vww01 share the firmware family and the strings,
    #    so their difference is the conversion work: 3 byte loops of 27648 vs 3072
    d_ic = _mean_or_none(_host_times(golden / "ic" / "accuracy" / "log.txt", r'Command "dut infer', "m-warmup-start"))
    d_vww = _mean_or_none(_host_times(golden / "vww" / "accuracy" / "log.txt", r'Command "dut infer', "m-warmup-start"))
    d_ad = _mean_or_none(_host_times(golden / "ad" / "performance" / "log.txt", r'Command "dut infer', "m-warmup-start"))
    lt = dict(fw.get("load_tensor", {}))
    if d_ic is not None and d_vww is not None:
        cpb = (d_vww - d_ic) * 1e6 * clock / (3 * (27648 - 3072))
        lt["cycles_per_byte"] = round(cpb, 2)
        notes["load_tensor_cycles_per_byte"] = {
            "ic01_ms": round(1e3 * d_ic, 3), "vww01_ms": round(1e3 * d_vww, 3),
            "rule": "(vww - ic) / (3 x (27648 - 3072) bytes): copy out of the db buffer, "
            "convert, copy into the input tensor",
        }
        if d_ad is not None:
            tc115 = C.uart_char_us(115200, bits)
            tc921 = C.uart_char_us(921600, bits)
            # fixed part (host latency + parse) from ic: minus its 10 command chars,
            # its 18-char warmup line and its 3 byte loops
            fixed_s = d_ic - 1e-6 * (10 * tc115 + 18 * tc115 + 3 * 3072 * cpb / clock)
            rest_us = 1e6 * (d_ad - fixed_s) - (13 * tc921 + 18 * tc921) - (2560 + 640) * cpb / clock
            fq = rest_us * clock / 640
            lt["float_quantize_cycles"] = round(fq, 1)
            notes["command_overhead_us"] = {
                "upper_bound_us": round(1e6 * fixed_s, 1),
                "rule": "not separable in the host logs: the fixed part of the command -> "
                "m-warmup-start delay (ic01) holds USB/host latency too, so it only bounds the "
                "firmware's parse and dispatch; the profile value is counted from the parse path "
                "(ee_serial_command_parser_callback: strtok, strncmp chain, atoi; ~2000 cycles)",
            }
            notes["float_quantize_cycles"] = {
                "ad01_ms": round(1e3 * d_ad, 3), "fixed_host_and_parse_ms": round(1e3 * fixed_s, 3),
                "rule": "ad01 delay minus the ic01-derived fixed part, its 13 command and 18 line "
                "characters at 921600 baud and the byte copies, over 640 floats (5 samples, 1 ms "
                "host resolution: +-40 %)",
            }
    fw["load_tensor"] = lt

    # 4. boot: energy-mode power-on -> first DUT line, minus that line at 9600 baud
    boots = []
    for d in REF_MODEL_DIRS.values():
        log = golden / d / "energy" / "log.txt"
        if not log.exists():
            continue
        dts = _host_times(log, r"emon: m-power\[on\]", r"\[dut\]: m-timestamp-mode")
        if dts:
            boots.append(1e3 * dts[0] - len("m-timestamp-mode-energy\r\n") * C.uart_char_us(9600, bits) / 1e3)
    if boots:
        fw["boot_ms"] = round(statistics.median(boots), 1)
        notes["boot_ms"] = {"per_log_ms": [round(b, 1) for b in boots],
                            "rule": "median of power-on -> first banner line minus its 25 characters at "
                            "9600 baud; includes the IO manager's relay latency"}

    # 5. energy-mode timestamp pulse (100000 nop iterations): ad01's energy windows
    #    (10 inferences, 1 ms resolution) minus 10 x its inference
    ts = golden / "ad" / "energy" / "trace1-timestamps.json"
    if ts.exists() and "ad01" in per_inf:
        import json

        edges = json.loads(ts.read_text())
        n_e = int(ref["ad01"]["energy_iterations"])
        wins = [edges[i + 1] - edges[i] for i in range(1, len(edges) - 1, 2)]
        hold = 1e6 * statistics.mean(wins) - n_e * per_inf["ad01"]["us_per_inference"]
        fw["timestamp_hold_us"] = round(hold, 0)
        notes["timestamp_hold_us"] = {"ad01_energy_windows_s": wins,
                                      "rule": "mean energy window - 10 x t_inf(ad01); 100000 loop "
                                      "iterations -> cycles per iteration = hold x 120 / 1e5"}
    return meas, fw, notes


def _mean_or_none(xs: Iterable[float]) -> float | None:
    xs = list(xs)
    return statistics.mean(xs) if xs else None


def leave_one_out(measurements: Sequence[Measurement], base: KernelProfile | None = None,
                  models_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Fit on all but one measurement, predict the held-out one."""
    rows = []
    for i, held in enumerate(measurements):
        rest = [m for j, m in enumerate(measurements) if j != i]
        prof = fit(rest, base=base, models_dir=models_dir)
        g = _graph_for(held.model, models_dir)
        est = C.estimate(g, prof, held.clock_mhz)
        rows.append({
            "held_out": held.model, "measured_us": held.us_per_inference,
            "predicted_us": est.latency_us,
            "error_pct": 100 * (est.latency_us / held.us_per_inference - 1),
        })
    return rows


def _display(path: Path) -> str:
    """A path as recorded in provenance: relative to the folder holding the
    repository (``shared/golden/...``) when it lies there."""
    root = Path(__file__).resolve().parents[3]
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def regenerate_default(golden: str | Path | None = None, models_dir: str | Path | None = None,
                       out: str | Path | None = None, base: KernelProfile | None = None) -> KernelProfile:
    """Fit the shipped profile to the reference results and write it."""
    golden = Path(golden) if golden is not None else default_golden_dir()
    if golden is None:
        raise FileNotFoundError("reference results not found (set TINYTWIN_SHARED or pass --golden)")
    mdir = models_dir if models_dir is not None else (golden.parents[1] / "models")
    base = base if base is not None else KernelProfile.load()
    meas, fw, notes = derive_reference(golden, base)
    base = base.copy(firmware=fw)
    prof = fit(meas, base=base, models_dir=mdir)
    loo = leave_one_out(meas, base=base, models_dir=mdir)
    prof.provenance.update({
        "source": _display(golden / "reference.csv") + " and the logs beside it (mlcommons/tiny_results_v0.5, "
        "closed/reference, NUCLEO-L4R5ZI, TFLM v2.3.1 cmsis-nn, mbed-os, GCC)",
        "derivation": notes,
        "leave_one_out": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in loo],
    })
    prof.provenance["fitted_on"] = _display(golden / "reference.csv")
    prof.provenance["measurements"] = [dict(vars(m), source="reference.csv") for m in meas]
    target = Path(out) if out is not None else C.DEFAULT_PROFILE
    prof.save(target)
    return prof


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m emulator.cpu.calibrate", description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--from-reference", action="store_true", help="refit the shipped default profile")
    g.add_argument("--measurements", type=Path, help="CSV: model,clock_mhz,us_per_inference")
    ap.add_argument("--golden", type=Path, default=None, help="reference results folder")
    ap.add_argument("--models-dir", type=Path, default=None)
    ap.add_argument("--base", type=Path, default=None, help="profile to start from (default: shipped)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    base = KernelProfile.load(a.base) if a.base else KernelProfile.load()
    if a.from_reference:
        prof = regenerate_default(a.golden, a.models_dir, a.out, base)
        target = a.out or C.DEFAULT_PROFILE
    else:
        if a.out is None:
            ap.error("--out is required with --measurements")
        prof = fit(a.measurements, base=base, models_dir=a.models_dir)
        prof.save(a.out)
        target = a.out
    print(f"wrote {target}")
    for k, v in prof.params.items():
        print(f"  {k:22s} {v:10.4f}")
    for r in prof.provenance.get("residuals", []):
        print(f"  {r['model']:8s} measured {r['measured_us']:12.1f} us  predicted {r['predicted_us']:12.1f} us  ({r['error_pct']:+.3f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
