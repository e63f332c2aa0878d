"""``tinytwin whatif`` and ``tinytwin sweep`` (typer), and the stack
calibration behind ``tinytwin calibrate --board``.

    tinytwin whatif --model kws01 [--board NUCLEO-U575ZI-Q] [--profile stack.json] [--clock-mhz 80]
                    [--supply-v 3.0] [--period-s 1 --sleep-mode stop2 --battery-mah 220] [--json]
    tinytwin sweep plan.yaml [--cluster tcp://HOST:PORT] [--workers N] [--csv F] [--json F] [--plot F]
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import TinytwinError
from . import sweep as SW


def _fail(message: str) -> None:
    typer.echo(f"tinytwin: {message}", err=True)
    raise typer.Exit(2)


# --------------------------------------------------------------------------
# whatif
# --------------------------------------------------------------------------
def whatif_cmd(
    model: Annotated[str, typer.Option("--model", help="kws01/vww01/ic01/ad01 or your own int8 .tflite")],
    profile: Annotated[Optional[Path], typer.Option("--profile", help="stack profile JSON (tinytwin calibrate --board); default: the reference stack (TFLM 2.3.1 + CMSIS-NN)")] = None,
    board: Annotated[Optional[str], typer.Option("--board", help="a shipped board name or a board JSON: move the stack there")] = None,
    clock_mhz: Annotated[Optional[float], typer.Option("--clock-mhz", help="core clock (default: the board's)")] = None,
    supply_v: Annotated[Optional[float], typer.Option("--supply-v", help="supply voltage (default: the board's)")] = None,
    period_s: Annotated[Optional[float], typer.Option("--period-s", help="application: one inference every PERIOD seconds")] = None,
    sleep_mode: Annotated[str, typer.Option("--sleep-mode", help="low-power mode between inferences (the board's datasheet modes, e.g. stop2, standby)")] = "stop2",
    battery_mah: Annotated[Optional[float], typer.Option("--battery-mah", help="battery capacity for the battery life")] = None,
    level: Annotated[Optional[float], typer.Option("--level", help="interval level (default 0.9)")] = None,
    models_dir: Annotated[Optional[Path], typer.Option("--models-dir", help="where <model>.tflite live")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Latency, energy per inference, average power, battery life and memory fit, with intervals."""
    from .answer import answer, render
    from .energy import DutyCycle
    from .stack import profile_from

    try:
        prof = profile_from(profile, board)
        app = DutyCycle(period_s, sleep_mode, battery_mah) if period_s is not None else None
        a = answer(model, prof, clock_mhz, supply_v, app, level, models_dir)
    except TinytwinError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(a) if json_out else render(a))


# --------------------------------------------------------------------------
# sweep
# --------------------------------------------------------------------------
def accuracy_task(task: dict) -> dict:
    """One model's accuracy through the twin (run on a worker)."""
    from ..benches.accuracy import run_accuracy

    try:
        models_dir = task.get("models_dir")
        if models_dir is None:  # where the cycle model found it, so both halves of a row use one file
            from ..models.store import resolve_model

            models_dir = str(resolve_model(Path(task["model"]).stem if not str(task["model"]).endswith(".tflite")
                                           else task["model"]).parent)
        return run_accuracy(task["model"], task["dataset_dir"], task.get("limit"), models_dir)
    except (TinytwinError, FileNotFoundError, ValueError) as exc:
        return {"model": Path(task["model"]).stem, "error": str(exc)}


#: how long ``--cluster`` waits for its scheduler to answer (Dask retries a
#: refused connection until then: a scheduler that is still starting is found)
CLUSTER_TIMEOUT_S = 20.0


def run_plan(plan: SW.Plan, cluster: str | None = None, workers: int | None = None,
             cluster_timeout: float = CLUSTER_TIMEOUT_S) -> list[dict]:
    """Every point of ``plan`` (and its accuracy runs) on local processes, or
    on the Dask cluster at ``cluster`` (waited for ``cluster_timeout`` s);
    rows in table order."""
    points = plan.points()
    acc_tasks = []
    if plan.accuracy:
        base = Path(plan.accuracy["datasets_dir"])
        for m in plan.models:
            name = Path(m).stem
            acc_tasks.append({"model": m, "dataset_dir": str(base / name), "limit": plan.accuracy.get("limit"),
                              "models_dir": plan.models_dir})
    if cluster:
        try:
            from dask.distributed import Client
        except ImportError:
            raise TinytwinError("--cluster needs Dask: pip install 'tinytwin[dask]'") from None
        try:
            client = Client(cluster, timeout=f"{cluster_timeout:g}s")
        except (OSError, TimeoutError) as exc:
            raise TinytwinError(f"cannot reach the Dask scheduler at {cluster} within {cluster_timeout:g} s ({exc}); "
                                "start one, give it longer (--cluster-timeout S) or drop --cluster") from None
        with client:
            rows = client.gather(client.map(SW.compute_point, points, pure=False))
            accs = client.gather(client.map(accuracy_task, acc_tasks, pure=False)) if acc_tasks else []
    else:
        n = workers or os.cpu_count() or 1
        if n <= 1 or len(points) + len(acc_tasks) <= 1:
            rows = [SW.compute_point(p) for p in points]
            accs = [accuracy_task(t) for t in acc_tasks]
        else:
            with ProcessPoolExecutor(max_workers=n) as ex:
                acc_f = [ex.submit(accuracy_task, t) for t in acc_tasks]
                rows = list(ex.map(SW.compute_point, points))
                accs = [f.result() for f in acc_f]
    rows = sorted(rows, key=lambda r: r["index"])
    return SW.merge_accuracy(rows, {a["model"]: a for a in accs})


