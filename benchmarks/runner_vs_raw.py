"""Our runner's own cost per command: an ad01 accuracy run over a pty against
a raw-fd client sending the same commands to the same twin.

The twin runs as its own process (`tinytwin dut --model ad01 --speed fast`).
The raw client writes each command of the accuracy procedure (the resync
`%`, `name`, `profile`, then for every window of every file `db load 2560`,
83 `db` chunks and `infer 1 0`) and reads until `m-ready` (raw reads, no
parsing, no log); our runner (`runner.session.run`, in this process, no
progress bar) does the whole procedure: every line parsed and checked,
log.txt, results. The two are measured in turns (raw, runner, raw, ...; three
rounds by default) on a generated set (`tinytwin dataset synth`, 10 files =
1,960 windows = 168,561 commands by default) and the medians compared.

    python benchmarks/runner_vs_raw.py --models-dir ../shared/models [--files 10] [--rounds 3] [--json out.json]
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
import tty
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine  # noqa: E402

READY = b"m-ready\r\n"


def command_sequence(dataset: Path) -> list[bytes]:
    """What our runner sends in an ad01 accuracy run, command by command."""
    from runner.dataset import load_dataset
    from runner.protocol import MODELS, db_commands

    ds = load_dataset(dataset, MODELS["ad01"])
    cmds = [b"%", b"name%", b"profile%"]
    for entry in ds.entries:
        data = entry.read()
        for offset in entry.windows():
            window = entry.input_bytes(data, offset)
            cmds.append(f"db load {len(window)}%".encode())
            cmds += [(c + "%").encode() for c in db_commands(window)]
            cmds.append(b"infer 1 0%")
    return cmds


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def raw_client(path: str, cmds: list[bytes]) -> tuple[float, float]:
    """(wall s, CPU s) a raw-fd client needs for ``cmds`` (one at a time,
    each up to its ``m-ready``)."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        tty.setraw(fd)
        c = cpu_s()
        t = time.perf_counter()
        for cmd in cmds:
            os.write(fd, cmd)
            buf = b""
            while not buf.endswith(READY):
                buf += os.read(fd, 65536)
        return time.perf_counter() - t, cpu_s() - c
    finally:
        os.close(fd)


def our_runner(path: str, dataset: Path, out: Path) -> tuple[float, float]:
    from runner.session import RunOptions, run

    c = cpu_s()
    t = time.perf_counter()
    res = run(RunOptions(port=path, mode="accuracy", dataset=dataset, out=out, baud=921600, progress=False))
    wall = time.perf_counter() - t
    if res.exit_code != 0:
        raise SystemExit(f"the runner failed: {res.message}")
    return wall, cpu_s() - c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", type=Path, default=None)
    ap.add_argument("--files", type=int, default=10, help="generated ad01 files (196 windows each)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tinytwin-rvr-"))
    synth = [sys.executable, "-m", "emulator.cli", "dataset", "synth", "--model", "ad01", "--out", str(work / "ds"),
             "--count", str(args.files)]
    twin_cmd = [sys.executable, "-m", "emulator.cli", "dut", "--model", "ad01", "--link", str(work / "dut"),
                "--speed", "fast"]
    if args.models_dir:
        synth += ["--models-dir", str(args.models_dir)]
        twin_cmd += ["--models-dir", str(args.models_dir)]
    subprocess.run(synth, check=True, capture_output=True)
    cmds = command_sequence(work / "ds")
    load_before = os.getloadavg()
    twin = subprocess.Popen(twin_cmd, stdout=subprocess.PIPE, text=True)
    times: dict[str, list[float]] = {"raw": [], "runner": []}
    cpus: dict[str, list[float]] = {"raw": [], "runner": []}
    try:
        twin.stdout.readline()
        path = str(work / "dut")
        for i in range(args.rounds):
            for k, (wall, cpu) in (("raw", raw_client(path, cmds)), ("runner", our_runner(path, work / "ds", work / f"out{i}"))):
                times[k].append(wall)
                cpus[k].append(cpu)
        log_mb = (work / "out0" / "log.txt").stat().st_size / 1e6
    finally:
        twin.terminate()
        twin.wait()
    load_after = os.getloadavg()
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["runner"] / med["raw"]
    print(
        f"machine: {machine()}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(f"ad01 accuracy, {args.files} generated files, {len(cmds):,} commands over a pty (twin in its own process)")
    print("| client | s, each round | median s | commands/s | client CPU µs / command (median) |")
    print("|---|---|---:|---:|---:|")
    for k, label in (("raw", "raw fd client (same commands)"), ("runner", "our runner (`runner.session.run`)")):
        cpu = statistics.median(cpus[k]) / len(cmds) * 1e6
        print(f"| {label} | {', '.join(f'{t:.2f}' for t in times[k])} | {med[k]:.2f} | {len(cmds) / med[k]:,.0f} | {cpu:.1f} |")
    print(f"runner / raw (medians): {ratio:.2f}; the runner's log.txt: {log_mb:.1f} MB")
    if args.json:
        args.json.write_text(json.dumps({"times": times, "cpu_s": cpus, "median": med, "ratio": ratio, "commands": len(cmds),
                                         "log_mb": log_mb, "load": [load_before, load_after],
                                         "machine": machine()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
