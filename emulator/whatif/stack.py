"""Kernel-stack profiles: the cycle model's parameters for one kernel library
on one board, as a probability distribution, fitted from as few as two or
three measured latencies.

The model
---------
For the cycle model's seven per-unit costs (``mac_cycles`` ... ``byte_cycles``,
see :data:`emulator.cpu.cycles.PARAM_DOC`) and the flash stall per wait state::

    param_k = center_k * exp(theta_0 + delta_k)       (compute costs)
    stall   = stall_center * exp(delta_stall)          (memory-bound, no CPI)

``center_k``: structural instructions per unit (the reference profile's
``provenance.prior.instr_per_unit``); ``theta_0``: log cycles per
instruction, shared (what a few measurements mostly fix); ``delta_k``: how
far a cost strays from that common efficiency. theta = (theta_0, deltas) has
a Gaussian prior (:class:`GaussianPrior`) that depends on the kernel library
and the core (``priors.json``): the reference library (TFLM 2.3.1 +
CMSIS-NN) starts from the shipped profile's posterior, any other library from
the structural counts with a free CPI. Latency is linear in the parameters, so
``log cycles(theta)`` is smooth and the fit is a MAP least squares
(``scipy.optimize.least_squares``): one residual row per measurement (log
latency error over :data:`priors.json` ``measurement_log_sigma``), the prior as
whitened residual rows.

Uncertainty (how every interval is derived)
-------------------------------------------
1. Parameter uncertainty: the posterior covariance at the MAP,
   ``Sigma = (J^T J)^-1`` with ``J`` the Jacobian of all residual rows (data
   and prior), so directions the data fix are tight and the rest keep their
   prior width.
2. Propagated to a prediction: ``var_param = g^T Sigma g``, ``g`` the gradient
   of that model's log latency with respect to theta (its cost shares).
3. Model error (what no parameter value can fix: the cycle model's structure):
   the leave-one-out residuals of the calibration set itself (each model
   predicted from the others), minus the parameter variance each of those
   predictions already carried, pooled with a prior of 15 % worth 2
   pseudo-observations: ``s2 = (nu0 s0^2 + sum max(r_i^2 - v_i, 0)) / (nu0 + n)``.
4. The interval: ``exp(mu +- t_(nu0+n) sqrt(var_param + s2))`` (Student t, 90 %
   by default), on the latency; energy adds the power term's own variance
   (:mod:`emulator.whatif.energy`).
"""
from __future__ import annotations

import copy
import csv
import datetime as _dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import stats
from scipy.optimize import least_squares

from ..cpu import cycles as C
from ..models.store import resolve_model
from ..errors import TinytwinError
from .boards import Board, priors, read_json

#: the cycle model's compute costs (CPI-scaled); the stall is handled apart
COSTS = ("mac_cycles", "fc_mac_cycles", "im2col_cycles", "call_cycles", "out_cycles", "op_cycles", "byte_cycles")
STALL = "flash_stall_per_line"
#: parameters whose cost is a MAC (the core's ``mac_factor`` applies)
MAC_COSTS = ("mac_cycles", "fc_mac_cycles")
REFERENCE_LIBRARY = "tflm-2.3.1-cmsis-nn"
#: the prior width of log CPI for a library without data (effectively flat)
FREE_CPI_LOG_SIGMA = 3.0


class StackError(TinytwinError, ValueError):
    """A stack profile or calibration input the user has to fix."""


