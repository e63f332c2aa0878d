"""Our runner against a twin whose bench fails on demand (fault plans and the
control channel of :mod:`emulator.control`), through real pseudo-terminals:
it recovers from what can be recovered (a garbled or lost exchange: resync
and repeat; a DUT that reset: identify it again and repeat; an unplugged
port that comes back at the same path: reopen it) and stops with a message
naming the cause otherwise (a hung DUT, a lost EMON), keeping what was done.

The DUT runs the test engine of ``test_external`` (kws01's I/O, the
reference board's kws01 latency) so the runs are short; the kws01 inputs are
the ground truth's. The same faults against mlcommons/tiny's runner are in
``test_external_mlcommons.py`` and ``firmware_api_spec/faults.md``.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from emulator.benches.dut import build_dut_bench
from emulator.benches.rig import build_rig
from emulator.benches.wiring import make_tap, pty_plug
from emulator.control import BenchControl, FaultPlan
from runner.energy import EnergyOptions, run_energy
from runner.session import EXIT_ERROR, EXIT_INVALID, RunOptions, run
from test_external import ECHO_TIMING, KWS01, EchoEngine


@pytest.fixture(scope="module")
def kws_dataset(shared) -> Path:
    return shared / "datasets"


def plan(text: str) -> FaultPlan:
    return FaultPlan.parse(text)


def wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


# -- performance mode: the DUT on its own USB ------------------------------------------------------


class DutBench:
    """The DUT alone behind a pty with a stable link (as /dev/serial/by-id/... on a host)."""

    def __init__(self, tmp: Path, faults: str | None = None):
        self.bench = build_dut_bench(KWS01, engine=EchoEngine(), timing=ECHO_TIMING)
        dut = self.bench.dut
        self.link = tmp / "dut"
        plug = pty_plug("dut", "l4r5zi", self.bench.bridge.attach, make_tap("dut"), link=self.link,
                        baud=dut.uart.baud, power=lambda on: dut.power_on() if on else dut.power_off())
        self.control = BenchControl(self.bench.twin, dut, {"dut": plug}, dut_supply="usb")
        self.plan = plan(faults) if faults else None
        if self.plan:
            self.plan.install(self.control)
        self.bench.twin.start()
        wait_for(lambda: dut.state == "idle" and dut.core.parser_enabled)

    def run(self, out: Path, dataset: Path, **kw):
        kw.setdefault("iterations", 10)
        kw.setdefault("timeout", 2.0)
        return run(RunOptions(port=str(self.link), mode="performance", dataset=dataset, out=out, progress=False, **kw))

    def close(self):
        self.bench.twin.close()


@pytest.fixture
def dut_bench(tmp_path):
    made = []

    def make(faults=None):
        b = DutBench(tmp_path, faults)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def record(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_a_garbled_byte_to_the_dut_is_repeated(dut_bench, kws_dataset, tmp_path):
    # mlcommons/tiny#79: one byte of a db command changed on its way
    b = dut_bench("faults: [{do: garble, port: dut, direction: to-board, when: {after_command: 30}}]")
    outcome = b.run(tmp_path / "out", kws_dataset)
    assert outcome.exit_code == EXIT_INVALID, outcome.message  # 10 inferences a window: short windows
    rec = record(tmp_path / "out")
    assert len(rec["performance"]["windows"]) == 5
    (r,) = rec["recoveries"]
    assert "resynchronising and repeating (1/1)" in r["action"]


def test_a_lost_m_ready_is_waited_for_then_resynced(dut_bench, kws_dataset, tmp_path):
    b = dut_bench("faults: [{do: drop-line, port: dut, direction: to-host, when: {after_line: m-ready, count: 25, port: dut}}]")
    outcome = b.run(tmp_path / "out", kws_dataset)
    assert outcome.exit_code == EXIT_INVALID, outcome.message
    (r,) = record(tmp_path / "out")["recoveries"]
    assert "timeout" in r["error"] or "no answer" in r["error"]


def test_a_reset_mid_run_is_recovered_by_identifying_the_dut_again(dut_bench, kws_dataset, tmp_path):
    b = dut_bench("faults: [{do: reset, when: {after_command: 40, port: dut}}]")
    outcome = b.run(tmp_path / "out", kws_dataset)
    assert outcome.exit_code == EXIT_INVALID, outcome.message
    rec = record(tmp_path / "out")
    assert len(rec["performance"]["windows"]) == 5
    assert any("the DUT reset (its boot banner came back)" in r["action"] for r in rec["recoveries"])
    log = (tmp_path / "out" / "log.txt").read_text()
    assert log.count("host: name%") >= 2 and "m-init-done" in log


def test_a_hung_dut_stops_the_run_with_the_fix_and_keeps_what_was_done(dut_bench, kws_dataset, tmp_path):
    b = dut_bench("faults: [{do: hang, when: {after_command: 60, port: dut}}]")
    outcome = b.run(tmp_path / "out", kws_dataset)
    assert (outcome.status, outcome.exit_code) == ("stopped", EXIT_ERROR)
    assert "the DUT has stopped (hung: press its RESET button" in outcome.message
    rec = record(tmp_path / "out")
    assert rec["status"] == "stopped" and rec["error"] == outcome.message
    assert 1 <= len(rec["performance"]["windows"]) < 5  # the windows done before the hang are kept
    assert "run stopped, results incomplete:" in (tmp_path / "out" / "results.txt").read_text()


def test_an_unplugged_port_that_comes_back_is_reopened(dut_bench, kws_dataset, tmp_path):
    # the twin pulls the cable at the 45th command itself (a thread watching
    # the command count could come too late: a fast twin may have finished
    # the run by then); the test plugs it in again half a second later
    b = dut_bench("faults: [{do: unplug, port: dut, when: {after_command: 45}}]")
    plug = b.control.plugs["dut"]

    def yank():
        wait_for(lambda: not plug.plugged, timeout=30)
        time.sleep(0.5)
        b.control.call("replug", port="dut")

    t = threading.Thread(target=yank, daemon=True)
    t.start()
    outcome = b.run(tmp_path / "out", kws_dataset)
    t.join(5)
    assert outcome.exit_code == EXIT_INVALID, outcome.message
    rec = record(tmp_path / "out")
    assert len(rec["performance"]["windows"]) == 5
    (r,) = rec["recoveries"]
    assert "the port went away" in r["error"] and "the port came back" in r["action"]


def test_an_unplugged_port_that_stays_away_is_reported(dut_bench, kws_dataset, tmp_path):
    b = dut_bench("faults: [{do: unplug, port: dut, when: {after_command: 45}}]")
    outcome = b.run(tmp_path / "out", kws_dataset, port_wait_s=1.0)
    assert (outcome.status, outcome.exit_code) == ("stopped", EXIT_ERROR)
    assert "the port went away: was the board unplugged" in outcome.message
    assert "did not come back within 1 s" in outcome.message



def test_a_shards_recovery_reaches_the_merged_record(tmp_path, models_dir):
    """--jobs 2 over two DUTs, a byte garbled on the second's way: the shard
    recovers, and the merged results.json records it as a serial run would;
    log.txt says which DUT each shard ran on."""
    from runner.synth import synthesize

    synthesize("kws01", tmp_path / "ds", 8, models_dir=models_dir, seed=4)
    a = DutBench(tmp_path / "a")
    b = DutBench(tmp_path / "b", "faults: [{do: garble, port: dut, direction: to-board, when: {after_command: 40}}]")
    try:
        outcome = run(RunOptions(port=f"{a.link},{b.link}", jobs=2, mode="accuracy", dataset=tmp_path / "ds",
                                 out=tmp_path / "out", progress=False, timeout=2.0))
    finally:
        a.close()
        b.close()
    assert outcome.exit_code == 0, outcome.message
    rec = record(tmp_path / "out")
    assert len(rec["recoveries"]) == 1 and "resynchronising and repeating" in rec["recoveries"][0]["action"]
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "shard 2/2" in log and "recovered:" in log and "DUT " in log

# -- energy mode: H573 + LPM01A ----------------------------------------------------------------


def energy_run(tmp: Path, dataset: Path, faults: str | None = None, interface: str = "h573", **kw):
    rig = build_rig(KWS01, interface=interface, dir=tmp / "rig", engine=EchoEngine(), timing=ECHO_TIMING)
    p = plan(faults) if faults else None
    if p:
        p.install(rig.control)
    rig.start()
    out = tmp / "out"
    try:
        kw.setdefault("iterations", 10)
        outcome = run_energy(EnergyOptions(io_port=rig.io_path, emon_port=rig.emon_path, dataset=dataset, out=out,
                                           progress=False, timeout=3.0, **kw))
    finally:
        rig.close()
    return outcome, out, rig


def test_energy_garbled_dut_command_is_repeated(kws_dataset, tmp_path):
    outcome, out, _ = energy_run(tmp_path, kws_dataset,
                                 "faults: [{do: garble-line, port: io, direction: to-board, when: {after_command: 40}}]")
    assert outcome.exit_code == EXIT_INVALID, outcome.message  # short windows, otherwise complete
    rec = record(out)
    assert len(rec["energy"]["windows"]) == 5
    (r,) = rec["recoveries"]
    assert "resynchronising the IO manager and repeating (1/1)" in r["action"]


def test_energy_lost_relayed_m_ready_is_resynced(kws_dataset, tmp_path):
    outcome, out, _ = energy_run(
        tmp_path, kws_dataset,
        "faults: [{do: drop-line, port: io, direction: to-host, when: {after_line: '[dut]: m-ready', count: 30, port: io}}]")
    assert outcome.exit_code == EXIT_INVALID, outcome.message
    (r,) = record(out)["recoveries"]
    assert "within 3.0 s" in r["error"] and "resynchronising the IO manager" in r["action"]


def test_energy_dut_reset_mid_run_behind_the_h573(kws_dataset, tmp_path):
    outcome, out, _ = energy_run(tmp_path, kws_dataset, "faults: [{do: reset, when: {after_command: 50, port: io}}]")
    assert outcome.exit_code == EXIT_INVALID, outcome.message
    rec = record(out)
    assert len(rec["energy"]["windows"]) == 5
    assert any("the DUT reset" in r["action"] for r in rec["recoveries"])
    assert (out / "log.txt").read_text().count("host>io: setbaud 9600%") >= 2  # the H573's stale queue emptied


def test_energy_stale_emon_stream_at_start(kws_dataset, tmp_path):
    outcome, out, _ = energy_run(tmp_path, kws_dataset, "faults: [{do: stream-emon}]")
    assert outcome.exit_code == EXIT_INVALID, outcome.message
    log = (out / "log.txt").read_text()
    assert "host>emon: htc" in log and log.index("host>emon: stop") < log.index("host>emon: volt 1800m")


def test_energy_stale_emon_stream_the_dut_boots_afresh(kws_dataset, tmp_path):
    # the earlier run left the DUT powered (at 3.3 V): switched off before the settings, it boots
    # again at 'pwr on' and the Arduino IO manager relays its banner
    outcome, out, _ = energy_run(tmp_path, kws_dataset, "faults: [{do: stream-emon}]", interface="arduino")
    assert outcome.exit_code == EXIT_INVALID, outcome.message  # short windows, otherwise complete
    log = (out / "log.txt").read_text()
    order = [log.index(f"host>emon: {c}") for c in ("stop", "pwr off", "volt 1800m", "pwr on")]
    assert order == sorted(order)
    assert "no boot banner" not in log
    assert "m-timestamp-mode-energy" in record(out)["dut"]["banner"]


def test_energy_lost_acquisition_completed(kws_dataset, tmp_path):
    outcome, out, _ = energy_run(
        tmp_path, kws_dataset,
        "faults: [{do: drop-line, port: emon, direction: to-host,"
        " when: {after_line: 'summary end', port: emon}}]")
    assert outcome.exit_code == EXIT_INVALID, outcome.message  # complete (short windows)
    assert "but the acquisition's 'end' record came" in (out / "log.txt").read_text()



def test_energy_samples_lost_from_the_emon_are_counted_and_judged(kws_dataset, tmp_path):
    # one sample line lost in window 1 (0.06 %: noted), five in window 2 (over the EnergyRunner's 0.1 %)
    outcome, out, _ = energy_run(
        tmp_path, kws_dataset,
        "faults: [{do: drop-line, port: emon, direction: to-host, when: {after_line: 'event 4 ris', port: emon}},"
        " {do: drop-line, port: emon, direction: to-host, count: 5, when: {after_line: 'event 6 ris', port: emon}}]")
    assert outcome.exit_code == EXIT_INVALID, outcome.message
    rows = record(out)["energy"]["windows"]
    assert [(r["start_event"], r["samples_lost"]) for r in rows] == [(4, 1), (6, 5), (8, 0), (10, 0), (12, 0)]
    assert not any("EMON samples" in p for p in rows[0]["problems"])
    assert any(p.startswith("lost 5 of its") and "allows 0.1 %" in p for p in rows[1]["problems"])
    assert "window 2 lost 5 of its" in (out / "results.txt").read_text()

def test_energy_emon_unplugged_stops_with_a_clear_message(kws_dataset, tmp_path):
    outcome, out, _ = energy_run(tmp_path, kws_dataset,
                                 "faults: [{do: unplug, port: emon, when: {after_command: 90, port: io}}]")
    assert (outcome.status, outcome.exit_code) == ("stopped", EXIT_ERROR)
    assert "EMON" in outcome.message and ("failed" in outcome.message or "stopped streaming" in outcome.message)
    rec = record(out)
    assert rec["status"] == "stopped" and len(rec["energy"]["windows"]) >= 1
    assert (out / "trace1-energy.bin").exists()  # the trace up to the stop is kept