def sweep_cmd(
    plan_file: Annotated[Path, typer.Argument(help="the plan (YAML; see emulator/whatif/sweep.py)")],
    cluster: Annotated[Optional[str], typer.Option("--cluster", help="Dask scheduler address (tcp://HOST:PORT); default: local processes")] = None,
    cluster_timeout: Annotated[float, typer.Option("--cluster-timeout", min=0.1, help="seconds to wait for the --cluster scheduler")] = CLUSTER_TIMEOUT_S,
    workers: Annotated[Optional[int], typer.Option("--workers", help="local worker processes (default: one per core)")] = None,
    csv_out: Annotated[Optional[Path], typer.Option("--csv", help="write the table as CSV")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the table as JSON")] = None,
    plot_out: Annotated[Optional[Path], typer.Option("--plot", help="write a plot (PNG/SVG/PDF) of latency and energy vs clock")] = None,
) -> None:
    """Run a grid of what-ifs (models x clocks x supplies x profiles, optional accuracy runs): one table, plots."""
    try:
        plan = SW.load_plan(plan_file)
        rows = run_plan(plan, cluster, workers, cluster_timeout)
    except TinytwinError as exc:
        _fail(str(exc))
    outs = {"csv": csv_out or plan.output.get("csv"), "json": json_out or plan.output.get("json"),
            "plot": plot_out or plan.output.get("plot")}
    if outs["csv"]:
        Path(outs["csv"]).write_text(SW.to_csv(rows))
    if outs["json"]:
        Path(outs["json"]).write_text(SW.to_json(rows))
    if outs["plot"]:
        try:
            SW.plot(rows, outs["plot"], title=plan_file.stem, level=plan.level)
        except TinytwinError as exc:
            _fail(str(exc))
    typer.echo(_table(rows))
    for k, v in outs.items():
        if v:
            typer.echo(f"wrote {v} ({k})")


def _fmt(v, spec: str) -> str:
    return "" if v in ("", None) else format(v, spec)


def _table(rows: list[dict]) -> str:
    head = f"{'profile':<14} {'model':<7} {'MHz':>5} {'V':>4} {'latency ms':>11} {'energy uJ':>10} {'[90 % interval]':>20} {'fits':>5} note"
    out = [head]
    for r in rows:
        iv = f"[{_fmt(r['energy_lo_uj'], '.1f')}, {_fmt(r['energy_hi_uj'], '.1f')}]" if r["energy_uj"] != "" else ""
        out.append(f"{str(r['profile'])[:14]:<14} {r['model']:<7} {_fmt(r['clock_mhz'], '5.0f'):>5} "
                   f"{_fmt(r['supply_v'], '4.1f'):>4} {_fmt(r['latency_us'] and r['latency_us'] / 1e3, '11.3f'):>11} "
                   f"{_fmt(r['energy_uj'], '10.1f'):>10} {iv:>20} {str(r['memory_fits'])[:5]:>5} {r['note']}")
    return "\n".join(out)


# --------------------------------------------------------------------------
# calibrate --board
# --------------------------------------------------------------------------
def calibrate_stack(measurements: Path, board: str, library: str, out: Path, power_out: Path | None = None,
                    models_dir: Path | None = None) -> list[str]:
    """Fit a stack profile on ``board`` from a runs CSV; write it (and the
    board's power model for the energy rig); returns the lines to print."""
    from .boards import Board
    from .energy import fit_power
    from .stack import fit, read_runs

    b = Board.load(board)
    runs = read_runs(measurements)
    prof = fit(runs, b, library, models_dir=models_dir)
    lines = [f"wrote {out} (stack {library} on {b.name}, {len(runs)} runs)"]
    if any(r.uj_per_inference is not None for r in runs):
        pw = fit_power(runs, b)
        prof.power = pw.to_dict()
        lines.append(f"  power: {pw.k_ua_per_mhz:.2f} uA/MHz while inferring (+{pw.static_ua:.0f} uA static), "
                     f"spread {100 * pw.sd_log:.1f} % (log), {b.regulator}")
        if power_out is not None:
            pw.power_model(f"{library} on {b.name}").save(power_out)
            lines.append(f"wrote {power_out} (power model for `tinytwin rig --power-profile`)")
    elif power_out is not None:
        raise TinytwinError("--power-out needs energies in the runs CSV (columns supply_v,uj_per_inference)")
    prof.save(out)
    for k, v in prof.params().items():
        lines.append(f"  {k:22s} {v:12.4f}")
    for r in prof.provenance["in_sample"]:
        lines.append(f"  {r['model']:10s} {r['clock_mhz']:g} MHz  measured {r['measured_us']:,.1f} us  fitted "
                     f"{r['fitted_us']:,.1f} us  ({r['error_pct']:+.2f} %, in-sample)")
    for r in prof.provenance["leave_one_out"]:
        lines.append(f"  leave-one-out {r['held_out']:10s} predicted {r['predicted_us']:,.1f} us  ({r['error_pct']:+.1f} %)")
    lines.append(f"  model error {100 * prof.sigma_model:.1f} % (log), {prof.dof:g} degrees of freedom")
    return lines


def register(app: typer.Typer) -> None:
    """Add ``whatif`` and ``sweep`` to a typer app."""
    app.command("whatif")(whatif_cmd)
    app.command("sweep")(sweep_cmd)
