"""Energy mode end to end against the twin's energy rig (fast mode): the
runner on the rig's real pseudo-terminals (IO manager + LPM01A), figures
against the v0.5 reference board (reference.csv, the real EMON traces), the
output folder, and bad input (a lost timestamp edge, a broken timestamp
wire, an EMON that stops streaming, windows under 10 s, the wrong
interface).

kws01 and ad01 run the full 5 windows with the reference's iteration counts;
ic01 and vww01 (60 s windows) run fewer windows here; the benchmark
``benchmarks/energy_walltime.py`` runs all four in full. The runner's default
supply is the reference's 1.8 V (the EMON's m-voltage-mv[1800] in the board's
logs); at 3.0 V the same board draws the same current, so every figure is 5/3
of the reference's.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from emulator.power.model import log_voltage_v
from emulator.power.trace import levels, read_timestamps, read_trace, windows_from_timestamps
from emulator.benches.rig import build_rig
from runner.energy import EnergyOptions, run_energy
from runner.session import EXIT_ERROR, EXIT_INVALID, EXIT_OK

CHECKER_ENERGY = r"Median energy cost is ([\d\.]+) uJ/inf"  # tools/submission/submission_checker.py
SHORT = {"kws01": "kws", "ic01": "ic", "vww01": "vww", "ad01": "ad"}
SAMPLE_LINE = re.compile(r"^\d+\.\d{3} emon: \d{4}[+-]\d{2}$")


def reference(golden) -> dict[str, dict[str, str]]:
    lines = [x for x in (golden / "reference.csv").read_text().splitlines() if x and not x.startswith("#")]
    return {r["model"]: r for r in csv.DictReader(lines)}


@pytest.fixture(scope="module")
def datasets(shared, models_dir, tmp_path_factory) -> Path:
    """kws01 and ad01 from shared/datasets; ic01 and vww01 generated."""
    from runner.synth import synthesize

    root = tmp_path_factory.mktemp("energy-datasets")
    for m in ("kws01", "ad01"):
        (root / m).symlink_to(shared / "datasets" / m)
    for m in ("ic01", "vww01"):
        synthesize(m, root, 2, models_dir=models_dir, seed=1)
    return root


def energy_run(model, tmp_path, models_dir, dataset, *, interface="arduino", tweak=None, **kw):
    rig = build_rig(model, models_dir=models_dir, interface=interface, speed="fast", dir=tmp_path / "rig")
    if tweak is not None:
        tweak(rig)
    rig.start()
    out = tmp_path / "out"
    try:
        opts = EnergyOptions(
            io_port=rig.io_path, emon_port=rig.emon_path, dataset=dataset, out=out, progress=False, **kw
        )
        outcome = run_energy(opts)
    finally:
        rig.close()
    return outcome, out, rig


def reference_levels(golden, model):
    d = golden / SHORT[model] / "energy"
    return levels(read_trace(d / "trace1-energy.bin"), windows_from_timestamps(read_timestamps(d / "trace1-timestamps.json")))


def board_volts(golden, model) -> float:
    """The supply of the board's energy run, as its log says (1.8 V)."""
    return log_voltage_v((golden / SHORT[model] / "energy" / "log.txt").read_text(errors="replace"))


