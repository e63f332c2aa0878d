"""What CPython's frame-stack chunks cost a hot loop, and what
`emulator.pystack.with_headroom` changes (see that module's note).

Two parts:

* `calls`: one tiny call two frames deep, timed in a loop started at each
  caller depth from 0 to 399 frames. At a depth that puts the call on the end
  of a 16 KiB chunk every call maps, touches and unmaps a chunk; the script
  reports the median time of a call there and elsewhere, and at the worst
  depth through `with_headroom` (page faults counted with `ru_minflt`).
* `runner`: our runner's ad01 accuracy run (`tinytwin run`, a process of its
  own, on a generated set) started from a few caller depths (a launcher adds
  k frames above `emulator.cli.main`), with `with_headroom` on (as shipped)
  and off (`pystack.ENABLED = False`), against a twin on a pty
  (`tinytwin dut --speed fast`, its own process) and against an in-process
  twin (`tinytwin://ad01?speed=fast`). Reports the runner's page faults per
  command (the crossings show there; the run's other faults are the same
  whatever the depth) and the wall time. The runs are interleaved (depths x
  on/off in each round) so that load changes reach all of them.

    python benchmarks/stack_chunks.py --models-dir ../shared/models [--files 2] [--depths 0,1,2,3,4,5] [--rounds 2] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine  # noqa: E402

from emulator import pystack  # noqa: E402

ITERS = 20000

LAUNCHER = """
import sys
from emulator import pystack
from emulator.cli import main
depth, on = int(sys.argv[1]), sys.argv[2] == "on"
pystack.ENABLED = on
sys.argv = ["tinytwin"] + sys.argv[3:]
def pad(k):
    return pad(k - 1) if k else main()
sys.exit(pad(depth))
"""


# -- calls ----------------------------------------------------------------------------------------------------------
def _leaf(n):
    return n + 1


def _mid(n):
    return _leaf(n)


def _loop() -> tuple[float, int]:
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    t = 0
    for _ in range(ITERS):
        t = _mid(t)
    return time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0


def _at(k: int, run):
    return _at(k - 1, run) if k else run()


def calls() -> dict:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 2000))
    plain = [_at(k, _loop) for k in range(400)]
    edges = [k for k, (_, faults) in enumerate(plain) if faults >= ITERS // 2]
    inside = [s for s, faults in plain if faults < ITERS // 10]
    out = {"calls": ITERS, "edge_depths": edges, "inside_us": statistics.median(inside) / ITERS * 1e6}
    if edges:
        out["edge_us"] = statistics.median(plain[k][0] for k in edges) / ITERS * 1e6
        out["edge_faults_per_call"] = statistics.median(plain[k][1] for k in edges) / ITERS
        s, faults = _at(edges[0], lambda: pystack.with_headroom(_loop))
        out["edge_with_headroom_us"] = s / ITERS * 1e6
        out["edge_with_headroom_faults"] = faults
    return out


# -- runner ---------------------------------------------------------------------------------------------------------
def run_once(depth: int, on: bool, port: str, dataset: Path, out: Path) -> tuple[float, int]:
    cmd = [sys.executable, "-c", LAUNCHER, str(depth), "on" if on else "off", "run", "--port", port,
           "--mode", "accuracy", "--dataset", str(dataset), "--out", str(out), "--no-progress", "--baud", "921600"]
    t = time.monotonic()
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - t
    err = p.stderr.read().decode()
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"runner failed at depth {depth} ({'on' if on else 'off'}): {err[-400:]}")
    return wall, usage.ru_minflt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", type=Path, default=None)
    ap.add_argument("--files", type=int, default=2, help="generated ad01 files (196 windows, 16,464 commands each)")
    ap.add_argument("--depths", default="0,1,2,3,4,5")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--transports", default="pty,inproc")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    result = {"machine": machine(), "python": sys.version.split()[0]}
    c = calls()
    result["calls"] = c
    print(f"machine: {result['machine']}")
    if c["edge_depths"]:
        print(f"one call, {ITERS} times: {c['inside_us']:.2f} µs inside a chunk, {c['edge_us']:.2f} µs on a chunk's "
              f"edge ({c['edge_faults_per_call']:.2f} page faults a call; caller depths {c['edge_depths']} of 0-399); "
              f"at the first edge through with_headroom: {c['edge_with_headroom_us']:.2f} µs, "
              f"{c['edge_with_headroom_faults']} page faults in all")
    else:
        print(f"one call: {c['inside_us']:.2f} µs at every caller depth: this CPython does not unmap chunks "
              "on every crossing (python/cpython gh-142183)")

    work = Path(tempfile.mkdtemp(prefix="tinytwin-stack-"))
    env_md = ["--models-dir", str(args.models_dir)] if args.models_dir else []
    subprocess.run([sys.executable, "-m", "emulator.cli", "dataset", "synth", "--model", "ad01", "--out",
                    str(work / "ds"), "--count", str(args.files), *env_md], check=True, capture_output=True, cwd=REPO)
    ports = {}
    twin = None
    if "pty" in args.transports:
        twin = subprocess.Popen([sys.executable, "-m", "emulator.cli", "dut", "--model", "ad01", "--link",
                                 str(work / "dut"), "--speed", "fast", *env_md], stdout=subprocess.PIPE, text=True,
                                cwd=REPO)
        twin.stdout.readline()
        ports["pty"] = str(work / "dut")
    if "inproc" in args.transports:
        url = "tinytwin://ad01?speed=fast"
        if args.models_dir:
            url += f"&models_dir={args.models_dir}"
        ports["inproc"] = url
    runs: dict[tuple[str, int, bool], list[tuple[float, int]]] = {}
    n_cmds = None
    try:
        for r in range(args.rounds):
            for name, port in ports.items():
                for d in depths:
                    for on in (True, False):
                        out = work / f"out-{name}-{d}-{on}-{r}"
                        runs.setdefault((name, d, on), []).append(run_once(d, on, port, work / "ds", out))
                        if n_cmds is None:
                            n_cmds = sum(1 for line in open(out / "log.txt", encoding="utf-8") if " host: " in line)
                print(f"round {r + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    finally:
        if twin is not None:
            twin.terminate()
            twin.wait()
    rows = []
    print(f"\nour runner, ad01 accuracy, {args.files} generated files, {n_cmds:,} commands; median of {args.rounds} rounds")
    print("| twin | caller depth | with_headroom | s | page faults | faults / command over the best |")
    print("|---|---:|---|---:|---:|---:|")
    for name in ports:
        floor = min(min(f for _, f in v) for (n, _, _), v in runs.items() if n == name)
        for d in depths:
            for on in (True, False):
                v = runs[(name, d, on)]
                wall = statistics.median(w for w, _ in v)
                faults = statistics.median(f for _, f in v)
                extra = (faults - floor) / n_cmds
                rows.append({"twin": name, "depth": d, "headroom": on, "wall_s": [w for w, _ in v],
                             "faults": [f for _, f in v], "extra_faults_per_command": extra})
                print(f"| {name} | {d} | {'on' if on else 'off'} | {wall:.2f} | {faults:,.0f} | {extra:.3f} |")
    result.update({"files": args.files, "commands": n_cmds, "rounds": args.rounds, "rows": rows})
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
