"""The sww01 bench on real pseudo-terminals (emulator/benches/sww01.py through
``build_rig`` / ``build_dut_bench``) and our runner's streaming procedure
against it (runner/sww.py via ``tinytwin run``'s energy and performance modes):
the figures, the output folder, and bad input."""
from __future__ import annotations

import json
import re
import struct
import time
from pathlib import Path

import pytest
import serial

from emulator.benches.dut import build_dut_bench
from emulator.benches.rig import RigError, build_rig
from emulator.hw.sdcard import SdCardError
from runner.energy import EnergyOptions, run_energy
from runner.session import EXIT_ERROR, EXIT_INVALID, EXIT_OK

SHORT = "short_wav_easy10s.wav"
ACCURACY = "Accuracy: 2 True positives, 1 False negatives, 0 False positives"
#: the submission checker's sww patterns (tools/submission/submission_checker.py, 1afd2c9)
CHECKER = {
    "accuracy": r"Accuracy: ([\d]+) True positives, ([\d]+) False negatives, ([\d]+) False positives",
    "duty": r"Average duty cycle:\s*([\d\.]+)",
    "throughput": r"Estimated throughput:\s*([\d\.]+) inf\./sec\..*",
    "power": r"Power\s+: ([\d\.]+) mW.*",
}


@pytest.fixture(scope="module")
def engine(sww01_engine):
    return sww01_engine


@pytest.fixture(scope="module")
def sd_card(sww01_sd_card) -> Path:
    return sww01_sd_card


def rig_run(engine, sd_card, dataset, out, *, mode="energy", truth="sww_short_test.json", emon=True, faults=None,
            twin_kw=None, **kw):
    rig = build_rig("sww01", interface="h573", speed="fast", dir=None, sd_card=sd_card, engine=engine,
                    emon="lpm01a" if emon else None, **(twin_kw or {}))
    if faults:
        from emulator.control import FaultPlan

        FaultPlan.parse(faults).install(rig.control)
    rig.start()
    try:
        opts = EnergyOptions(io_port=rig.io_port.device, emon_port=rig.emon_port.device if emon else None,
                             dataset=dataset, out=out, progress=False, truth=truth, mode=mode, **kw)
        outcome = run_energy(opts)
    finally:
        rig.close()
    assert not rig.twin.errors, rig.twin.errors
    return outcome, rig