def check_against_reference(model, out, golden, *, windows: int, iterations: int, voltage: float = 1.8):
    ref = reference(golden)[model]
    # the board's current is the same at any supply: its figures scale with the voltage
    scale = voltage / board_volts(golden, model)
    rec = json.loads((out / "results.json").read_text())
    en = rec["energy"]
    assert en["iterations"] == iterations and len(en["windows"]) == windows
    assert rec["dut"]["model"] == model and rec["emon"]["voltage_v"] == voltage
    # the figure of merit and the windows' runtimes
    assert en["median_uj_per_inference"] == pytest.approx(float(ref["energy_median_uJ_per_inf"]) * scale, rel=0.03)
    for w in en["windows"]:
        assert w["runtime_s"] == pytest.approx(float(ref["energy_window_s"]), rel=0.01), w
        assert w["uj_per_inference"] == pytest.approx(w["energy_uj"] / iterations)
        assert w["power_mw"] == pytest.approx(float(ref["energy_window_power_mW"]) * scale, rel=0.05)

    # the saved trace holds what was measured: the window energies are the
    # sums of its samples between the saved edges
    trace = read_trace(out / "trace1-energy.bin")
    assert trace.rate_hz == 1000.0
    stamps = read_timestamps(out / "trace1-timestamps.json")
    assert len(stamps) == rec["energy_trace"]["edges"] == 1 + 2 * (len(rec["energy_trace"]["calibration_windows"]) + windows)
    for w in en["windows"]:
        assert w["start_s"] in stamps and w["end_s"] in stamps
        assert trace.energy_uj(w["start_s"], w["end_s"]) == pytest.approx(w["energy_uj"], rel=1e-5)
    assert (out / "trace1-energy.png").stat().st_size > 10_000

    # idle level (between the windows) and inference level vs the board's trace
    board = reference_levels(golden, model)
    twin_idle = levels(trace, windows_from_timestamps(stamps)).idle_mw
    twin_inf = levels(trace, [(w["start_s"], w["end_s"]) for w in en["windows"]]).inference_mw
    assert twin_idle == pytest.approx(board.idle_mw * scale, rel=0.05)
    assert twin_inf == pytest.approx(board.inference_mw * scale, rel=0.05)
    assert rec["energy_trace"]["idle_mw"] == pytest.approx(twin_idle, rel=1e-6)
    assert rec["energy_trace"]["inference_mw"] == pytest.approx(twin_inf, rel=1e-6)

    # log.txt: every line on both ports, every sample included
    log = (out / "log.txt").read_text().splitlines()
    end = next(i for i, ln in enumerate(log) if ln.endswith(" emon: end"))
    assert sum(1 for ln in log[:end] if SAMPLE_LINE.match(ln)) == len(trace.uj)
    assert [ln.split(": ", 1)[1] for ln in log[end:] if " emon: " in ln][:3] == ["end", "PowerShield > ack stop", "summary begin"]
    assert sum(1 for ln in log if " io: [dut]: m-results-[" in ln) == windows + len(rec["energy_trace"]["calibration_windows"])
    assert any(ln.endswith(f"host>emon: volt {round(voltage * 1000)}m") for ln in log)
    assert any(ln.endswith(f"host>io: dut infer {iterations} 1%") for ln in log)
    assert sum(1 for ln in log if re.search(r" emon: event \d+ ris$", ln)) == len(stamps)
    return rec


def test_kws01_full_energy_run_matches_the_reference_board(models_dir, golden, datasets, tmp_path):
    outcome, out, rig = energy_run("kws01", tmp_path, models_dir, datasets, iterations=100)
    assert (outcome.status, outcome.exit_code, outcome.message) == ("complete", EXIT_OK, "")
    rec = check_against_reference("kws01", out, golden, windows=5, iterations=100)
    assert rec["interface"] == "arduino" and rec["io_manager"]["version"] == "1.0.3"
    assert rec["energy"]["valid"] and rec["status"] == "complete"
    # the five inputs are the first five of y_labels.csv, and their results are the model's
    assert [w["file"] for w in rec["energy"]["windows"]] == [
        "tst_000000_Stop_7.bin", "tst_000001_Left_2.bin", "tst_000002_Right_6.bin", "tst_000003_Up_8.bin", "tst_000004_On_5.bin",
    ]
    assert all(len(w["results"]) == 12 for w in rec["energy"]["windows"])
    text = (out / "results.txt").read_text()
    m = re.findall(CHECKER_ENERGY, text)
    assert m == [f"{rec['energy']['median_uj_per_inference']:.3f}"]
    assert text.count("Energy data for window") == 5 and text.count("Runtime requirements have been met.") == 5
    assert "Median throughput is" in text
    assert not rig.dut.powered  # powered off at the end


