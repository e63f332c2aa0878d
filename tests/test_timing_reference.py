"""Issue 3 acceptance: the twin's printed windows are the board's.

Driven over a real pseudo-terminal with pyserial, in fast mode, exactly as the
reference sessions drove the board: `infer N 1` with the reference N, and
`infer 1 0`; each window (the delta of the two m-lap-us lines) must be within
0.5 % of reference.csv's `perf_window_us` / `single_infer_us`.
"""
from __future__ import annotations

import csv

import numpy as np
import pytest
import serial

from emulator.benches.dut import build_dut_bench
from emulator.transport import PtyPort

from helpers import Host, laps


def reference_rows(golden):
    with open(golden / "reference.csv") as f:
        rows = [r for r in csv.DictReader(line for line in f if not line.startswith("#"))]
    return {r["model"]: r for r in rows}


def an_input(profile, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    if profile.input_elem_size == 4:
        return rng.normal(0, 1, profile.input_count).astype("<f4").tobytes()
    return rng.integers(0, 256, profile.input_count * profile.input_elem_size, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("model", ["kws01", "vww01", "ic01", "ad01"])
def test_windows_over_the_pty_match_the_board(model, models_dir, golden, tmp_path):
    ref = reference_rows(golden)[model]
    bench = build_dut_bench(model, models_dir=models_dir, speed="fast")
    port = bench.bridge.attach(PtyPort("dut", link=tmp_path / "dut", initial_baud=bench.dut.uart.baud))
    bench.twin.start()
    try:
        with serial.Serial(str(tmp_path / "dut"), bench.dut.uart.baud, timeout=2) as s:
            host = Host(s)
            s.write(b"%")
            host.read_until_ready()
            host.load(an_input(bench.dut.profile))
            n = int(ref["perf_iterations"])
            l1, l2 = laps(host.command(f"infer {n} 1", timeout=120))
            window = (l2 - l1) % 2**32
            assert window == pytest.approx(float(ref["perf_window_us"]), rel=0.005)
            if ref["single_infer_us"]:
                l1, l2 = laps(host.command("infer 1 0", timeout=30))
                single = (l2 - l1) % 2**32
                assert single == pytest.approx(float(ref["single_infer_us"]), rel=0.005)
    finally:
        bench.twin.close()
