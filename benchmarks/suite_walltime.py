"""The whole MLPerf Tiny suite against the twin at real set sizes: wall time
over ptys and in-process, with --jobs 1 and --jobs 2, against the board.

Runs, each as a user runs it (`python -m emulator.cli run ...`, a process of
its own, start-up included):

* accuracy, all four models at the sizes of the real sets: kws01 the 1000
  shared inputs; vww01 1000, ic01 200 and ad01 248 files (200 frames each:
  48,608 windows) generated with `tinytwin dataset synth` (kept in --work);
* performance, all four (the runner's calibrated N for ~11 s windows);
* energy, kws01 and ad01 (the rig: DUT in energy mode, Arduino IO manager,
  LPM01A), reference N (the golden scripts' `infer 100 1` and `infer 10 1`;
  ad01's 0.1 s windows are under today's 10 s minimum, so our runner completes
  that run and flags it: exit 1).

It also counts the round trips (commands) of the pty runs from their logs and
measures a bare pty echo server's rate in the same run: those round trips at
that rate are the floor over a pty for one client, whatever either side does.
For each `--jobs` value above 1 it measures that many echo servers, each with
its own client, all at once: the floor for that many twin/runner pairs. The
floors are measured before and after the runs (this VM's rate moves).

Transports: `pty` (each twin its own process, `tinytwin dut --speed fast`, the
runner on its pty; `--jobs 2` runs two twins and gives both ports) and
`inproc` (`--port tinytwin://<model>?speed=fast`: the twin inside the runner's
process; `--jobs 2`: one in-process twin in each of two shard processes).
Performance and energy runs are not sharded: the `--jobs 2` columns reuse
their `--jobs 1` figures, and the rig has no in-process transport, so energy
runs over ptys (rig in its own process, `tinytwin rig`) in both columns. Twin
start-up before a pty run is not counted (the twin is running when the user
starts the runner); the in-process runs include building their twins.

The board's durations: performance and energy, the span of its logged
session (golden logs); accuracy, its logged per-input rate (kws01: 200 of the
1000 inputs logged, scaled; ic01 and vww01: the whole set logged); ad01 has no
accuracy log: estimated as 48,608 windows x (2,560 bytes at the per-byte
download time of the vww01 log + the reference's single inference).

    python benchmarks/suite_walltime.py [--shared ../shared] [--work /tmp/tinytwin-suite] [--transports pty,inproc] [--jobs 1,2] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import SHARED_HELP, golden_folder, machine, models_folder, shared_folder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODELS = ("kws01", "vww01", "ic01", "ad01")
SHORT = {"kws01": "kws", "vww01": "vww", "ic01": "ic", "ad01": "ad"}
SYNTH = {"vww01": 1000, "ic01": 200, "ad01": 248}
ENERGY = ("kws01", "ad01")
ENERGY_N = {"kws01": 100, "ad01": 10}
STAMP = re.compile(r"^(\d{5}\.\d{3}) ", re.M)


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emulator.cli", *args], capture_output=True, text=True, **kw)


def span(log: Path) -> float:
    stamps = [float(x) for x in STAMP.findall(log.read_text(encoding="latin-1"))]
    return stamps[-1] - stamps[0]


def board_seconds(golden: Path) -> dict[tuple[str, str], float]:
    """The board's duration of each run (see the module)."""
    out = {}
    for m in MODELS:
        out[(m, "performance")] = span(golden / SHORT[m] / "performance" / "log.txt")
    for m in ENERGY:
        out[(m, "energy")] = span(golden / SHORT[m] / "energy" / "log.txt")
    loads = {}
    for m, size in (("kws01", 1000), ("vww01", 1000), ("ic01", 200)):
        log = golden / SHORT[m] / "accuracy" / "log.txt"
        text = log.read_text(encoding="latin-1")
        logged = text.count("parser: Command \"bload dut")
        out[(m, "accuracy")] = span(log) / logged * size
        loads[m] = span(log) / logged
    # ad01: per byte of download as in the vww01 log, plus the inference
    per_byte = (loads["vww01"] - 0.602426) / (96 * 96 * 3)
    out[("ad01", "accuracy")] = 48608 * (2560 * per_byte + 0.010052)
    return out


