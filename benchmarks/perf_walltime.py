"""Wall time of a fast-mode 5-window performance run per model, vs the board.

For each model: a 5-input dataset (kws01: the real inputs in shared/datasets;
the others generated with `tinytwin dataset synth`), then
`tinytwin run --mode performance --iterations N` with the reference session's N
against an in-process twin in fast mode. The board's duration is the span of
its performance session log (first to last line).

    python benchmarks/perf_walltime.py [--shared ../shared]
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import SHARED_HELP, golden_folder, models_folder, shared_folder  # noqa: E402

MODELS = {"kws01": ("kws", 100), "vww01": ("vww", 100), "ic01": ("ic", 100), "ad01": ("ad", 1000)}


def board_seconds(log: Path) -> float:
    stamps = [float(m.group(1)) for m in re.finditer(r"^(\d{5}\.\d{3}) ", log.read_text(), re.M)]
    return stamps[-1] - stamps[0]


def tinytwin(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emulator.cli", *args], capture_output=True, text=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=None, help=SHARED_HELP)
    args = ap.parse_args()
    args.shared = shared_folder(args.shared)
    models_dir = models_folder()
    golden = golden_folder(args.shared)
    work = Path(tempfile.mkdtemp(prefix="tinytwin-perf-"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| model | N | twin wall s (fast) | median inf/s | board session s |")
    print("|---|---:|---:|---:|---:|")
    for model, (short, n) in MODELS.items():
        data = work / "datasets"
        if model == "kws01":
            shutil.copytree(args.shared / "datasets" / "kws01", data / "kws01", dirs_exist_ok=True)
        else:
            r = tinytwin("dataset", "synth", "--model", model, "--out", str(data), "--count", "5", "--models-dir", str(models_dir))
            assert r.returncode == 0, r.stderr
        url = f"tinytwin://{model}?models_dir={models_dir}&speed=fast"
        t = time.perf_counter()
        r = tinytwin("run", "--port", url, "--mode", "performance", "--dataset", str(data),
                     "--out", str(work / f"out-{model}"), "--iterations", str(n), "--no-progress")
        wall = time.perf_counter() - t
        assert r.returncode == 0, r.stdout + r.stderr
        median = re.search(r"median throughput ([\d.]+)", r.stdout)
        print(f"| {model} | {n} | {wall:.1f} | {median.group(1) if median else '?'} | "
              f"{board_seconds(golden / short / 'performance' / 'log.txt'):.0f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