def wait_for(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "the twin did not get ready"
        time.sleep(0.005)


def checker_values(text: str) -> dict:
    found = {}
    for key, pat in CHECKER.items():
        for line in text.splitlines():
            m = re.search(pat, line)
            if m:
                found[key] = m.groups()
    return found


# ---------------------------------------------------------------- the bench itself


def test_rig_needs_the_h573_and_a_real_sd_card(engine, tmp_path):
    with pytest.raises(RigError, match="interface h573"):
        build_rig("sww01", interface="arduino", dir=None, engine=engine)
    with pytest.raises(SdCardError, match="no such directory"):
        build_rig("sww01", interface="h573", dir=None, engine=engine, sd_card=tmp_path / "nope")
    with pytest.raises(RigError, match="sww01"):
        build_rig("kws01", interface="h573", dir=None, sd_card=tmp_path)


def test_rig_lists_the_card_over_its_pty(engine, sd_card):
    rig = build_rig("sww01", interface="h573", speed="fast", dir=None, sd_card=sd_card, engine=engine)
    assert any("SD card" in line and str(sd_card) in line for line in rig.describe())
    rig.start()
    try:
        wait_for(lambda: rig.ioman.running)  # bytes sent while the board boots are lost, as on the board
        with serial.Serial(rig.io_path, 115200, timeout=2) as port:
            port.write(b"ls%")
            got = b""
            deadline = time.monotonic() + 10
            while not got.endswith(b"m-ready\r\n") and time.monotonic() < deadline:
                got += port.read(max(1, port.in_waiting))
    finally:
        rig.close()
    names = sorted(p.name for p in sd_card.iterdir() if p.is_file() and not p.name.startswith("."))
    assert got.decode() == "".join(n + "\r\n" for n in names) + "m-ready\r\n"


def test_dut_bench_serves_the_sww01_firmware(engine):
    bench = build_dut_bench("sww01", engine=engine, speed="fast")
    from emulator.transport import PtyPort

    port = bench.bridge.attach(PtyPort("dut", initial_baud=115200))
    bench.twin.start()
    try:
        assert bench.dut.uart.baud == 115200 and bench.dut.profile.name == "sww01"
        wait_for(lambda: bench.dut.state.value == "idle")  # booted: its main loop polls the UART
        with serial.Serial(port.device, 115200, timeout=2) as s:
            s.write(b"name%")
            got = b""
            deadline = time.monotonic() + 10
            while b"m-ready\r\n" not in got and time.monotonic() < deadline:
                got += s.read(max(1, s.in_waiting))
    finally:
        bench.twin.close()
    assert got == b"Received command: name\r\nm-name-dut-[ML Commons]\r\nm-ready\r\n"


# ---------------------------------------------------------------- our runner


@pytest.fixture(scope="module")
def energy_run(engine, sd_card, shared, tmp_path_factory):
    out = tmp_path_factory.mktemp("sww-energy") / "out"
    outcome, rig = rig_run(engine, sd_card, shared / "datasets", out)
    return outcome, out, rig


def test_energy_mode_gives_the_runners_figures(energy_run):
    outcome, out, rig = energy_run
    assert outcome.status == "complete" and outcome.exit_code == EXIT_OK, outcome.message
    text = (out / "results.txt").read_text()
    got = checker_values(text)
    assert got["accuracy"] == ("2", "1", "0")
    assert ACCURACY in text
    t = rig.dut.timing
    assert float(got["duty"][0]) == pytest.approx(t.frame_us / 32000, abs=0.001)
    assert float(got["throughput"][0]) == pytest.approx(1e6 / t.frame_us, rel=0.002)
    assert re.search(r"Average period: 0\.032 s", text)
    # upstream's own print of the window (main.py: the float as it is, a marker under 10 s)
    assert re.search(r"  Elapsed time  : 10\.\d+\n", text) and "below minimum duration" not in text
    # the energy window: D7 at 'start' to D7 at 'stop' = the played audio
    # (9.984 s: the last 4 KiB block is never played) plus what the sequence adds
    rec = json.loads((out / "results.json").read_text())
    st = rec["stream"]
    en = st["energy"]
    assert 9.984 + 0.25 < en["elapsed_s"] < 9.984 + 0.45
    power = float(got["power"][0])
    assert power == pytest.approx(en["power_mw"], rel=1e-4)
    # the power model at 3.3 V (devices_sww.yaml): idle between frames, 'infer' during them
    from emulator.power.model import PowerModel

    m = PowerModel.default()
    duty = st["dutycycle"]["duty_cycle"]
    expect = m.power_mw("idle", 3.3) * (1 - duty) + m.power_mw("infer", 3.3) * duty
    assert power == pytest.approx(expect, rel=0.01)
    assert rec["emon"]["voltage_v"] == 3.3 and rec["dut_baud"] == 115200


def test_energy_results_json_and_folder(energy_run):
    outcome, out, _ = energy_run
    assert sorted(p.name for p in out.iterdir()) == ["energy_inf_000.png", "log.txt", "results.json", "results.txt"]
    st = json.loads((out / "results.json").read_text())["stream"]
    assert st["wav_file"] == SHORT and st["detection_windows"][0] == [1.0, 1.6476250000000001]
    rel = st["detections_after_sync_s"]
    assert rel == pytest.approx([0.032 * k for k in list(range(43, 67)) + [156]], abs=1e-9)
    assert st["true_positives"] == [1.0, 4.0] and st["false_negatives"] == [7.0] and st["false_positives"] == []
    dc = st["dutycycle"]
    assert len(dc["start_times_s"]) == len(dc["stop_times_s"]) == 100  # the board's first 100 edges
    # the activation dump crosses the interface board's relay: a few bytes a
    # line are lost (its 100-byte queue, both UARTs at 115200, "[dut]: " added)
    # (a garbled value is replaced by the one before it, as upstream does)
    assert 300 <= len(st["activations"]) <= 312 and st["activations_garbled"] >= 1


def test_performance_mode_through_the_interface_board(engine, sd_card, shared, tmp_path, energy_run):
    outcome, _ = rig_run(engine, sd_card, shared / "datasets", tmp_path / "out", mode="performance", emon=False)
    assert outcome.exit_code == EXIT_OK, outcome.message
    text = (tmp_path / "out" / "results.txt").read_text()
    assert ACCURACY in text and "Power" not in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["log.txt", "results.json", "results.txt"]
    e_text = (energy_run[1] / "results.txt").read_text()
    # the same duty cycle and throughput as the energy run, to the interface
    # board's 10 us tick (where a frame starts on TIM2's tick grid is up to the host's timing)
    got, ref = checker_values(text), checker_values(e_text)
    assert float(got["duty"][0]) == pytest.approx(float(ref["duty"][0]), abs=1.01 / 3200)
    assert float(got["throughput"][0]) == pytest.approx(float(ref["throughput"][0]), rel=1.01 / 1815)
    assert "Average period: 0.032 s" in text


def test_a_start_answer_without_the_reference_text_is_a_warning(engine, sd_card, shared, tmp_path):
    # mlcommons/tiny's runner does not read the answer to 'start'; a vendor's firmware may print
    # another text: here the relayed 'DMA receive initiated.' line is lost on the way
    out = tmp_path / "out"
    outcome, _ = rig_run(engine, sd_card, shared / "datasets", out, mode="performance", emon=False,
                         faults="faults: [{do: drop-line, port: io, direction: to-host,"
                                " when: {after_line: '[dut]: Listening for I2S data ... ', port: io}}]")
    assert outcome.exit_code == EXIT_OK, outcome.message
    log = (out / "log.txt").read_text()
    assert "warning: the DUT's answer to 'start' was" in log and "going on, as mlcommons/tiny's runner does" in log
    assert ACCURACY in (out / "results.txt").read_text()


def test_a_dut_at_another_baud_gets_the_hint(engine, sd_card, shared, tmp_path):
    # a vendor's sww firmware at 9600 baud (ST's energy build): nothing the runner can read at 115200
    outcome, _ = rig_run(engine, sd_card, shared / "datasets", tmp_path / "out", mode="performance", emon=False,
                         twin_kw={"baud": 9600}, timeout=1.0)
    assert outcome.exit_code == EXIT_ERROR
    assert "a vendor's may not" in outcome.message and "--dut-baud" in outcome.message


def test_samples_lost_from_the_emon_make_the_stream_window_invalid(engine, sd_card, shared, tmp_path):
    # 20 sample lines lost right after the window's first edge: 0.19 % of its ~10,300 samples
    out = tmp_path / "out"
    outcome, _ = rig_run(engine, sd_card, shared / "datasets", out,
                         faults="faults: [{do: drop-line, port: emon, direction: to-host, count: 20,"
                                " when: {after_line: 'event 1 ris', port: emon}}]")
    assert outcome.exit_code == EXIT_INVALID, outcome.message
    en = json.loads((out / "results.json").read_text())["stream"]["energy"]
    assert en["samples_lost"] == 20 and not en["valid"]
    assert any(p.startswith("lost 20 of its") and "allows 0.1 %" in p for p in en["problems"]), en["problems"]
    text = (out / "results.txt").read_text()
    assert "Median energy cost" not in text and "ERROR: not valid for submission" in text
    assert "power" not in checker_values(text)  # the checker's sww pattern (check_power_dir) finds nothing


def test_a_wav_missing_from_the_card_is_named(engine, sd_card, tmp_path):
    ds = tmp_path / "ds" / "sww01"
    ds.mkdir(parents=True)
    (ds / "sww_med_test.json").write_text(json.dumps(
        [{"wav_file": "med_wav_2m_8p.wav", "length_sec": 120.0, "detection_windows": [[1.0, 2.0]]}]))
    outcome, _ = rig_run(engine, sd_card, tmp_path / "ds", tmp_path / "out", truth="sww_med_test.json")
    assert outcome.exit_code == EXIT_ERROR
    assert "med_wav_2m_8p.wav" in outcome.message and "not on the SD card" in outcome.message
    assert SHORT in outcome.message  # what the card does hold


def test_a_truth_file_without_detection_windows_gets_one_message(engine, sd_card, tmp_path):
    ds = tmp_path / "ds" / "sww01"
    ds.mkdir(parents=True)
    (ds / "sww_short_test.json").write_text(json.dumps([{"wav_file": SHORT, "length_sec": 10.0}]))
    outcome, _ = rig_run(engine, sd_card, tmp_path / "ds", tmp_path / "out", truth=None, mode="performance",
                         emon=False)
    assert outcome.exit_code == EXIT_ERROR
    assert "no 'detection_windows'" in outcome.message and "sww_short_test.json" in outcome.message


def test_a_bad_wav_on_the_card_is_the_boards_error(engine, tmp_path):
    card = tmp_path / "card"
    card.mkdir()
    (card / "mono.wav").write_bytes(b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
                                    + b"data" + struct.pack("<I", 0))
    ds = tmp_path / "ds" / "sww01"
    ds.mkdir(parents=True)
    (ds / "sww_x_test.json").write_text(json.dumps([{"wav_file": "mono.wav", "length_sec": 1.0, "detection_windows": []}]))
    outcome, _ = rig_run(engine, card, tmp_path / "ds", tmp_path / "out", truth=None, mode="performance", emon=False)
    assert outcome.exit_code == EXIT_ERROR
    assert "Error playing file. Check that the file exists and is a 2-channel wav file." in outcome.message


def test_the_sww01_bench_has_taps_and_a_control_channel(engine, sd_card):
    """Like every bench: a tap on each host port and the operations of
    `tinytwin ctl`; those the sww01 firmware has no counterpart for say so."""
    from emulator.control import ControlError

    rig = build_rig("sww01", interface="h573", speed="fast", dir=None, sd_card=sd_card, engine=engine)
    rig.start()
    try:
        assert set(rig.control.plugs) == {"io", "emon"}
        assert rig.io_port.hook is rig.control.plugs["io"].tap
        assert rig.control.call("power-cycle", off_ms=5)["done"] is False  # the LPM01A has not switched it on
        with pytest.raises(ControlError, match="sww01"):
            rig.control.call("hang")
        assert rig.control.call("drop-line", port="io", direction="to-host")["armed"] == {"drop-line": 1}
        assert "io" in rig.control.call("state")["ports"]
    finally:
        rig.close()


def test_the_h573_audio_clock_error_sets_the_frame_period(engine, sd_card, shared, tmp_path):
    """A real H573's audio clock is off (ST's v1.3 runs: 31.987 to 32.070 ms frames): -2000 ppm
    makes 32.064 ms, and the detections move with it."""
    base, _ = rig_run(engine, sd_card, shared / "datasets", tmp_path / "base", mode="performance", emon=False)
    slow, rig = rig_run(engine, sd_card, shared / "datasets", tmp_path / "slow", mode="performance", emon=False,
                        twin_kw={"h573_audio_ppm": -2000})
    assert base.exit_code == slow.exit_code == EXIT_OK, slow.message
    text = (tmp_path / "slow" / "results.txt").read_text()
    assert re.search(r"Average period: 0\.03206\d* s", text), text
    a = json.loads((tmp_path / "base" / "results.json").read_text())["stream"]["detections_after_sync_s"]
    b = json.loads((tmp_path / "slow" / "results.json").read_text())["stream"]["detections_after_sync_s"]
    assert len(a) == len(b) and b[-1] / a[-1] == pytest.approx(1 / (1 - 2000e-6), abs=2e-4)
    with pytest.raises(RigError, match="only it plays audio"):
        build_rig("kws01", interface="h573", dir=None, h573_audio_ppm=5.0)
