"""``tinytwin conform`` against every twin bench, through real pseudo-terminals
opened with pyserial: the DUT's performance firmware (realtime, so that the
timing cases measure what a board would show) and its energy firmware, both
IO managers (without and with a DUT behind them) and the LPM01A. Each run
must pass every case that applies to the bench, and the cases that do not
apply must say why."""
from __future__ import annotations

import json
import time

import pytest

from emulator.benches.dut import build_dut_bench
from emulator.benches.rig import build_rig
from emulator.transport import PtyPort
from firmware_api_spec import load_spec, spec_path
from runner.conform import ConformOptions, run_conformance
from runner.conform.report import write_report
from runner.conform.session import DEVIATION, NA, PASS, SKIPPED

TIMER_WRAP = 2**32


def dut_twin(models_dir, model="kws01", speed="fast", energy=False, **kw):
    bench = build_dut_bench(model, models_dir=models_dir, speed=speed, energy_mode=energy, **kw)
    pty = bench.bridge.attach(PtyPort("dut", initial_baud=bench.dut.uart.baud))
    return bench, pty


def conform(port, profile, start=None, **kw):
    """Run the tester; ``start`` is called once the port is open (the twin then
    boots with the host listening, so its banner is seen)."""
    opts = ConformOptions(port=port, profile=profile, on_open=(lambda ser: start()) if start else None,
                          boot_wait=2.0 if start else 0.0, **kw)
    return run_conformance(opts)


def assert_all_pass(rep, *, allowed_na: dict[str, str] | None = None):
    bad = [(r.id, r.status, r.reason) for r in rep.results if r.status == DEVIATION]
    assert not bad, bad
    assert rep.pass_rate == 1.0
    assert not rep.breaking
    for r in rep.results:
        if r.status in (NA, SKIPPED):
            assert r.reason, r.id
    if allowed_na is not None:
        na = {r.id: r.reason for r in rep.results if r.status in (NA, SKIPPED)}
        unexpected = {k: v for k, v in na.items() if not any(word in v for word in allowed_na.get(k, "?").split("|"))}
        assert not unexpected, unexpected


def test_dut_performance_firmware_passes_every_case(models_dir, shared, tmp_path):
    bench, pty = dut_twin(models_dir, speed="realtime")
    try:
        rep = conform(pty.device, "dut", start=bench.twin.start, data=shared)
    finally:
        bench.twin.close()
    spec = load_spec()
    expected_na = {}
    for c in spec.cases:
        if c.model not in ("any", "kws01"):
            expected_na[c.id] = "the case is for"
        elif c.mode == "energy":
            expected_na[c.id] = "energy-mode firmware only"
        elif c.risky:
            expected_na[c.id] = "risky, opt-in"
    expected_na["timing_timer_wrap"] = "before its wrap"
    assert_all_pass(rep, allowed_na=expected_na)
    ran = {r.id for r in rep.results if r.status == PASS}
    assert ran == {c.id for c in spec.cases} - set(expected_na)
    assert rep.model == "kws01" and rep.baud == 115200 and rep.identity["build"] == "performance"
    assert rep.result("boot_banner_performance").status == PASS
    # the timing cases measured the board's own figures
    rate = rep.result("timing_timer_rate").measured["rate_board_us_per_host_us"]
    assert abs(rate - 1) < 0.05
    window = rep.result("timing_infer_window").measured
    assert window["per_inference_us"] == pytest.approx(bench.dut.timing.inference_us, rel=0.02)
    edges = rep.result("timing_lap_lines_at_window_edges").measured
    assert edges["between_laps_ms"] > 10 * max(edges["infer_start_to_first_lap_ms"], 1)
    busy = rep.result("timing_busy_firmware_drops_input").measured
    assert busy["then_answer"] == ["e-[Unknown command: n]", "m-ready"]
    # the report files
    js, md = write_report(rep, tmp_path)
    data = json.loads(js.read_text())
    assert data["summary"]["pass_rate"] == 1.0 and data["summary"]["deviation"] == 0
    text = md.read_text()
    assert "### " in text and "dut_protocol.md#51-name" in text and "-> name%" in text


