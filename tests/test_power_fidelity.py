"""Fidelity: the twin's energy figures, measured the way the runners measure
them, against the reference board.

For each model, the EnergyRunner's session is replayed on the twin (EMON at
1.8 V as on the reference bench, 1 kHz energy samples; power on, one lone timestamp, a 1 s pause, the
input download, ``infer N 1``, a 1 s pause, stop). The LPM01A's stream is read
back like the mlcommons runner reads it: energy between the last two D7 event
markers, divided by N.
"""
from __future__ import annotations

import csv

import numpy as np
import pytest

from emulator.emon.lpm01a import parse_ascii_stream
from emulator.power.trace import levels, read_timestamps, read_trace, trace_from_samples, windows_from_timestamps
from emulator.sim import MS, S
from test_lpm01a_device import EnergyBench

SHORT = {"kws01": "kws", "ic01": "ic", "vww01": "vww", "ad01": "ad"}


def _reference(golden) -> dict[str, dict[str, str]]:
    lines = [x for x in (golden / "reference.csv").read_text().splitlines() if x and not x.startswith("#")]
    return {r["model"]: r for r in csv.DictReader(lines)}


def _input(shared, model: str, nbytes: int) -> bytes:
    if model == "kws01":
        return (shared / "datasets/kws01/tst_000000_Stop_7.bin").read_bytes()
    if model == "ad01":
        f = sorted((shared / "datasets/ad01").glob("*.bin"))[0]
        return f.read_bytes()[:nbytes]  # the first 2560-byte window, as the runners send it
    return np.random.default_rng(7).integers(0, 256, nbytes, dtype=np.uint8).tobytes()


def run_energy_session(model: str, models_dir, shared, n: int) -> tuple[EnergyBench, object]:
    b = EnergyBench(model, models_dir)
    b.configure(
        "pwr off", "acqtime inf", "trigdelay 0", "trigsrc sw", "eventsrc d7 fal",
        "output energy", "format ascii_dec", "freq 1k", "volt 1800m", "pwr on nostatus",
    )
    b.run(500 * MS)
    assert b.dut.state == "idle"
    b.emon_cmd("start")
    b.dut_cmd("timestamp")  # 'io dut timestamp'
    b.run(1 * S)  # 'echo head 1000'
    data = _input(shared, model, b.dut.profile.input_count * b.dut.profile.input_elem_size)
    assert "m-[Expecting" in b.dut_cmd(f"db load {len(data)}")
    for i in range(0, len(data), 26):
        b.dut_cmd("db " + data[i : i + 26].hex())
    out = b.dut_cmd(f"infer {n} 1", limit_ns=600 * S)
    assert "m-infer-done" in out and "m-results-[" in out
    b.run(1 * S)  # 'echo tail 1000'
    b.emon_cmd("stop", wait_ns=5 * MS)
    stream = parse_ascii_stream(bytes(b.out))
    assert stream.ended and stream.completed
    return b, stream


@pytest.mark.parametrize("model", ["kws01", "ic01", "vww01", "ad01"])
def test_twin_energy_matches_the_reference_board(model, models_dir, shared, golden):
    ref = _reference(golden)[model]
    n = int(ref["energy_iterations"])
    b, stream = run_energy_session(model, models_dir, shared, n)
    samples = np.array(stream.samples)  # J per 1 ms
    assert [e[0] for e in stream.events] == [1, 2, 3]  # the lone timestamp, then the window
    (_, i0), (_, i1) = stream.events[-2:]
    # the mlcommons runner's figure: energy between the last two markers / N
    uj_per_inf = samples[i0:i1].sum() * 1e6 / n
    assert uj_per_inf == pytest.approx(float(ref["energy_median_uJ_per_inf"]), rel=0.03)
    window_mw = samples[i0:i1].sum() / ((i1 - i0) * 1e-3) * 1e3
    assert window_mw == pytest.approx(float(ref["energy_window_power_mW"]), rel=0.05)

    # idle and inference levels of the twin's trace vs the board's trace, computed alike
    twin_trace = trace_from_samples(samples, 1000.0)
    twin_ts = [i / 1000.0 for _, i in stream.events]
    twin = levels(twin_trace, windows_from_timestamps(twin_ts))
    d = golden / SHORT[model] / "energy"
    board = levels(read_trace(d / "trace1-energy.bin"), windows_from_timestamps(read_timestamps(d / "trace1-timestamps.json")))
    assert twin.inference_mw == pytest.approx(board.inference_mw, rel=0.05)
    assert twin.idle_mw == pytest.approx(board.idle_mw, rel=0.05)
    # the load phase is mostly idle with a print (m-ready) after each db command
    assert twin.idle_mw == pytest.approx(b.emon.power_model.power_mw("idle", 1.8), rel=1e-3)
