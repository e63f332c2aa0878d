"""A twin setting on and off, on the run that stresses it most: wall time of
an ad01 accuracy run over ptys with one pair (one twin, one runner) and with
two pairs (`--jobs 2`, two twins), on a generated set (`tinytwin dataset
synth`, 20 files of 200 frames by default, kept in --work). The settings
(`--compare`):

* `spin` (the default): the fast-mode twin's spin after each command
  (`emulator.sim.Twin.SPIN_S`, 200 µs or 0);
* `express`: the DUT's express lane for `db` chunks
  (`emulator.sim.Twin.allow_express`, `emulator.dut.express`) or the layers;
* `runner-spin`: our runner's spin before it sleeps in each wait for the
  device (`runner.lines.SerialLines.SPIN_S`, 200 µs or 0; the twins spin as
  they do by default);
* `both-spins`: the twin's and the runner's spins together, 200 µs or 0.

Each twin is its own process (`tinytwin dut --speed fast`, started with the
setting); the runner is `tinytwin run --mode accuracy`, a process of its own,
twin start-up not counted. The settings are measured in turns (on, off, on,
...; three rounds by default) and the medians compared, so that a change of
machine load affects both.

    python benchmarks/spin_tradeoff.py [--compare spin|express|runner-spin|both-spins] [--models-dir ../shared/models] [--files 20] [--rounds 3] [--jobs 1,2] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import MODELS_DIR_HELP, machine, models_folder  # noqa: E402
from suite_walltime import cli  # noqa: E402

#: --compare: name -> statement run in the twin's process before `tinytwin dut`
#: (`s` is emulator.sim) or in the runner's before `tinytwin run` (`l` is
#: runner.lines), for on and off
SETTINGS = {
    "spin": {"spin 200 µs": "s.Twin.SPIN_S = 0.0002", "no spin": "s.Twin.SPIN_S = 0.0"},
    "express": {"express lane": "s.Twin.allow_express = True", "layers": "s.Twin.allow_express = False"},
    "runner-spin": {"runner spins 200 µs": "l.SerialLines.SPIN_S = 0.0002", "runner sleeps": "l.SerialLines.SPIN_S = 0.0"},
    "both-spins": {"both spin 200 µs": "s.Twin.SPIN_S = l.SerialLines.SPIN_S = 0.0002",
                   "neither spins": "s.Twin.SPIN_S = l.SerialLines.SPIN_S = 0.0"},
}
#: a process of the CLI with one setting made first (sys.argv[1])
CLI = ("import sys, emulator.sim as s, runner.lines as l; exec(sys.argv[1]); from emulator.cli import main; "
       "sys.argv[1:2] = []; sys.exit(main())")


def one_run(ds: Path, jobs: int, setting: str, models_dir: Path) -> float:
    with tempfile.TemporaryDirectory(prefix="tinytwin-spin-") as tmp:
        procs, ports = [], []
        try:
            for k in range(jobs):
                link = Path(tmp) / f"dut{k}"
                p = subprocess.Popen([sys.executable, "-c", CLI, setting, "dut", "--model", "ad01", "--link", str(link),
                                      "--speed", "fast", "--models-dir", str(models_dir)],
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                p.stdout.readline()  # its first line: the port is there
                procs.append(p)
                ports += ["--port", str(link)]
            t = time.monotonic()
            r = subprocess.run([sys.executable, "-c", CLI, setting, "run", *ports, "--mode", "accuracy",
                                "--dataset", str(ds), "--out", str(Path(tmp) / "out"), "--no-progress",
                                "--jobs", str(jobs), "--baud", "921600"], cwd=REPO, capture_output=True, text=True)
            wall = time.monotonic() - t
            if r.returncode:
                raise SystemExit(f"the run failed: {r.stderr.strip()[-400:]}")
            return wall
        finally:
            for p in procs:
                p.terminate()
                p.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare", choices=sorted(SETTINGS), default="spin")
    ap.add_argument("--models-dir", type=Path, default=None, help=MODELS_DIR_HELP)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tinytwin-spin")
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", default="1,2")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    models_dir = models_folder(args.models_dir, names=("ad01",)).resolve()
    root = args.work.resolve() / f"ad01-{args.files}"
    if not (root / "ad01" / "y_labels.csv").exists():
        r = cli("dataset", "synth", "--model", "ad01", "--out", str(root), "--count", str(args.files),
                "--models-dir", str(models_dir), cwd=REPO)
        if r.returncode:
            raise SystemExit(r.stderr)
    load_before = os.getloadavg()
    rows: dict[str, list[float]] = {}
    for jobs in (int(j) for j in args.jobs.split(",")):
        for _ in range(args.rounds):
            for name, setting in SETTINGS[args.compare].items():
                wall = one_run(root, jobs, setting, models_dir)
                rows.setdefault(f"{jobs}|{name}", []).append(wall)
                print(f"jobs {jobs}, {name}: {wall:.2f} s", file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    print(f"machine: {machine()}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"ad01 accuracy, {args.files} generated files, over ptys")
    print("| pairs (twin + runner) | setting | s, each round | median s |")
    print("|---:|---|---|---:|")
    medians = {}
    for key, walls in rows.items():
        jobs, name = key.split("|")
        medians[key] = statistics.median(walls)
        print(f"| {jobs} | {name} | {', '.join(f'{w:.2f}' for w in walls)} | {medians[key]:.2f} |")
    on_name, off_name = SETTINGS[args.compare]
    for jobs in sorted({k.split("|")[0] for k in rows}):
        on, off = medians[f"{jobs}|{on_name}"], medians[f"{jobs}|{off_name}"]
        print(f"{jobs} pair(s): {on_name} takes {on / off:.2f} x the wall time of {off_name} (medians)")
    if args.json:
        args.json.write_text(json.dumps({"compare": args.compare, "rows": rows, "medians": medians,
                                         "files": args.files, "load": [load_before, load_after],
                                         "machine": machine()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