def test_ad01_reference_run_is_measured_but_flagged_under_10_s(models_dir, golden, datasets, tmp_path):
    """The reference ran ad01 with 10 inferences a window (0.104 s): the
    figures must match, and the run must say it is not valid."""
    outcome, out, _ = energy_run("ad01", tmp_path, models_dir, datasets, iterations=10)
    assert (outcome.status, outcome.exit_code) == ("invalid", EXIT_INVALID)
    rec = check_against_reference("ad01", out, golden, windows=5, iterations=10)
    assert not rec["energy"]["valid"]
    assert rec["energy"]["problems"][0].startswith("window 1 ran 0.10")
    assert all("under the 10 s minimum" in p for p in rec["energy"]["problems"])
    text = (out / "results.txt").read_text()
    assert not re.search(CHECKER_ENERGY, text)  # the checker cannot take it for a result
    assert "ERROR: not valid for submission: window 1 ran" in text
    assert "NOT VALID for submission" in outcome.summary[-1]


@pytest.mark.parametrize("model,iterations,windows", [("ic01", 10, 2), ("vww01", 100, 1)])
def test_ic01_vww01_windows_match_the_reference_board(model, iterations, windows, models_dir, golden, datasets, tmp_path):
    outcome, out, _ = energy_run(model, tmp_path, models_dir, datasets, iterations=iterations, windows=windows)
    assert outcome.exit_code == EXIT_INVALID  # fewer than 5 windows (and ic01's are 7 s)
    rec = check_against_reference(model, out, golden, windows=windows, iterations=iterations)
    assert f"{windows} windows measured; energy mode requires exactly 5" in rec["energy"]["problems"]


@pytest.mark.parametrize("model,iterations", [("kws01", 100), ("vww01", 100), ("ic01", 10), ("ad01", 10)])
def test_at_3v0_the_figures_are_5_3_of_the_reference(model, iterations, models_dir, golden, datasets, tmp_path):
    """The same board at 3.0 V: same current, so 5/3 of the energy and power
    the reference measured at 1.8 V (one window each)."""
    outcome, out, _ = energy_run(model, tmp_path, models_dir, datasets, iterations=iterations, windows=1, voltage=3.0)
    assert outcome.exit_code == EXIT_INVALID  # one window
    check_against_reference(model, out, golden, windows=1, iterations=iterations, voltage=3.0)


def test_h573_interface_with_calibrated_iterations(models_dir, golden, datasets, tmp_path):
    """The mlcommons interface board; N picked from two EMON-timed runs."""
    outcome, out, _ = energy_run("kws01", tmp_path, models_dir, datasets, interface="h573", windows=2)
    rec = json.loads((out / "results.json").read_text())
    assert rec["interface"] == "h573" and rec["io_manager"]["name"] == "tinyML Enhanced Interface Board"
    cal = rec["energy"]["calibration"]
    assert cal["iterations"] >= 2 and cal["infer_1_s"] > 0.1
    n = rec["energy"]["iterations"]
    assert n == cal["picked_iterations"] and 55 <= n <= 70  # ~11 s of 0.18 s inferences
    for w in rec["energy"]["windows"]:
        assert 10.0 <= w["runtime_s"] <= 12.0
    ref = reference(golden)["kws01"]
    assert rec["energy"]["median_uj_per_inference"] == pytest.approx(float(ref["energy_median_uJ_per_inf"]), rel=0.03)
    # only the window count is wrong
    assert rec["energy"]["problems"] == ["2 windows measured; energy mode requires exactly 5"]
    assert outcome.exit_code == EXIT_INVALID
    log = (out / "log.txt").read_text()
    assert "host>io: setbaud 9600%" in log and "io: baud is: 9600" in log


def test_emon_samples_arriving_after_the_io_managers_answer(models_dir, golden, datasets, tmp_path):
    """Fast mode with two ports: the EMON's samples of a window may reach the
    host after the IO manager's answer. Here the EMON sends its samples only
    every 0.5 s of simulated time (the twin's LPM01A: every 10 ms), so the
    inference's m-ready comes well before its end edge: the runner must still
    wait for both edges."""

    def slow_emon(rig):
        rig.emon.flush_ns = 500_000_000

    outcome, out, _ = energy_run("ad01", tmp_path, models_dir, datasets, iterations=10, tweak=slow_emon)
    assert outcome.exit_code == EXIT_INVALID, outcome.message  # 0.1 s windows; otherwise complete
    check_against_reference("ad01", out, golden, windows=5, iterations=10)
    log = (out / "log.txt").read_text()
    assert log.count("host>emon: pwr get") >= 5  # the stream marker after each late window


