"""The sww01 DUT as a device on the clock (emulator/dut/sww01/device.py) behind
the H573 interface board, inside the simulation (no ptys, exact times): the
stream step's GPIO and timing, the profile's frame time and its calibration
from the firmware's own prints, a frame slower than 32 ms, the UART overrun,
the power states."""
from __future__ import annotations

import json

import numpy as np
import pytest

from emulator.dut.core import DutState
from emulator.dut.sww01 import core as C
from emulator.dut.sww01.device import Sww01Dut, Sww01Power
from emulator.dut.sww01.timing import ProfileError, Sww01Timing, calibrate_from_log, tim16_readings
from emulator.hw.i2s import I2sLink
from emulator.hw.sdcard import SdCard
from emulator.hw.uart import SerialEndpoint, connect
from emulator.ioman.device import H573IoManager
from emulator.power.model import PowerModel
from emulator.sim import MS, S, US, Twin
from runner.sww_metrics import detection_stats, duty_cycle

SHORT = "short_wav_easy10s.wav"
WINDOWS = [(1.0, 1.6476250000000001), (4.0, 4.76175), (7.0, 7.358625)]  # sww_short_test.json


@pytest.fixture(scope="module")
def engine(sww01_engine):
    return sww01_engine


@pytest.fixture(scope="module")
def card(sww01_sd_card):
    return SdCard(sww01_sd_card)


class Bench:
    """DUT + H573 + a host UART, all in one simulation."""

    def __init__(self, engine, card=None, timing: Sww01Timing | None = None, fixed=None):
        self.twin = Twin("fast")
        self.link = I2sLink(self.twin)
        self.dut = Sww01Dut(self.twin, engine, timing, link=self.link, fixed=fixed)
        self.io = H573IoManager(self.twin, flash_baud=115200, card=card, i2s=self.link)
        self.io.connect_dut(self.dut.uart)
        self.io.attach_ww_detection(self.dut.ww_pin)
        self.io.attach_dutycycle(self.dut.processing_pin)
        self.rx = bytearray()
        self.host = SerialEndpoint(self.twin, "host", 115200, receiver=self.rx.extend)
        connect(self.host, self.io.host_uart)
        self.twin.run_until_idle()

    def cmd(self, text: str) -> str:
        n = len(self.rx)
        self.host.send(text.encode())
        self.twin.run_until_idle()
        return bytes(self.rx[n:]).decode("latin-1")

    def stream(self, wav: str = SHORT) -> dict:
        out = {"stop0": self.cmd("dut stop%"), "start": self.cmd("dut start%")}
        out["t_start"] = self.twin.now
        out["record"] = self.cmd("record_detections%")
        out["play"] = self.cmd(f"play {wav}%")
        self.twin.run_until_idle(limit_ns=self.twin.now + 250 * MS)  # the runner's 0.25 s
        out["stop"] = self.cmd("dut stop%")
        return out


