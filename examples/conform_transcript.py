"""Write firmware_api_spec/transcripts/dut_performance.md: a full
``tinytwin conform`` session against the twin's performance firmware (kws01,
realtime, on a real pseudo-terminal opened before the board boots, so that the
boot banner is part of it), as a lesson in the protocol.

    python examples/conform_transcript.py [--models-dir DIR] [--data DIR] [--out FILE]

``--data`` is the shared data folder (the cases that load the reference
inputs; default: the one every tinytwin command finds, ``$TINYTWIN_SHARED`` or
``../shared`` beside the checkout); without one those cases are listed as
skipped. The model is found as every command finds it (``--models-dir``,
``$TINYTWIN_MODELS_DIR``, the download cache, the shared folder).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from emulator.benches.dut import build_dut_bench
from emulator.transport import PtyPort
from runner.conform import ConformOptions, run_conformance
from runner.conform.report import print_summary, write_transcript

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", type=Path, default=REPO / "firmware_api_spec" / "transcripts" / "dut_performance.md")
    args = ap.parse_args()
    bench = build_dut_bench("kws01", models_dir=args.models_dir, speed="realtime")
    pty = bench.bridge.attach(PtyPort("dut", initial_baud=bench.dut.uart.baud))
    try:
        rep = run_conformance(ConformOptions(port=pty.device, profile="dut", boot_wait=2.0, data=args.data,
                                             on_open=lambda ser: bench.twin.start()))
    finally:
        bench.twin.close()
    print_summary(rep)
    path = write_transcript(rep, args.out, port_label="the twin's pseudo-terminal (`tinytwin dut --model kws01`)")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