def drop_d7_edges(rig, ordinals: set[int]):
    """Lose the given falling edges (counted from the start of the
    acquisition) on the way from the DUT's timestamp GPIO to the EMON's D7."""
    pin = rig.dut.timestamp_pin
    i = pin.listeners.index(rig.emon._on_d7)
    orig = pin.listeners[i]
    seen = [0]

    def wire(level, t):
        if level == 0 and rig.emon.acquiring:
            seen[0] += 1
            if seen[0] in ordinals:
                return
        orig(level, t)

    pin.listeners[i] = wire


def check_stopped_run(outcome, out, *pieces):
    assert (outcome.status, outcome.exit_code) == ("stopped", EXIT_ERROR)
    for p in pieces:
        assert p in outcome.message, (p, outcome.message)
    rec = json.loads((out / "results.json").read_text())
    assert rec["status"] == "stopped" and rec["error"] == outcome.message
    text = (out / "results.txt").read_text()
    assert "run stopped, results incomplete:" in text and not re.search(CHECKER_ENERGY, text)
    assert "run stopped: " in (out / "log.txt").read_text()
    return rec


def test_lost_end_edge_of_a_window_is_measured_again(models_dir, datasets, tmp_path):
    # edges while acquiring: 1 the wire check, 2-3 the timing probe, 4-5 window 1, 6-7 window 2
    outcome, out, rig = energy_run(
        "kws01", tmp_path, models_dir, datasets, iterations=20, tweak=lambda r: drop_d7_edges(r, {7})
    )
    assert outcome.exit_code == EXIT_INVALID, outcome.message  # 20 inferences: short windows, otherwise complete
    rec = json.loads((out / "results.json").read_text())
    assert [w["window"] for w in rec["energy"]["windows"]] == [1, 2, 3, 4, 5]
    (rec_window2,) = rec["recoveries"]
    assert rec_window2["what"] == "window 2 (tst_000001_Left_2.bin)"
    assert "reported 1 of the 2 timestamp edges" in rec_window2["error"] and "repeating (1/1)" in rec_window2["action"]
    # window 2 is the repeat: its edges are the 8th and 9th
    assert rec["energy"]["windows"][1]["start_event"] == 7 and rec["energy"]["windows"][1]["end_event"] == 8


def test_lost_end_edge_twice_stops_keeping_what_was_done(models_dir, datasets, tmp_path):
    # window 2's end edge lost (7), and again in its repeat (9)
    outcome, out, rig = energy_run(
        "kws01", tmp_path, models_dir, datasets, iterations=20, tweak=lambda r: drop_d7_edges(r, {7, 9})
    )
    rec = check_stopped_run(
        outcome, out, "window 2 (tst_000001_Left_2.bin)", "'infer 20 1'",
        "reported 1 of the 2 timestamp edges", "D7",
    )
    # what was done is kept: window 1 measured, the trace saved up to the stop
    assert [w["window"] for w in rec["energy"]["windows"]] == [1]
    assert "Energy data for window 1 at time" in (out / "results.txt").read_text()
    trace = read_trace(out / "trace1-energy.bin")
    assert len(read_timestamps(out / "trace1-timestamps.json")) == 7
    assert len(trace.uj) == rec["energy_trace"]["samples"] > 0
    assert not rig.dut.powered  # the EMON still switched the DUT off


def test_broken_timestamp_wire(models_dir, datasets, tmp_path):
    outcome, out, _ = energy_run(
        "kws01", tmp_path, models_dir, datasets, iterations=20, tweak=lambda r: drop_d7_edges(r, set(range(1, 100)))
    )
    check_stopped_run(outcome, out, "'dut timestamp' (the check of the timestamp wire)", "reported 0 of the 1 timestamp edge")
    assert (out / "trace1-energy.bin").exists()