def prepare(work: Path, shared: Path, models_dir: Path) -> Path:
    """The datasets (generated once, kept in ``work``)."""
    root = work / "datasets"
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "kws01").exists():
        (root / "kws01").symlink_to(shared / "datasets" / "kws01")
    for m, count in SYNTH.items():
        if not (root / m / "y_labels.csv").exists():
            t = time.monotonic()
            r = cli("dataset", "synth", "--model", m, "--out", str(root), "--count", str(count),
                    "--models-dir", str(models_dir))
            if r.returncode:
                raise SystemExit(r.stderr)
            print(f"generated {m}: {count} files in {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
    return root


class Twins:
    """``n`` twins of ``model``, each its own process on its own pty."""

    def __init__(self, model: str, n: int, models_dir: Path, where: Path, *, rig: bool = False):
        self.procs = []
        self.ports = []
        for k in range(n):
            if rig:
                d = where / f"rig-{model}"
                cmd = ["rig", "--model", model, "--dir", str(d), "--speed", "fast", "--models-dir", str(models_dir)]
                self.ports = [str(d / "io"), str(d / "emon")]
            else:
                link = where / f"{model}-dut{k}"
                cmd = ["dut", "--model", model, "--link", str(link), "--speed", "fast", "--models-dir", str(models_dir)]
                self.ports.append(str(link))
            p = subprocess.Popen([sys.executable, "-m", "emulator.cli", *cmd], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
            p.stdout.readline()  # its first line: the port is there
            self.procs.append(p)

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait()


def run(model: str, mode: str, transport: str, jobs: int, ds: Path, out: Path, models_dir: Path,
        scratch: Path) -> dict:
    twins = None
    if transport == "pty" or mode == "energy":
        twins = Twins(model, 1 if mode != "accuracy" else jobs, models_dir, scratch, rig=mode == "energy")
        if mode == "energy":
            ports = ["--io-port", twins.ports[0], "--emon-port", twins.ports[1]]
        else:
            ports = [a for p in twins.ports for a in ("--port", p)]
    else:
        ports = ["--port", f"tinytwin://{model}?speed=fast", "--models-dir", str(models_dir)]
    args = ["run", *ports, "--mode", mode, "--dataset", str(ds), "--out", str(out), "--no-progress"]
    if mode == "accuracy":
        args += ["--jobs", str(jobs)]
    if mode == "energy":
        args += ["--iterations", str(ENERGY_N[model])]
    try:
        t = time.monotonic()
        r = cli(*args)
        wall = time.monotonic() - t
    finally:
        if twins is not None:
            twins.close()
    figure = r.stdout.strip().splitlines()[0] if r.stdout.strip() else r.stderr.strip()[-200:]
    return {"model": model, "mode": mode, "transport": transport, "jobs": jobs, "wall_s": wall,
            "exit": r.returncode, "result": figure, "commands": commands_sent(out)}


def commands_sent(out: Path) -> int:
    """The commands the runner sent (its log's ``host:`` lines), each one round trip."""
    n = 0
    for log in out.glob("log*.txt"):
        with open(log, "rb") as f:
            tail = b""
            while chunk := f.read(1 << 24):
                data = tail + chunk
                n += data.count(b" host: ")
                tail = data[-7:]
                n -= tail.count(b" host: ")
    return n


def echo_rate(pairs: int = 1, n: int = 20000, rounds: int = 3) -> float:
    """The machine's floor: round trips/s through ptys to bare echo servers,
    ``pairs`` of them each with its own client, in all (benchmarks/
    pty_roundtrip.py's), median of ``rounds``."""
    import statistics

    from pty_roundtrip import echo_pairs_rate

    return statistics.median(echo_pairs_rate(pairs, n) for _ in range(rounds))


def same_results(a: Path, b: Path) -> bool:
    """results.txt without stamps, results.json without dates and µs (see runner.shards);
    the DUT's port as given is the one difference allowed: over ptys ``--jobs 2``
    names its two ports (``dut0,dut1``) where ``--jobs 1`` names one."""
    ja, jb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    ta = [ln[10:] for ln in (a / "results.txt").read_text().splitlines()]
    tb = [ln[10:].replace(jb["port"], ja["port"]) for ln in (b / "results.txt").read_text().splitlines()]
    for j in (ja, jb):
        j.pop("started"), j.pop("finished"), j.pop("port")
        for rec in j.get("accuracy", {}).get("inferences", []):
            rec.pop("us")
    return ta == tb and ja == jb


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=None, help=SHARED_HELP)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tinytwin-suite")
    ap.add_argument("--transports", default="pty,inproc")
    ap.add_argument("--jobs", default="1,2")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--modes", default="accuracy,performance,energy")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    args.shared = shared_folder(args.shared).resolve()  # the kws01 set is linked into --work
    models_dir = models_folder().resolve()
    golden = golden_folder(args.shared)
    board = board_seconds(golden)
    ds = prepare(args.work, args.shared, models_dir)
    models = args.models.split(",")
    modes = args.modes.split(",")
    jobs_list = [int(j) for j in args.jobs.split(",")]
    load_before = os.getloadavg()
    # this VM's pty rate moves by a third within an hour: the floors are
    # measured before and after the runs
    floors_before = {j: echo_rate(j) for j in jobs_list} if "pty" in args.transports else {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="tinytwin-suite-run-") as tmp:
        tmp = Path(tmp)
        for transport in args.transports.split(","):
            for jobs in jobs_list:
                for mode in modes:
                    for model in models:
                        if mode == "energy" and model not in ENERGY:
                            continue
                        if mode != "accuracy" and jobs != jobs_list[0]:
                            continue  # not sharded: the first column's figure stands
                        if mode == "energy" and transport != "pty" and "pty" in args.transports:
                            continue  # the rig runs over ptys either way
                        out = tmp / f"{transport}-{jobs}-{mode}-{model}"
                        row = run(model, mode, transport, jobs, ds, out, models_dir, tmp)
                        row["board_s"] = board.get((model, mode))
                        if mode == "accuracy" and jobs != jobs_list[0]:
                            row["same_as_jobs1"] = same_results(tmp / f"{transport}-{jobs_list[0]}-{mode}-{model}", out)
                        rows.append(row)
                        print(f"{transport} jobs {jobs} {mode} {model}: {row['wall_s']:.1f} s (exit {row['exit']}) "
                              f"{row['result']}", file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    print(f"machine: {machine()}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")

    def wall(transport: str, jobs: int, mode: str, model: str) -> float | None:
        for r in rows:
            if (r["transport"], r["model"], r["mode"]) == (transport, model, mode):
                if r["jobs"] == jobs or mode != "accuracy":
                    return r["wall_s"]
        for r in rows:  # energy measured once, over ptys
            if (r["model"], r["mode"]) == (model, mode) and mode == "energy":
                return r["wall_s"]
        return None

    cols = [(t, j) for t in args.transports.split(",") for j in jobs_list]
    print("| run | board s | " + " | ".join(f"{t} --jobs {j} s" for t, j in cols) + " |")
    print("|---|---:|" + "---:|" * len(cols))
    totals = {c: 0.0 for c in cols}
    board_total = 0.0
    for mode in modes:
        for model in models:
            if mode == "energy" and model not in ENERGY:
                continue
            cells = []
            for c in cols:
                w = wall(c[0], c[1], mode, model)
                cells.append("–" if w is None else f"{w:.1f}")
                totals[c] += w or 0.0
            b = board.get((model, mode))
            board_total += b or 0.0
            est = " (est.)" if (model, mode) == ("ad01", "accuracy") else ""
            print(f"| {model} {mode} | {b:,.0f}{est} | " + " | ".join(cells) + " |")
    print(f"| **suite** | {board_total:,.0f} | " + " | ".join(f"**{totals[c]:.1f}**" for c in cols) + " |")
    # the floor over ptys: the same number of round trips, one client, at the
    # rate of a server that does nothing but answer m-ready (measured now)
    floor_rates = {j: echo_rate(j) for j in jobs_list} if "pty" in args.transports else {}
    floor_rate = floor_rates.get(1) or (echo_rate(1) if floor_rates else None)
    for j in floors_before:
        print(f"echo floor, {j} pair(s): {floors_before[j]:,.0f}/s before the runs, {floor_rates[j]:,.0f}/s after")
    trips = {}
    for r in rows:
        if r["transport"] == "pty" and r["jobs"] == jobs_list[0]:
            trips[(r["model"], r["mode"])] = r["commands"]
    total_trips = sum(trips.values())
    if floor_rate:
        print(f"round trips in the pty --jobs {jobs_list[0]} runs: {total_trips:,}; a bare pty echo server "
              f"answers {floor_rate:,.0f}/s here: {total_trips / floor_rate:.0f} s for those round trips "
              "with nothing computed on either side (one client)")
    for j, rate in floor_rates.items():
        if j > 1:
            print(f"{j} bare pty echo servers, each with its own client, all at once: {rate:,.0f}/s in all: "
                  f"{total_trips / rate:.0f} s for those round trips (the floor for --jobs {j}; performance "
                  "and energy runs are not sharded)")
    bad = [r for r in rows if r["exit"] not in (0, 1)]
    for r in bad:
        print(f"FAILED: {r['transport']} jobs {r['jobs']} {r['mode']} {r['model']}: {r['result']}")
    for r in rows:
        if "same_as_jobs1" in r:
            print(f"{r['transport']} {r['model']} accuracy --jobs {r['jobs']}: results.txt/results.json as --jobs "
                  f"{jobs_list[0]}: {'yes' if r['same_as_jobs1'] else 'NO'}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "totals": {f"{t} {j}": v for (t, j), v in totals.items()},
                                         "board_total": board_total, "load": [load_before, load_after],
                                         "pty_round_trips": total_trips, "echo_round_trips_per_s": floor_rate,
                                         "echo_round_trips_per_s_by_pairs": floor_rates,
                                         "echo_round_trips_per_s_by_pairs_before": floors_before,
                                         "machine": machine()},
                                        indent=1) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
