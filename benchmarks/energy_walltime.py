"""Wall time of full energy runs (5 windows) against the twin's rig vs the real board.

For each model: an energy rig (DUT in energy mode behind the Arduino IO
manager, LPM01A) in fast mode on real pseudo-terminals, and the runner's
energy mode against it with the reference session's inferences per window
(kws01 100, vww01 100, ic01 10, ad01 10; ``--auto`` lets the runner pick N
for 11 s windows instead). The board's duration of the same session is read
off its EnergyRunner log (``golden/l4r5zi-tflm-v0.5/<m>/energy/log.txt``,
``m-session-start`` to ``m-session-stop``: kws01 103 s, vww01 733 s, ic01 90 s,
ad01 44 s). Also reported: the run's median energy per inference and window
runtime against reference.csv. The runner supplies the DUT at ``--voltage``
(default 1.8 V, the reference's, as its logs' ``m-voltage-mv[1800]`` says);
at another voltage the reference energy is scaled by the voltage ratio (the
board's current does not depend on its supply).

Usage::

    python benchmarks/energy_walltime.py [--shared ../shared] [--models kws01,ad01] [--voltage 3.0] [--auto] [--json out.json]
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import SHARED_HELP, golden_folder, models_folder, shared_folder  # noqa: E402

SHORT = {"kws01": "kws", "vww01": "vww", "ic01": "ic", "ad01": "ad"}
STAMP = re.compile(r"^(\d+\.\d+) session: m-session-(start|stop)-id")


def board_seconds(golden: Path, model: str) -> float:
    """Session start to stop in the board's energy log."""
    start = stop = None
    for line in (golden / SHORT[model] / "energy" / "log.txt").read_text(encoding="latin-1").splitlines():
        m = STAMP.match(line)
        if m:
            if m.group(2) == "start" and start is None:
                start = float(m.group(1))
            elif m.group(2) == "stop":
                stop = float(m.group(1))
    if start is None or stop is None:
        raise SystemExit(f"no session start/stop in the {model} energy log")
    return stop - start


def reference(golden: Path) -> dict[str, dict[str, str]]:
    lines = [x for x in (golden / "reference.csv").read_text().splitlines() if x and not x.startswith("#")]
    return {r["model"]: r for r in csv.DictReader(lines)}


def datasets(shared: Path, models_dir: Path, root: Path) -> Path:
    from runner.synth import synthesize

    root.mkdir(parents=True, exist_ok=True)
    for m in ("kws01", "ad01"):
        (root / m).symlink_to(shared / "datasets" / m)
    for m in ("ic01", "vww01"):
        synthesize(m, root, 5, models_dir=models_dir, seed=1)
    return root


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=None, help=SHARED_HELP)
    ap.add_argument("--models", default="kws01,vww01,ic01,ad01")
    ap.add_argument("--interface", default="arduino", choices=("arduino", "h573"))
    ap.add_argument("--auto", action="store_true", help="let the runner pick N (11 s windows) instead of the reference's N")
    ap.add_argument("--voltage", type=float, default=None, help="DUT supply (V; default: the runner's, 1.8)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from emulator.power.model import log_voltage_v
    from emulator.benches.rig import build_rig
    from runner.energy import DEFAULT_VOLTAGE_V, EnergyOptions, run_energy

    volts = args.voltage if args.voltage is not None else DEFAULT_VOLTAGE_V

    args.shared = shared_folder(args.shared)
    golden = golden_folder(args.shared)
    models_dir = models_folder()
    ref = reference(golden)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tinytwin-energy-bench-") as tmp:
        tmp = Path(tmp)
        ds = datasets(args.shared, models_dir, tmp / "datasets")
        for model in args.models.split(","):
            r = ref[model]
            n = None if args.auto else int(r["energy_iterations"])
            board_v = log_voltage_v((golden / SHORT[model] / "energy" / "log.txt").read_text(encoding="latin-1"))
            rig = build_rig(model, models_dir=models_dir, interface=args.interface, speed="fast", dir=tmp / f"rig-{model}")
            rig.start()
            out = tmp / f"out-{model}"
            t0 = time.monotonic()
            try:
                outcome = run_energy(
                    EnergyOptions(io_port=rig.io_path, emon_port=rig.emon_path, dataset=ds, out=out,
                                  interface=args.interface, voltage=volts, iterations=n, progress=False)
                )
            finally:
                wall = time.monotonic() - t0
                rig.close()
            rec = json.loads((out / "results.json").read_text())
            en = rec.get("energy", {})
            wins = en.get("windows", [])
            runtime = statistics.median(w["runtime_s"] for w in wins) if wins else float("nan")
            med = en.get("median_uj_per_inference", float("nan"))
            trace = rec.get("energy_trace", {})
            rows.append(
                {
                    "model": model,
                    "iterations": en.get("iterations"),
                    "status": outcome.status,
                    "wall_s": wall,
                    "board_s": board_seconds(golden, model),
                    "simulated_s": trace.get("duration_s"),
                    "samples": trace.get("samples"),
                    "median_uj_per_inf": med,
                    "voltage_v": volts,
                    "board_voltage_v": board_v,
                    "reference_uj_per_inf": float(r["energy_median_uJ_per_inf"]) * volts / board_v,
                    "window_s": runtime,
                    "reference_window_s": float(r["energy_window_s"]),
                    "log_mb": (out / "log.txt").stat().st_size / 1e6,
                    "message": outcome.message,
                }
            )
            row = rows[-1]
            print(
                f"{model}: {row['wall_s']:.1f} s wall ({outcome.status}{': ' + outcome.message if outcome.message else ''})",
                file=sys.stderr, flush=True,
            )

    print(f"energy runs at {volts:g} V, 5 windows, fast mode, {args.interface} IO manager + LPM01A "
          f"({'N picked by the runner' if args.auto else 'reference N'}; ref = reference.csv x {volts:g} V / board's V)")
    print(f"{'model':6} {'N':>5} {'wall s':>7} {'board s':>8} {'speed-up':>8} {'sim s':>7} {'samples':>8} "
          f"{'uJ/inf':>10} {'ref':>10} {'diff':>6} {'window s':>9} {'ref':>7} {'diff':>6} {'status':>8}")
    for row in rows:
        du = 100 * (row["median_uj_per_inf"] / row["reference_uj_per_inf"] - 1)
        dw = 100 * (row["window_s"] / row["reference_window_s"] - 1)
        print(
            f"{row['model']:6} {row['iterations'] or 0:5d} {row['wall_s']:7.1f} {row['board_s']:8.1f} "
            f"{row['board_s'] / row['wall_s']:7.1f}x {row['simulated_s'] or 0:7.1f} {row['samples'] or 0:8d} "
            f"{row['median_uj_per_inf']:10.3f} {row['reference_uj_per_inf']:10.3f} {du:+5.2f}% "
            f"{row['window_s']:9.3f} {row['reference_window_s']:7.3f} {dw:+5.2f}% {row['status']:>8}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