def test_emon_that_stops_streaming(models_dir, datasets, tmp_path):
    def cut_after_probe(rig):
        orig = rig.emon._send
        state = {"events": 0}

        def send(data):
            # events: the acquisition's start, the timing probe's two edges, the
            # window's first edge; after that the USB link is gone, the port
            # stays open. (Cut after the probe's last edge, the stream could
            # stop while the runner asks the EMON for the point the probe's
            # edges must have come by: the edge and the IO manager's
            # m-infer-done come over two ports, in either order.)
            if state["events"] >= 4:
                return
            state["events"] += data.count(b"event ")
            orig(data)

        rig.emon._send = send

    outcome, out, _ = energy_run(
        "kws01", tmp_path, models_dir, datasets, iterations=100, tweak=cut_after_probe, emon_stall_s=1.0
    )
    check_stopped_run(outcome, out, "window 1 (tst_000000_Stop_7.bin)", "stopped streaming: nothing received for")


def test_wrong_interface_is_named(models_dir, datasets, tmp_path):
    rig2 = build_rig("ad01", models_dir=models_dir, interface="arduino", speed="fast", dir=tmp_path / "rig2")
    rig2.start()
    try:
        o = run_energy(
            EnergyOptions(io_port=rig2.io_path, emon_port=rig2.emon_path, dataset=datasets, out=tmp_path / "o2",
                          interface="h573", progress=False)
        )
    finally:
        rig2.close()
    check_stopped_run(o, tmp_path / "o2", "--interface h573 was given but the board", "is the arduino IO manager")
    assert not rig2.dut.powered


def test_tinytwin_run_energy_command_against_a_rig_process(shared, models_dir, datasets, tmp_path):
    """``tinytwin rig`` in its own process, ``tinytwin run --mode energy`` against its ptys."""
    import signal
    import subprocess
    import sys
    import time

    tinytwin = [sys.executable, "-c", "from emulator.cli import main; main()"]
    rigdir = tmp_path / "rig"
    p = subprocess.Popen(
        tinytwin + ["rig", "--model", "ad01", "--dir", str(rigdir), "--models-dir", str(models_dir), "--speed", "fast"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ((rigdir / "io").exists() and (rigdir / "emon").exists()):
            if p.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"tinytwin rig did not start: {p.communicate(timeout=5)}")
            time.sleep(0.05)
        out = tmp_path / "ad" / "energy"
        args = ["run", "--mode", "energy", "--io-port", rigdir / "io", "--emon-port", rigdir / "emon",
                "--dataset", datasets, "--out", out, "--iterations", "10", "--interface", "arduino", "--voltage", "3.0"]
        r = subprocess.run(tinytwin + [str(a) for a in args], capture_output=True, text=True, timeout=300)
        assert r.returncode == EXIT_INVALID, r.stderr[-2000:]
        assert "ad01 energy on" in r.stdout and "uJ/inf." in r.stdout
        assert "NOT VALID for submission: window 1 ran 0.10" in r.stdout
        assert f"results in {out} (invalid)" in r.stderr
        assert {f.name for f in out.iterdir()} == {
            "log.txt", "results.txt", "results.json", "trace1-energy.bin", "trace1-timestamps.json", "trace1-energy.png",
        }
        # the same rig, asked again (the EMON was released, the DUT switched off)
        again = ["run", "--mode", "energy", "--io-port", rigdir / "io", "--emon-port", rigdir / "emon",
                 "--dataset", datasets, "--out", tmp_path / "o2", "--iterations", "10", "--windows", "1"]
        r = subprocess.run(tinytwin + [str(a) for a in again], capture_output=True, text=True, timeout=300)
        assert r.returncode == EXIT_INVALID, r.stderr[-2000:]
        rec = json.loads((tmp_path / "o2" / "results.json").read_text())
        assert rec["interface"] == "arduino" and len(rec["energy"]["windows"]) == 1
        assert rec["emon"]["voltage_v"] == 1.8  # the default: the reference's supply
        # energy mode without the EMON's port
        r = subprocess.run(tinytwin + ["run", "--mode", "energy", "--io-port", str(rigdir / "io"), "--dataset", str(datasets),
                                       "--out", str(tmp_path / "o3")], capture_output=True, text=True, timeout=60)
        assert r.returncode == EXIT_ERROR and "energy mode needs --emon-port" in r.stderr
        r = subprocess.run(tinytwin + ["run", "--mode", "performance", "--dataset", str(datasets), "--out", str(tmp_path / "o4")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == EXIT_ERROR and "--port is required in performance mode" in r.stderr
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
