"""``estimate`` and ``calibrate`` commands (typer).

The lead's ``emulator/cli.py`` calls :func:`register` on its app::

    tinytwin estimate --model kws01 [--models-dir DIR] [--clock-mhz 80] [--profile P.json] [--json]
    tinytwin calibrate --measurements M.csv --out P.json [--models-dir DIR]
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ConfigError, TinytwinError
from ..models.modelfile import parse_model
from ..models.store import MODELS_DIR_HELP, resolve_model
from . import calibrate as _cal
from . import cycles as C


def _load_profile(profile: Optional[Path]) -> C.KernelProfile:
    try:
        return C.KernelProfile.load(profile) if profile is not None else C.KernelProfile.load()
    except FileNotFoundError:
        raise ConfigError(f"timing profile {profile} not found; give the JSON written by `tinytwin calibrate`") from None
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"timing profile {profile} is not a tinytwin kernel profile ({exc})") from None


def _fail(exc: TinytwinError) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def render_table(est: C.Estimate) -> str:
    lines = [
        f"model {est.model}   profile {est.profile}   clock {est.clock_mhz:g} MHz   "
        f"flash {est.flash_wait_states} WS",
        f"{'#':>3}  {'op':<18} {'kernel':<28} {'MACs':>10} {'cycles':>12} {'us':>11} {'%':>6}",
    ]
    for l in est.layers:
        share = 100 * l.cycles / est.cycles if est.cycles else 0.0
        lines.append(
            f"{l.index:>3}  {l.op_type:<18} {l.path[:28]:<28} {l.macs:>10,d} {l.cycles:>12,.0f} {l.us:>11,.1f} {share:>6.2f}"
        )
    m = est.memory
    lines += [
        f"total: {est.macs:,d} MACs, {est.cycles:,.0f} cycles, {est.latency_us:,.1f} us "
        f"({est.latency_us / 1e3:,.3f} ms) per inference",
        f"SRAM: arena {_kib(m.arena_bytes)} ({m.arena_source}) + stack {_kib(m.stack_bytes)} = "
        f"{_kib(m.sram_used)} of {_kib(m.sram_bytes)}",
        f"flash: model {_kib(m.model_bytes)} of {_kib(m.flash_bytes)}",
        f"memory: {m.verdict}",
    ]
    return "\n".join(lines)


def estimate_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="kws01/vww01/ic01/ad01 or a path to your own .tflite")],
    clock_mhz: Annotated[float, typer.Option("--clock-mhz", help="core clock (MHz)")] = 120.0,
    profile: Annotated[Optional[Path], typer.Option("--profile", help="kernel or stack profile JSON (default: shipped)")] = None,
    models_dir: Annotated[Optional[Path], typer.Option("--models-dir", help=MODELS_DIR_HELP)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    board: Annotated[Optional[str], typer.Option("--board", help="a board (name or JSON): the stack moved there, with an interval")] = None,
) -> None:
    """Per-layer cycle estimate of one inference, total latency and memory fit."""
    if not clock_mhz > 0:
        raise typer.BadParameter(f"must be > 0 MHz, got {clock_mhz:g}", param_hint="--clock-mhz")
    from ..whatif.stack import interval_for

    try:
        path = resolve_model(model, models_dir)
        parse_model(path.read_bytes(), str(path))  # a file that is no .tflite: one message
        kp, pred = interval_for(path, profile, board, clock_mhz)
        est = C.estimate(path, kp if kp is not None else _load_profile(profile), clock_mhz)
    except TinytwinError as e:
        _fail(e)
    if json_out:
        d = est.to_dict()
        if pred is not None:
            d["interval"] = pred.to_dict()
        typer.echo(json.dumps(d))
    else:
        typer.echo(render_table(est))
        if pred is not None:
            typer.echo(f"{int(round(100 * pred.level))} % interval: {pred.lo_us / 1e3:,.3f} .. {pred.hi_us / 1e3:,.3f} ms "
                       "(the stack profile's posterior and model error; tinytwin whatif for energy)")


ENERGY_COLUMNS = ("model", "clock_mhz", "voltage_v", "n_inferences", "energy_uj", "window_s")


def fit_energy_csv(path: Path):
    """Fit the power model to energy windows measured between two timestamp
    edges, one per CSV row (columns :data:`ENERGY_COLUMNS`, as an energy run's
    results give them: the window's energy, its duration, its inferences).
    A file that cannot be used raises :class:`ConfigError` saying where."""
    import csv

    from ..power.model import fit_power, window_observation

    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise ConfigError(f"cannot read the energy windows {path}: {exc.strerror or exc}") from None
    if not rows or set(ENERGY_COLUMNS) - set(rows[0]):
        raise ConfigError(f"{path}: expected a header with the columns {','.join(ENERGY_COLUMNS)}")
    obs = []
    for i, r in enumerate(rows, start=2):
        try:
            obs.append(window_observation(
                r["model"].strip(), int(r["n_inferences"]), float(r["energy_uj"]), float(r["window_s"]),
                voltage_v=float(r["voltage_v"]), clock_mhz=float(r["clock_mhz"]),
            ))
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            raise ConfigError(f"{path} line {i}: {exc}") from None
    return fit_power(obs)


def calibrate_cmd(
    out: Annotated[Optional[Path], typer.Option("--out", help="timing (kernel) profile JSON to write")] = None,
    measurements: Annotated[Optional[Path], typer.Option("--measurements", help="CSV: model,clock_mhz,us_per_inference")] = None,
    models_dir: Annotated[Optional[Path], typer.Option("--models-dir", help=MODELS_DIR_HELP)] = None,
    energy: Annotated[Optional[Path], typer.Option("--energy", help="CSV: " + ",".join(ENERGY_COLUMNS) + " (energy windows)")] = None,
    power_out: Annotated[Optional[Path], typer.Option("--power-out", help="power profile JSON to write (with --energy, or with --board when the runs have energies)")] = None,
    board: Annotated[Optional[str], typer.Option("--board", help="fit a stack profile on this board (name or JSON) from --measurements with optional supply_v,uj_per_inference columns")] = None,
    stack: Annotated[str, typer.Option("--stack", help="kernel library of the runs (with --board), e.g. x-cube-ai, tflm-cmsis-nn")] = "custom",
    sww01_log: Annotated[Optional[Path], typer.Option("--sww01-log", help="a serial log of the sww01 board's `run_model class0%` and `extract 0%` answers: writes a sww01 timing profile to --out")] = None,
) -> None:
    """Fit the twin to your measurements: latencies (--measurements, --out), energy windows (--energy, --power-out), or the sww01 firmware's own timing prints (--sww01-log, --out)."""
    if sww01_log is not None:
        _calibrate_sww01(sww01_log, out)
        return
    if board is not None:
        from ..whatif.cli import calibrate_stack

        if measurements is None or out is None or energy is not None:
            typer.echo("error: --board goes with --measurements and --out (energies as columns of that CSV)", err=True)
            raise typer.Exit(2)
        try:
            for line in calibrate_stack(measurements, board, stack, out, power_out, models_dir):
                typer.echo(line)
        except TinytwinError as e:
            _fail(e)
        return
    if measurements is None and energy is None:
        typer.echo("error: give --measurements (latencies) and/or --energy (energy windows)", err=True)
        raise typer.Exit(2)
    if (measurements is None) != (out is None) or (energy is None) != (power_out is None):
        typer.echo("error: --measurements goes with --out, --energy with --power-out", err=True)
        raise typer.Exit(2)
    if energy is not None:
        try:
            fit = fit_energy_csv(energy)
        except TinytwinError as e:
            _fail(e)
        fit.model.save(power_out)
        typer.echo(f"wrote {power_out} (power model; fit rms {fit.rms_pct:.2f} %, worst {fit.max_abs_pct:.2f} %)")
        for r in fit.residuals:
            typer.echo(f"  {r.get('label', '')}: {r['error_pct']:+.3f} %")
    if measurements is None:
        return
    try:
        prof = _cal.fit(measurements, base=C.KernelProfile.load(), models_dir=models_dir)
    except TinytwinError as e:
        _fail(e)
    prof.save(out)
    typer.echo(f"wrote {out}")
    for k, v in prof.params.items():
        typer.echo(f"  {k:22s} {v:12.4f}")
    for r in prof.provenance.get("residuals", []):
        typer.echo(
            f"  {r['model']:10s} {r['clock_mhz']:g} MHz  measured {r['measured_us']:,.1f} us  "
            f"fitted {r['predicted_us']:,.1f} us  ({r['error_pct']:+.3f} %)"
        )


def _calibrate_sww01(log: Path, out: Optional[Path]) -> None:
    from ..dut.sww01.timing import ProfileError, calibrate_from_log

    if out is None:
        typer.echo("error: --sww01-log goes with --out (the sww01 timing profile to write)", err=True)
        raise typer.Exit(2)
    try:
        prof = calibrate_from_log(log.read_text(errors="replace"), source=str(log))
    except OSError as e:
        typer.echo(f"error: cannot read {log}: {e.strerror or e}", err=True)
        raise typer.Exit(2)
    except ProfileError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    prof.save(out)
    typer.echo(f"wrote {out} (sww01 timing profile {prof.name}: th_compute_lfbe_f32 {prof.extract_us:g} us, "
               f"th_ai_run {prof.invoke_us:g} us, frame {prof.frame_us / 1000:.3f} ms of 32 ms); use it with "
               "`tinytwin rig --model sww01 --profile` ")


def register(app: typer.Typer) -> None:
    """Add ``estimate`` and ``calibrate`` to a typer app."""
    app.command("estimate")(estimate_cmd)
    app.command("calibrate")(calibrate_cmd)