def test_timer_wrap_is_measured_when_near(models_dir):
    bench, pty = dut_twin(models_dir, speed="realtime", timer_start_us=TIMER_WRAP - 2_500_000)
    try:
        rep = conform(pty.device, "dut", start=bench.twin.start, only=["timing_timer_wrap"])
    finally:
        bench.twin.close()
    r = rep.result("timing_timer_wrap")
    assert r.status == PASS, r.reason
    assert r.measured["after_wrap_us"] < r.measured["value_us"]
    assert r.measured["board_elapsed_mod_2_32_us"] == pytest.approx(r.measured["host_elapsed_us"], rel=0.05)


def test_dut_energy_firmware_passes_every_case(models_dir, shared):
    bench, pty = dut_twin(models_dir, energy=True)
    try:
        rep = conform(pty.device, "dut-energy", start=bench.twin.start, data=shared)
    finally:
        bench.twin.close()
    assert_all_pass(rep)
    assert rep.baud == 9600 and rep.identity["build"] == "energy"
    for case_id in ("boot_banner_energy", "timestamp_energy", "infer_runner_window_energy", "infer_energy_mode"):
        assert rep.result(case_id).status == PASS
    assert rep.result("timestamp_performance").status == NA


def test_dut_ad01_found_at_921600_baud(models_dir, shared):
    """Another model, found by the baud search; the timing cases (which need
    a realtime twin) are left out."""
    spec = load_spec()
    only = [c.id for c in spec.cases if not c.timing]
    bench, pty = dut_twin(models_dir, model="ad01")
    try:
        rep = conform(pty.device, "dut", start=bench.twin.start, data=shared, only=only)
    finally:
        bench.twin.close()
    assert_all_pass(rep)
    assert rep.baud == 921600 and rep.model == "ad01"
    # a quick look at 115200 first (AUTO_BAUD_WAIT_S), not the whole --timeout (5 s) of silence
    first, second = [ex for ex in rep.preamble if ex.kind == "sync"][:2]
    assert first.ended == "silence" and second.t_sent - first.t_sent < 2.0
    # the probe is never an empty command (undefined behaviour in the reference parser,
    # dut_protocol.md 5.10): name%
    assert {ex.sent for ex in rep.preamble if ex.kind == "sync"} == {b"name%"}
    for case_id in ("db_load_window_ad01", "infer_ad01_counts_floats", "infer_runner_window"):
        assert rep.result(case_id).status == PASS


def test_sww01_firmware_passes_every_case(sww01_engine):
    """The streaming-wakeword firmware on its own pty: every case passes, one
    command per write as the firmware's one-byte receive needs; the cases that
    play I2S audio (only an interface board can) do not apply and say so."""
    bench = build_dut_bench("sww01", engine=sww01_engine, speed="fast")
    pty = bench.bridge.attach(PtyPort("dut", initial_baud=bench.dut.uart.baud))
    try:
        rep = conform(pty.device, "sww01", start=bench.twin.start)
    finally:
        bench.twin.close()
    assert_all_pass(rep)
    spec = load_spec(spec_path("sww01_protocol.yaml"))
    audio = {c.id for c in spec.cases if any(isinstance(i, dict) and "i2s_frames" in i for i in c.setup)}
    assert audio and {r.id for r in rep.results if r.status == NA} == audio
    assert all("I2S audio" in rep.result(i).reason for i in audio)
    assert rep.count(PASS) == len(spec.cases) - len(audio)
    # the power-on state, not the allowed HAL_ERROR of a board that streamed before
    assert rep.result("state_idle").status == PASS and not rep.result("state_idle").allowed_as
    assert rep.identity["model"] == "sww01"


def _spec_of(profile):
    return load_spec(spec_path(profile.replace("-", "_") + ".yaml"))


def assert_statuses(rep, profile, not_run):
    """Every case passes, except the risky ones (skipped) and those for which
    ``not_run(case)`` names another status."""
    assert_all_pass(rep)
    for c in _spec_of(profile).cases:
        r = rep.result(c.id)
        want = SKIPPED if c.risky else (not_run(c) or PASS)
        assert r.status == want, (c.id, r.status, r.reason)


def _rig(models_dir, interface):
    return build_rig("kws01", models_dir=models_dir, interface=interface, speed="fast", dir=None)


def _power_dut(rig):
    """Power the DUT behind the IO manager and wait until its firmware runs
    (its banner goes to the IO manager before the tester opens the port)."""
    rig.start()
    rig.twin.call_soon(rig.dut.power_on)
    deadline = time.monotonic() + 10
    while not (rig.dut.powered and rig.dut.core.parser_enabled and rig.dut.state == "idle"):
        assert time.monotonic() < deadline, "the DUT did not boot"
        time.sleep(0.01)
    time.sleep(0.3)


