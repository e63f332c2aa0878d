"""Wall time of the runner's kws01 runs against the twin vs the real board.

Runs, against an in-process twin behind a real pseudo-terminal (as a board on
a serial port):

* the kws01 accuracy run over the 1000 inputs of ``shared/datasets/kws01``;
* a kws01 performance run (calibration + 5 windows);

and compares their wall time with the durations of the same procedures on the
reference board, read off its logs (EEMBC EnergyRunner sessions in
``shared/golden/l4r5zi-tflm-v0.5/kws``): performance 93 s (00272.954 ->
00366.090), accuracy ~333 s (200 inputs in 67.2 s in the logged part of the
session, i.e. 0.336 s an input).

Usage::

    python benchmarks/runner_walltime.py [--shared ../shared] [--speed fast] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import SHARED_HELP, models_folder, shared_folder  # noqa: E402

BOARD_S = {"accuracy": 333.0, "performance": 93.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=None, help=SHARED_HELP)
    ap.add_argument("--speed", default="fast")
    ap.add_argument("--modes", default="accuracy,performance")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    args.shared = shared_folder(args.shared)
    models_dir = models_folder(names=("kws01",))

    from emulator.benches.dut import build_dut_bench
    from emulator.transport import PtyPort
    from runner.session import RunOptions, run

    rows = []
    for mode in args.modes.split(","):
        bench = build_dut_bench("kws01", models_dir=models_dir, speed=args.speed)
        port = bench.bridge.attach(PtyPort("dut", initial_baud=bench.dut.uart.baud))
        bench.twin.start()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.monotonic()
                res = run(
                    RunOptions(
                        port=port.device,
                        mode=mode,
                        dataset=args.shared / "datasets",
                        out=Path(tmp) / mode,
                        progress=False,
                    )
                )
                wall = time.monotonic() - t0
        finally:
            bench.twin.close()
        if res.exit_code != 0:
            print(f"{mode}: run failed: {res.message}", file=sys.stderr)
            return 1
        figure = res.summary[0] if res.summary else ""
        rows.append(
            {
                "mode": mode,
                "speed": args.speed,
                "wall_s": round(wall, 2),
                "board_s": BOARD_S[mode],
                "speedup": round(BOARD_S[mode] / wall, 1),
                "result": figure,
            }
        )
    print(f"{'mode':<12} {'twin wall s':>11} {'board s':>8} {'speed-up':>9}  result")
    for r in rows:
        print(f"{r['mode']:<12} {r['wall_s']:>11.2f} {r['board_s']:>8.0f} {r['speedup']:>8.1f}x  {r['result']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