# --------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One measured run: a model's latency at a clock, and optionally its
    energy per inference at a supply (as an energy run reports them)."""

    model: str
    clock_mhz: float
    us_per_inference: float
    supply_v: float | None = None
    uj_per_inference: float | None = None
    #: the energy run's own latency, when it differs from the performance run's
    energy_us_per_inference: float | None = None
    source: str = ""


RUN_COLUMNS = ("model", "clock_mhz", "us_per_inference")
RUN_OPTIONAL = ("supply_v", "uj_per_inference", "energy_us_per_inference")


def read_runs(path: str | Path) -> list[Run]:
    """A calibration CSV: ``model,clock_mhz,us_per_inference`` (as
    ``tinytwin calibrate --measurements`` reads), optionally with
    ``supply_v,uj_per_inference[,energy_us_per_inference]`` for energy."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise StackError(f"{path} not found") from None
    rows = csv.DictReader(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    if rows.fieldnames is None or set(RUN_COLUMNS) - set(rows.fieldnames):
        raise StackError(f"{path}: the header must hold {','.join(RUN_COLUMNS)} (optional: {','.join(RUN_OPTIONAL)})")
    out = []
    for i, r in enumerate(rows, start=2):
        def opt(k):
            v = (r.get(k) or "").strip()
            return float(v) if v else None
        try:
            run = Run(r["model"].strip(), float(r["clock_mhz"]), float(r["us_per_inference"]), opt("supply_v"),
                      opt("uj_per_inference"), opt("energy_us_per_inference"), f"{path}:{i}")
        except ValueError as exc:
            raise StackError(f"{path} line {i}: {exc}") from None
        if run.uj_per_inference is not None and run.supply_v is None:
            raise StackError(f"{path} line {i}: an energy needs its supply_v")
        if run.us_per_inference <= 0 or run.clock_mhz <= 0:
            raise StackError(f"{path} line {i}: latency and clock must be > 0")
        out.append(run)
    if not out:
        raise StackError(f"{path}: no runs")
    return out


# --------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------
_GRAPHS: dict[str, C.Graph] = {}


def graph(model: "str | Path | C.Graph", models_dir: str | Path | None = None) -> C.Graph:
    """A model's graph (cached by path)."""
    if isinstance(model, C.Graph):
        return model
    path = str(resolve_model(str(model), models_dir))
    g = _GRAPHS.get(path)
    if g is None:
        g = _GRAPHS[path] = C.load_graph(path)
    return g


def features(g: C.Graph, clock_mhz: float, board: Board) -> tuple[np.ndarray, float]:
    """Cycles per unit of each compute cost, and stall cycles per unit of the
    stall parameter, of one inference of ``g`` at ``clock_mhz`` on ``board``."""
    x = C.feature_vector(g, COSTS, clock_mhz)
    ws = board.wait_states(clock_mhz)
    stall = ws * sum(op.flash_bytes for op in g.ops) / C.FLASH_LINE_BYTES
    return x, stall


# --------------------------------------------------------------------------
# the distribution over parameters
# --------------------------------------------------------------------------
@dataclass
class GaussianPrior:
    """theta ~ N(mean, cov), theta = (log CPI, delta_k for COSTS, delta_stall)."""

    mean: np.ndarray
    cov: np.ndarray
    centers: np.ndarray  # cycles per unit at CPI 1 (COSTS)
    stall_center: float
    source: str

    @property
    def dim(self) -> int:
        return len(self.mean)


def _structural_centers() -> tuple[np.ndarray, np.ndarray, dict]:
    ref = C.KernelProfile.load()
    pr = ref.provenance.get("prior") or {}
    instr = pr.get("instr_per_unit") or {}
    sig = pr.get("log_sigma") or {}
    return (np.array([float(instr[k]) for k in COSTS]), np.array([float(sig[k]) for k in COSTS]), ref.provenance)


def core_factors(core: str) -> tuple[np.ndarray, float]:
    """Per-cost cycle factor of ``core`` relative to the Cortex-M4F, and the
    log sigma of moving a stack to it."""
    cores = priors()["cores"]
    if core not in cores:
        raise StackError(f"no prior for core {core!r} (known: {', '.join(cores)})")
    c = cores[core]
    f = np.array([float(c["mac_factor"]) if k in MAC_COSTS else float(c["cycle_factor"]) for k in COSTS])
    return f, float(c["log_sigma"])


def library_prior(library: str, board: Board) -> GaussianPrior:
    """The prior of a kernel library on a board (``priors.json``)."""
    libs = priors()["libraries"]
    kind = (libs.get(library) or libs["*"])["prior"]
    instr, sig, prov = _structural_centers()
    fac, core_sig = core_factors(board.core)
    n = len(COSTS) + 2
    if kind == "reference":
        ref = StackProfile.reference()
        mean = ref.theta.copy()
        cov = ref.cov.copy()
        centers = ref.centers * fac
        # the relative costs keep the reference posterior; the overall speed
        # (compiler, firmware, board, core) is for the data to say
        cov[0, 0] += FREE_CPI_LOG_SIGMA ** 2 + core_sig ** 2
        mean[-1] = 0.0
        cov[-1, :] = cov[:, -1] = 0.0
        cov[-1, -1] = board.stall_log_sigma ** 2
        return GaussianPrior(mean, cov, centers, board.stall_center,
                             f"{library}: the reference profile's posterior, moved to {board.core} ({board.name})")
    mean = np.zeros(n)
    mean[0] = math.log(float(prov.get("fitted_cpi", 2.6)))
    cov = np.diag(np.concatenate([[FREE_CPI_LOG_SIGMA ** 2], sig ** 2, [board.stall_log_sigma ** 2]]))
    return GaussianPrior(mean, cov, instr * fac, board.stall_center,
                         f"{library}: structural instruction counts x a free CPI, on {board.core} ({board.name})")


def structural_prior(board: Board) -> GaussianPrior:
    return library_prior("*structural*", board)


# --------------------------------------------------------------------------
# the profile
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Prediction:
    model: str
    clock_mhz: float
    latency_us: float
    lo_us: float
    hi_us: float
    sd_log: float
    level: float
    cycles: float

    def to_dict(self) -> dict:
        return {"model": self.model, "clock_mhz": self.clock_mhz, "latency_us": self.latency_us,
                "latency_lo_us": self.lo_us, "latency_hi_us": self.hi_us, "sd_log": self.sd_log,
                "level": self.level, "cycles": self.cycles}


@dataclass
class StackProfile:
    """A kernel library on a board: the posterior over the cycle model's
    parameters, the model-error term, and what it was fitted on."""

    name: str
    library: str
    board: Board
    theta: np.ndarray
    cov: np.ndarray
    centers: np.ndarray
    stall_center: float
    sigma_model: float
    dof: float
    provenance: dict = field(default_factory=dict)
    #: fitted power (see emulator.whatif.energy.PowerFit), or None
    power: dict | None = None

    # -- parameters ------------------------------------------------------------
    def params(self, theta: np.ndarray | None = None) -> dict[str, float]:
        th = self.theta if theta is None else theta
        vals = self.centers * np.exp(th[0] + th[1 : 1 + len(COSTS)])
        out = {k: float(v) for k, v in zip(COSTS, vals)}
        out[STALL] = float(self.stall_center * math.exp(th[-1]))
        return out

    def _log_cycles_and_grad(self, g: C.Graph, clock_mhz: float) -> tuple[float, np.ndarray]:
        x, s = features(g, clock_mhz, self.board)
        p = self.centers * np.exp(self.theta[0] + self.theta[1 : 1 + len(COSTS)])
        stall = self.stall_center * math.exp(self.theta[-1])
        contrib = x * p
        total = float(contrib.sum() + s * stall)
        grad = np.concatenate([[contrib.sum() / total], contrib / total, [s * stall / total]])
        return math.log(total), grad

    def predict(self, model: "str | Path | C.Graph", clock_mhz: float | None = None, level: float | None = None,
                models_dir: str | Path | None = None) -> Prediction:
        """Latency of one inference, with its interval (see the module docstring)."""
        f = float(clock_mhz if clock_mhz is not None else self.board.clock_mhz)
        self.board.check_clock(f)
        lvl = float(level if level is not None else priors()["interval"])
        g = graph(model, models_dir)
        mu, grad = self._log_cycles_and_grad(g, f)
        var = float(grad @ self.cov @ grad) + self.sigma_model ** 2
        sd = math.sqrt(max(var, 0.0))
        t = float(stats.t.ppf(0.5 + lvl / 2, self.dof))
        cyc = math.exp(mu)
        return Prediction(g.name, f, cyc / f, math.exp(mu - t * sd) / f, math.exp(mu + t * sd) / f, sd, lvl, cyc)

    def t_quantile(self, level: float | None = None) -> float:
        lvl = float(level if level is not None else priors()["interval"])
        return float(stats.t.ppf(0.5 + lvl / 2, self.dof))

    # -- the cycle model's own profile (what the twin and `estimate` run) ------
    def kernel_profile(self) -> C.KernelProfile:
        base = C.KernelProfile.load()
        mem = dict(base.memory)
        mem.update(self.board.memory_section())
        if self.board.flash_mhz_per_ws is None:
            mem["flash_mhz_per_ws"] = 1e9  # no flash model: no wait states
        return base.copy(name=self.name, clock_mhz=self.board.clock_mhz, params=self.params(), memory=mem,
                         provenance=copy.deepcopy(self.provenance))

    # -- persistence -------------------------------------------------------------
    def to_dict(self) -> dict:
        d = self.kernel_profile().to_dict()
        d["whatif"] = {
            "library": self.library,
            "board": self.board.to_dict(),
            "theta_names": ["log_cpi", *[f"delta_{k}" for k in COSTS], f"delta_{STALL}"],
            "theta": [float(v) for v in self.theta],
            "covariance": [[float(v) for v in row] for row in self.cov],
            "centers": {k: float(v) for k, v in zip(COSTS, self.centers)},
            "stall_center": self.stall_center,
            "model_error": {"sigma_log": self.sigma_model, "dof": self.dof},
            "power": self.power,
        }
        return d

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return p

    @classmethod
    def from_dict(cls, d: dict, where: str = "profile") -> "StackProfile":
        w = d.get("whatif")
        if not w:
            raise StackError(f"{where} is a timing profile without a what-if section (write one with "
                             "`tinytwin calibrate --board ...`)")
        try:
            return cls(
                name=str(d["name"]), library=str(w["library"]), board=Board.from_dict(w["board"], where),
                theta=np.array(w["theta"], float), cov=np.array(w["covariance"], float),
                centers=np.array([float(w["centers"][k]) for k in COSTS]), stall_center=float(w["stall_center"]),
                sigma_model=float(w["model_error"]["sigma_log"]), dof=float(w["model_error"]["dof"]),
                provenance=dict(d.get("provenance", {})), power=w.get("power"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StackError(f"{where}: malformed what-if section ({exc})") from None

    @classmethod
    def load(cls, path: str | Path) -> "StackProfile":
        return cls.from_dict(read_json(Path(path), StackError, "stack profile"), str(path))

    @classmethod
    def reference(cls) -> "StackProfile":
        """The shipped reference profile (TFLM 2.3.1 + CMSIS-NN on the
        NUCLEO-L4R5ZI) as a distribution: its MAP from the provenance, the
        posterior covariance of that fit, the model error from its
        leave-one-out."""
        global _REFERENCE
        if _REFERENCE is None:
            _REFERENCE = _build_reference()
        return copy.deepcopy(_REFERENCE)

    def on_board(self, board: Board, name: str | None = None) -> "StackProfile":
        """This stack moved to another board (its core factor and flash), the
        move's uncertainty added to the CPI."""
        if board.core == self.board.core and board.name == self.board.name:
            return copy.deepcopy(self)
        old, old_sig = core_factors(self.board.core)
        new, sig = core_factors(board.core)
        out = copy.deepcopy(self)
        out.board = board
        out.centers = self.centers / old * new
        out.cov[0, 0] += sig ** 2 + old_sig ** 2
        out.theta[-1] = 0.0
        out.cov[-1, :] = out.cov[:, -1] = 0.0
        out.cov[-1, -1] = board.stall_log_sigma ** 2
        out.stall_center = board.stall_center
        out.name = name or f"{self.library} on {board.name}"
        out.power = None
        out.provenance = dict(self.provenance, moved_to=board.name)
        return out


_REFERENCE: StackProfile | None = None


# --------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------
def _map(prior: GaussianPrior, X: np.ndarray, S: np.ndarray, y: np.ndarray, meas_sigma: float
         ) -> tuple[np.ndarray, np.ndarray]:
    """MAP theta and its posterior covariance for data rows (X, S, y = log cycles)."""
    L = np.linalg.cholesky(np.linalg.inv(prior.cov + 1e-12 * np.eye(prior.dim)))  # inv(cov) = L L^T
    W = L.T  # whitening: ||W (theta - mean)||^2 = (theta-mean)^T inv(cov) (theta-mean)
    nk = len(COSTS)

    def parts(th):
        p = prior.centers * np.exp(th[0] + th[1 : 1 + nk])
        st = prior.stall_center * math.exp(th[-1])
        contrib = X * p
        tot = contrib.sum(axis=1) + S * st
        return contrib, S * st, tot

    def residuals(th):
        _c, _s, tot = parts(th)
        return np.concatenate([(np.log(tot) - y) / meas_sigma, W @ (th - prior.mean)])

    def jac(th):
        contrib, sc, tot = parts(th)
        jd = np.hstack([(contrib.sum(axis=1) / tot)[:, None], contrib / tot[:, None], (sc / tot)[:, None]])
        return np.vstack([jd / meas_sigma, W])

    th0 = prior.mean.copy()
    if len(y):
        _c, _s, tot = parts(th0)
        th0[0] += float(np.mean(y - np.log(tot)))
    res = least_squares(residuals, th0, jac=jac, method="lm", xtol=1e-12, ftol=1e-12, gtol=1e-12)
    return res.x, _posterior_cov(prior, X, S, res.x, meas_sigma)


def _posterior_cov(prior: GaussianPrior, X: np.ndarray, S: np.ndarray, theta: np.ndarray, meas_sigma: float
                   ) -> np.ndarray:
    """(J^T J)^-1 of the whitened data and prior rows at ``theta``."""
    nk = len(COSTS)
    p = prior.centers * np.exp(theta[0] + theta[1 : 1 + nk])
    sc = S * prior.stall_center * math.exp(theta[-1])
    contrib = X * p
    tot = contrib.sum(axis=1) + sc
    jd = np.hstack([(contrib.sum(axis=1) / tot)[:, None], contrib / tot[:, None], (sc / tot)[:, None]]) / meas_sigma
    precision = jd.T @ jd + np.linalg.inv(prior.cov + 1e-12 * np.eye(prior.dim))
    return np.linalg.inv(precision)


def fit(runs: Sequence[Run], board: Board, library: str = "custom", prior: GaussianPrior | None = None,
        name: str | None = None, models_dir: str | Path | None = None, loo: bool = True,
        at: np.ndarray | None = None, noise_only: bool = False) -> StackProfile:
    """Calibrate a stack on ``board`` from measured latencies (any number,
    two or three suffice), with the library's prior (or ``prior``).
    ``noise_only``: a likelihood of measurement noise alone, without the
    model's structural error (the alternative the validation compares)."""
    runs = list(runs)
    if not runs:
        raise StackError("no runs to fit")
    for r in runs:
        board.check_clock(r.clock_mhz)
    pr = prior if prior is not None else library_prior(library, board)
    cfg = priors()
    me = cfg["model_error"]
    s0, nu0 = float(me["sigma0_log"]), float(me["nu0"])
    # a measured log latency = the model's + measurement noise + the model's
    # own structural error for that graph: both in the likelihood
    meas_sigma = float(cfg["measurement_log_sigma"]) if noise_only else math.hypot(float(cfg["measurement_log_sigma"]), s0)
    rows = [features(graph(r.model, models_dir), r.clock_mhz, board) for r in runs]
    X = np.array([x for x, _ in rows])
    S = np.array([s for _, s in rows])
    y = np.log(np.array([r.us_per_inference * r.clock_mhz for r in runs]))
    theta, cov = _map(pr, X, S, y, meas_sigma)
    if at is not None:  # the profile's parameters are given (the shipped one): its posterior there
        theta = at
        cov = _posterior_cov(pr, X, S, theta, meas_sigma)
    loo_rows = []
    if loo and len(runs) >= 2:
        for i, held in enumerate(runs):
            keep = [j for j in range(len(runs)) if j != i]
            th_i, cov_i = _map(pr, X[keep], S[keep], y[keep], meas_sigma)
            tmp = StackProfile("loo", library, board, th_i, cov_i, pr.centers, pr.stall_center, 0.0, 1.0)
            mu, grad = tmp._log_cycles_and_grad(graph(held.model, models_dir), held.clock_mhz)
            r = mu - y[i]
            v = float(grad @ cov_i @ grad)
            loo_rows.append({"held_out": held.model, "clock_mhz": held.clock_mhz, "measured_us": held.us_per_inference,
                             "predicted_us": math.exp(mu) / held.clock_mhz, "error_pct": 100 * math.expm1(r),
                             "log_residual": r, "param_var": v})
    excess = [max(rr["log_residual"] ** 2 - rr["param_var"], 0.0) for rr in loo_rows]
    s2 = (nu0 * s0 ** 2 + sum(excess)) / (nu0 + len(excess))
    prof = StackProfile(name or f"{library} on {board.name}", library, board, theta, cov, pr.centers,
                        pr.stall_center, math.sqrt(s2), nu0 + len(excess))
    fitted = []
    for r, (x, s) in zip(runs, rows):
        pred = prof.predict(graph(r.model, models_dir), r.clock_mhz)
        fitted.append({"model": r.model, "clock_mhz": r.clock_mhz, "measured_us": r.us_per_inference,
                       "fitted_us": pred.latency_us, "error_pct": 100 * (pred.latency_us / r.us_per_inference - 1)})
    prof.provenance = {
        "kind": "stack profile (tinytwin calibrate --board): posterior of the cycle model's parameters",
        "library": library,
        "board": board.name,
        "prior": pr.source,
        "fit_method": "MAP least squares on log latency (scipy.optimize.least_squares, 'lm'), the Gaussian prior "
                      "as whitened residual rows; posterior covariance (J^T J)^-1 at the MAP",
        "fit_date": _dt.date.today().isoformat(),
        "measurements": [vars(r) for r in runs],
        "in_sample": fitted,
        "leave_one_out": loo_rows,
        "model_error": {"sigma_log": prof.sigma_model, "dof": prof.dof, "prior_sigma_log": s0, "prior_nu": nu0,
                        "rule": "(nu0 s0^2 + sum max(r^2 - param_var, 0)) / (nu0 + n) over the calibration set's "
                                "leave-one-out residuals r"},
    }
    return prof


def _build_reference() -> StackProfile:
    """The shipped profile as a distribution (see :meth:`StackProfile.reference`)."""
    from .boards import Board

    ref = C.KernelProfile.load()
    board = Board.load("NUCLEO-L4R5ZI")
    meas = ref.provenance.get("measurements") or []
    runs = [Run(m["model"], float(m["clock_mhz"]), float(m["us_per_inference"]), source=str(m.get("source", "")))
            for m in meas]
    prior = structural_prior(board)
    instr, _sig, prov = _structural_centers()
    cpi = float(prov.get("fitted_cpi", 2.6))
    at = np.concatenate([[math.log(cpi)], np.log(np.array([ref.params[k] for k in COSTS]) / (instr * cpi)),
                         [math.log(ref.params.get(STALL, 1.0) / board.stall_center)]])
    prof = fit(runs, board, REFERENCE_LIBRARY, prior=prior, name=REFERENCE_LIBRARY, at=at)
    prof.provenance["kind"] = ("the shipped profile (emulator/cpu/profiles/l4r5zi_tflm231_cmsisnn.json) as a "
                               "distribution: its parameters, their posterior covariance on its own four reference "
                               "latencies with the structural prior, the model error from its leave-one-out")
    return prof


def clear_cache() -> None:
    global _REFERENCE
    _REFERENCE = None
    _GRAPHS.clear()


def profile_from(spec: "str | Path | StackProfile | None", board: "str | Path | Board | None" = None) -> StackProfile:
    """What the front ends accept: a stack profile JSON, or None (the
    reference stack), moved to ``board`` when one is given."""
    if isinstance(spec, StackProfile):
        prof = spec
    elif spec is None:
        prof = StackProfile.reference()
    else:
        prof = StackProfile.load(spec)
    if board is not None:
        b = Board.load(board)
        if b.name != prof.board.name:
            prof = prof.on_board(b)
    return prof


def names_of(runs: Iterable[Run]) -> list[str]:
    return [r.model for r in runs]


def interval_for(model, profile: "str | Path | None", board: "str | None", clock_mhz: float | None
                 ) -> tuple["C.KernelProfile | None", "Prediction | None"]:
    """For ``tinytwin estimate``: when ``profile`` is a stack profile or a
    board is given, the cycle model's profile to run and the latency interval;
    (None, None) for a plain timing profile."""
    if board is None:
        if profile is None:
            return None, None
        try:
            d = json.loads(Path(profile).read_text())
        except (OSError, ValueError):
            return None, None  # not a stack profile: the timing-profile loader says what is wrong
        if "whatif" not in d:
            return None, None
    prof = profile_from(profile, board)
    return prof.kernel_profile(), prof.predict(model, clock_mhz)