@pytest.mark.parametrize("interface,profile", [("arduino", "ioman-arduino"), ("h573", "ioman-h573")])
def test_io_manager_without_a_dut(models_dir, interface, profile):
    rig = _rig(models_dir, interface)
    try:
        rep = conform(rig.io_path, profile, start=rig.start)
    finally:
        rig.close()
    assert_statuses(rep, profile, lambda c: NA if c.needs == "dut" else None)
    assert all("--with-dut" in rep.result(c.id).reason for c in _spec_of(profile).cases if c.needs == "dut")


@pytest.mark.parametrize("interface,profile", [("arduino", "ioman-arduino"), ("h573", "ioman-h573")])
def test_io_manager_with_the_dut_behind_it(models_dir, interface, profile):
    rig = _rig(models_dir, interface)
    try:
        _power_dut(rig)
        rep = conform(rig.io_path, profile, with_dut=True)
    finally:
        rig.close()
    # the board was on before the port was opened: no banner to check
    assert_statuses(rep, profile, lambda c: NA if c.boot else None)


def test_lpm01a_passes_every_case(models_dir):
    rig = _rig(models_dir, "arduino")
    try:
        rig.start()
        rep = conform(rig.emon_path, "lpm01a")
    finally:
        rig.close()
    assert_all_pass(rep)
    assert rep.count(PASS) == len(load_spec(spec_path("lpm01a.yaml")).cases)
    assert rep.identity["version"] == "ack version: 1.0.6"


def test_risky_cases_run_last_and_the_hang_is_reported(models_dir):
    bench, pty = dut_twin(models_dir)
    # the twin's host port keeps 1 MiB for a host that does not read; this host
    # reads the whole 2 MB SRAM dump, which a fast twin prints at once
    pty.max_pending = 8 << 20
    try:
        rep = conform(pty.device, "dut", start=bench.twin.start, include_risky=True,
                      only=["name", "db_hex_past_buffer_end", "db_print_past_sram"])
        assert bench.dut.hung
    finally:
        bench.twin.close()
    assert [r.status for r in rep.results] == [PASS, PASS, PASS]
    assert bench.dut.core.lost_writes == 4
    assert rep.result("db_print_past_sram").measured["answers_after"] is False
    # the board is asked whether it still answers with name%, never an empty command (5.10)
    assert [ex.sent for ex in rep.result("db_print_past_sram").exchanges if ex.kind == "probe"] == [b"name%"]
    assert any("stopped answering after db_print_past_sram" in n for n in rep.notes)
    assert any("risky cases ran" in n for n in rep.notes)


def test_h573_hang_is_opt_in(models_dir):
    rig = _rig(models_dir, "h573")
    try:
        rep = conform(rig.io_path, "ioman-h573", start=rig.start, include_risky=True,
                      only=["name", "setbaud_not_a_number_hangs"])
        assert rig.ioman.hung
    finally:
        rig.close()
    assert rep.result("setbaud_not_a_number_hangs").status == PASS
    assert any("stopped answering" in n for n in rep.notes)


def test_a_timer_that_restarts_early_is_caught(models_dir):
    """The dwt-timer variant (a cycle counter / 120 MHz) restarts every 35.8 s:
    started 1 s before that, the session's lap values go back long before 2^32."""
    from emulator.dut.device import DWT_MHZ

    restart_us = 2**32 // DWT_MHZ
    bench, pty = dut_twin(models_dir, speed="realtime", firmware_variant="dwt-timer",
                          timer_start_us=restart_us - 1_000_000)

    def after(result):
        if result.id == "timestamp_performance":
            time.sleep(1.5)  # past the restart

    try:
        rep = conform(pty.device, "dut", start=bench.twin.start, only=["timestamp_performance", "timing_timer_wrap"],
                      on_result=after)
    finally:
        bench.twin.close()
    r = rep.result("timing_timer_wrap")
    assert r.status == DEVIATION and r.breaks_runner, r.reason
    assert "restarted long before 2^32" in r.reason
    assert r.measured["restart_from_us"] > r.measured["restart_to_us"] and r.measured["host_between_s"] < 10