def test_the_stream_step_on_the_clock(engine, card):
    b = Bench(engine, card)
    t = b.dut.timing
    out = b.stream()
    assert "DMA receive initiated." in out["start"]
    assert out["play"].endswith("Attempting to play short_wav_easy10s.wav\nsucceeded.\nm-ready\r\n")
    assert b.dut.frames == 312 and b.dut.frames_dropped == 0 and b.dut.sai.lost_pairs == 0
    # detections: the sync pulse and the model's frames 43-66 and 156 (the pure chain's)
    det = b.io.core.detections
    rel = [d - det[0] for d in det[1:]]
    assert rel == [32 * k for k in list(range(43, 67)) + [156]]
    stats = detection_stats(det, WINDOWS)
    assert stats.accuracy_line() == "Accuracy: 2 True positives, 1 False negatives, 0 False positives"
    # duty cycle: the first 100 frames, 32 ms apart, high for the profile's frame time
    starts, stops = b.io.core.duty_starts, b.io.core.duty_stops
    assert len(starts) == len(stops) == 100
    assert set(np.diff(starts)) == {3200}
    high = [b_ - a for a, b_ in zip(starts, stops)]
    assert min(high) >= int(t.frame_us // 10) and max(high) <= int(t.frame_us // 10) + 1
    dc = duty_cycle(starts, stops)
    assert dc.period_s == pytest.approx(0.032, rel=1e-9)
    assert dc.duty_cycle == pytest.approx(t.frame_us / 32000, abs=0.0005)
    # the first frame ends 32 ms after the first sample, which comes PLAY_START after 'play'
    assert 60 <= starts[0] / 100 <= 75  # ms after record_detections (ST's board: 67.96 ms)
    # D7: one pulse at boot, one at start, one at stop
    falls = b.dut.timestamp_pin.falling_edges()
    assert len(falls) == 3 and falls[1] < out["t_start"]
    # every score of the activation log, 16 a line (as the relay passes them)
    assert len(b.dut.core.activations) == 312
    assert "Streaming stopped." in out["stop"] and "target activations: " in out["stop"]


def test_stop_after_the_clock_stopped_times_out_and_state_says_error(engine, card):
    b = Bench(engine, card)
    b.stream()
    assert "g_i2s_status=1, SAI state=1" in b.cmd("dut state%")  # HAL_SAI_DMAStop: SAIEN never cleared
    # stop while the interface still plays (sent straight to the DUT: the
    # interface's menu waits for the play): the SAI stops at the frame's end
    b.cmd("dut start%")
    b.host.send(b"play short_wav_easy10s.wav%")
    b.twin.run_until_idle(limit_ns=b.twin.now + 1000 * MS)
    assert b.link.clocking
    while b.dut.processing_pin.level:  # between two frames: the main loop polls
        b.twin.env.step()
    b.io.dut_uart.send(b"stop%")
    b.twin.run_until_idle(limit_ns=b.twin.now + 50 * MS)
    assert b.dut.core.state == C.State.IDLE and b.dut.core.i2s_status == C.HAL_OK


def test_the_stop_window_includes_the_dma_stop_timeout(engine, card):
    b = Bench(engine, card)
    b.cmd("dut start%")
    b.cmd("record_detections%")
    b.cmd(f"play {SHORT}%")
    t0 = b.twin.now
    b.host.send(b"dut stop%")
    b.twin.run_until_idle()
    d7 = b.dut.timestamp_pin.falling_edges()[-1]
    t = b.dut.timing
    # 'dut stop%' to the board (0.78 ms), its two lines back (2.95 ms, before it
    # forwards), 'stop%' to the DUT (0.43 ms), the echo line (24 bytes, 2.14 ms),
    # then HAL_SAI_DMAStop spins 4 ms before D7 falls
    uart = 0.78 + 2.95 + 0.43 + 24 * (86.8 + t.putchar_gap_us) / 1000
    assert (d7 - t0) / MS == pytest.approx(uart + t.dma_stop_timeout_us / 1000, abs=0.1)


def test_a_frame_slower_than_32_ms_overruns_the_sai(engine, card):
    slow = Sww01Timing.load()
    slow.invoke_us = 30_000.0  # 34.25 ms a frame
    b = Bench(engine, card, timing=slow)
    b.stream()
    starts = b.io.core.duty_starts
    periods = set(np.diff(starts))
    assert min(periods) > 3200  # the device, not the file, sets where frames start
    assert b.dut.sai.lost_pairs > 0
    assert b.dut.frames < 312


def test_run_model_and_extract_print_the_profile_and_calibrate_it_back(engine):
    fixed = C.FixedData(test_input_class0=bytes(1200), test_wav_marvin=np.zeros(16000, dtype=np.int16))
    prof = Sww01Timing.load()
    prof.invoke_us, prof.extract_us = 12_345.0, 3_210.0
    b = Bench(engine, timing=prof, fixed=fixed)
    log = b.cmd("dut run_model class0%") + b.cmd("dut extract 0%") + b.cmd("dut run_model class0%")
    reads = tim16_readings(log)
    assert [r.kind for r in reads] == ["th_ai_run", "th_compute_lfbe_f32", "th_ai_run"]
    assert [r.us for r in reads] == [12345, 3210, 12345]
    cal = calibrate_from_log(log, source="test log")
    assert (cal.invoke_us, cal.extract_us, cal.overhead_us) == (12345.0, 3210.0, prof.overhead_us)
    assert "MEASURED" in cal.data["provenance"]["frame.invoke_us"]


def test_calibration_takes_tim16_modulo_16_bits():
    log = ("TIM16: th_ai_run took (60000 : 8464) = 14000 TIM16 cycles\r\n"
           "TIM16: th_compute_lfbe_f32 took (65000 : 3464) = 4294905760 TIM16 cycles\r\n")
    cal = calibrate_from_log(log)
    assert (cal.invoke_us, cal.extract_us) == (14000.0, 4000.0)
    with pytest.raises(ProfileError, match="run_model class0"):
        calibrate_from_log("nothing timed here")


def test_profile_files_say_what_is_wrong(tmp_path):
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"name": "kernel", "params": {}}))
    with pytest.raises(ProfileError, match="no 'frame' section"):
        Sww01Timing.load(p)
    d = Sww01Timing.load().to_dict()
    d["frame"]["invoke_us"] = -1
    p.write_text(json.dumps(d))
    with pytest.raises(ProfileError, match="invoke_us"):
        Sww01Timing.load(p)
    with pytest.raises(ProfileError, match="not found"):
        Sww01Timing.load(tmp_path / "missing.json")
    t = Sww01Timing.load()
    assert "ESTIMATES" in t.data["provenance"]["summary"]
    assert Sww01Timing.from_dict(t.to_dict()).frame_us == t.frame_us


def test_a_command_that_straddles_a_frames_start_overruns_as_it_does_byte_by_byte(engine, card):
    # the DUT's UART gets a command in one segment, at its last byte's arrival;
    # 'n' and 'a' came while the main loop polled, 'm' after it stopped (kept
    # in the receive register), 'e' and '%' overran: as byte by byte
    def streaming() -> Bench:
        b = Bench(engine, card)
        b.cmd("dut start%")
        b.host.send(b"play short_wav_easy10s.wav%")
        b.twin.run_until_idle(limit_ns=b.twin.now + 200 * MS)
        return b

    b = streaming()
    rx = b.dut._rx  # the UART's receive register
    while not rx.polling:  # the main loop polls again
        b.twin.env.step()
    while rx.polling:  # until it stops (the next frame's interrupt)
        b.twin.env.step()
    start = rx.changed_at

    def run(byte_by_byte: bool):
        b = streaming()
        if byte_by_byte:
            b.io.dut_uart.per_byte = b.dut.uart.per_byte = True
        # its first stop bit 163 µs before the interrupt, its third 10.6 µs after
        b.twin.schedule(start - 250 * US - b.twin.now, lambda: b.io.dut_uart.send(b"name%"))
        b.twin.run_until_idle(limit_ns=start + 30 * MS)
        return b.dut.overrun_lost, bytes(b.dut.core._cmd)  # (the firmware's g_cmd_buf so far)

    assert run(False) == run(True) == (2, b"nam")


@pytest.mark.parametrize("command", [b"help%", b"db print%"])
def test_a_long_print_while_streaming_loses_no_frame(engine, card, command):
    # the main loop prints byte by byte; the DMA's interrupt preempts it
    # between two bytes, so every frame is processed in time (help: 0.8 kB of
    # lines; db print: one 6 kB line)
    b = Bench(engine, card)
    b.cmd("dut start%")
    dut_out = bytearray()
    b.io.dut_uart.receiver = lambda data: dut_out.extend(data)  # (what the DUT prints, before the board relays it)
    b.host.send(b"play short_wav_easy10s.wav%")
    b.twin.run_until_idle(limit_ns=b.twin.now + 1000 * MS)
    rx = b.dut._rx
    while not rx.polling:  # between two frames
        b.twin.env.step()
    b.io.dut_uart.send(command)
    b.twin.run_until_idle(limit_ns=b.twin.now + 11 * S)
    assert dut_out.endswith(b"m-ready\r\n") and len(dut_out) > 800
    assert b.dut.frames == 312 and b.dut.sai.lost_pairs == 0


def test_bytes_sent_while_a_frame_is_processed_overrun(engine, card):
    b = Bench(engine, card)
    b.cmd("dut start%")
    b.host.send(b"play short_wav_easy10s.wav%")
    b.twin.run_until_idle(limit_ns=b.twin.now + 200 * MS)
    # a command to the DUT straight on its UART while it streams: the bytes
    # that arrive during a frame's interrupt are lost but the first
    while not b.dut.processing_pin.level:  # up to the start of a frame's interrupt
        b.twin.env.step()
    b.io.dut_uart.send(b"name%")  # 0.43 ms of bytes, all during the 18 ms interrupt
    b.twin.run_until_idle(limit_ns=b.twin.now + 30 * MS)
    assert b.dut.overrun_lost == 4  # 'n' stays in the receive register, "ame%" is lost
    assert b.dut.commands == 1  # start; no "name" ever completes


def test_power_states_and_the_peripheral_term(engine, card):
    b = Bench(engine, card)
    seen = []
    b.dut.state_listeners.append(lambda s, t: seen.append(s))
    b.stream()
    assert DutState.INFER in seen and DutState.TX in seen and DutState.IDLE in seen
    base = PowerModel.default()
    t = Sww01Timing.load()
    assert Sww01Power(base, t).power_w("infer", 3.3) == base.power_w("infer", 3.3)
    t.peripherals_ua = 1000.0
    assert Sww01Power(base, t).power_w("idle", 3.3) == pytest.approx(base.power_w("idle", 3.3) + 3.3e-3)
    assert Sww01Power(base, t).power_w("off", 3.3) == 0.0


def test_power_off_floats_the_pins_high_and_loses_the_stream(engine, card):
    b = Bench(engine, card)
    b.cmd("dut start%")
    b.dut.power_off()
    assert all(p.level == 1 for p in b.dut.pins.values())
    assert not b.dut.sai.enabled
    b.dut.power_on()
    b.twin.run_until_idle()
    assert "I2S is already idle" in b.cmd("dut stop%")  # a fresh firmware


def test_calibrate_command_writes_a_profile_the_rig_takes(tmp_path):
    from typer.testing import CliRunner

    from emulator.cli import app

    log = tmp_path / "board.log"
    log.write_text("Received command: run_model class0\r\nIn run_model. about to run model\r\n"
                   "TIM16: th_ai_run took (100 : 15100) = 15000 TIM16 cycles\r\nOutput = [-128, 127, -128, ]\r\n"
                   "TIM16: th_compute_lfbe_f32 took (10 : 3010) = 3000 TIM16 cycles\r\n")
    out = tmp_path / "p.json"
    res = CliRunner().invoke(app, ["calibrate", "--sww01-log", str(log), "--out", str(out)])
    assert res.exit_code == 0, res.output
    t = Sww01Timing.load(out)
    assert (t.invoke_us, t.extract_us) == (15000.0, 3000.0)
    res = CliRunner().invoke(app, ["calibrate", "--sww01-log", str(out), "--out", str(tmp_path / "q.json")])
    assert res.exit_code == 2 and "run_model class0%" in res.output
