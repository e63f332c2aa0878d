"""The DUT on the simulated clock: UART timing, the CPU, the µs timer, power.

These drive the device inside the simulation (no wall clock) so the timing
assertions are exact; the transports are tested separately.
"""
from __future__ import annotations

import re
import time

import pytest
import serial

import emulator.urlhandler  # noqa: F401  (registers tinytwin://)
from emulator.benches.dut import build_dut_bench
from emulator.dut.timing import DutTiming
from emulator.sim import MS, S, US, Twin
from emulator.hw.uart import SerialEndpoint, char_ns, connect, resample

from helpers import Host, laps


class Collector:
    """A host at the other end of the DUT's UART, inside the simulation."""

    def __init__(self, bench):
        self.twin = bench.twin
        self.out = bytearray()
        self.times: list[tuple[int, bytes]] = []
        self.ep = SerialEndpoint(bench.twin, "host", bench.dut.uart.baud, receiver=self._rx)
        connect(self.ep, bench.dut.uart)

    def _rx(self, data: bytes) -> None:
        self.out += data
        self.times.append((self.twin.now, data))

    def send(self, text: str) -> None:
        self.ep.send(text.encode())
        self.twin.run_until_idle()

    def lines(self) -> list[str]:
        return self.out.decode("latin-1").split("\r\n")


@pytest.fixture
def kws_bench(models_dir):
    bench = build_dut_bench("kws01", models_dir=models_dir, speed="fast")
    host = Collector(bench)
    bench.twin.run_until_idle()
    return bench, host


def test_boot_banner_then_ready(kws_bench):
    bench, host = kws_bench
    lines = host.lines()
    assert lines[0] == "m-timestamp-mode-performance"
    assert lines[1].startswith("m-lap-us-")
    assert lines[2].startswith("4 bytes lost due to alignment.")  # TFLM, as on the board
    assert lines[3:5] == ["m-init-done", "m-ready"]


def test_uart_characters_take_ten_bit_times(kws_bench):
    bench, host = kws_bench
    host.out.clear()
    host.times.clear()
    t0 = bench.twin.now
    host.send("name%")
    # 5 characters in at 115200 baud, then 26 + 9 characters out
    ct = char_ns(115200)
    first_arrival = host.times[0][0]
    assert first_arrival - t0 >= 5 * ct + len(b"m-name-dut-[unspecified]\r\n") * ct - 1
    end = host.times[-1][0]
    total_chars = 5 + len("m-name-dut-[unspecified]\r\nm-ready\r\n")
    assert end - t0 == pytest.approx(total_chars * ct + bench.dut.timing.command_ns, abs=2 * US)


def test_window_contains_inferences_and_first_lap_line(kws_bench, shared):
    bench, host = kws_bench
    data = (shared / "datasets/kws01/tst_000000_Stop_7.bin").read_bytes()
    host.send(f"db load {len(data)}%")
    for i in range(0, len(data), 31):
        host.send(f"db {data[i:i+31].hex()}%")
    host.out.clear()
    host.send("infer 10 0%")
    l1, l2 = laps(host.lines())
    t = bench.dut.timing
    lap_line = len(f"m-lap-us-{l1}\r\n")
    expected = 10 * t.inference_us + t.timestamp_print_us + lap_line * char_ns(115200) / US
    assert l2 - l1 == pytest.approx(expected, abs=2)


def test_timer_wraps_after_2_pow_32_us(models_dir):
    bench = build_dut_bench("kws01", models_dir=models_dir, speed="fast", timer_start_us=2**32 - 1_000_000)
    host = Collector(bench)
    bench.twin.run_until_idle()
    host.out.clear()
    host.send("infer 10 0%")  # ~1.8 s: crosses the wrap
    l1, l2 = laps(host.lines())
    assert l2 < l1
    assert (l2 - l1) % 2**32 == pytest.approx(10 * bench.dut.timing.inference_us, rel=0.01)


def test_bytes_sent_while_busy_overrun(kws_bench):
    bench, host = kws_bench
    host.out.clear()
    host.ep.send(b"infer 2 0%")
    # while the DUT computes, the host sends a whole command: only its first
    # byte survives in the receive register
    bench.twin.step_until(bench.twin.now + 50 * MS)
    host.ep.send(b"name%")
    bench.twin.run_until_idle()
    text = host.out.decode()
    assert "m-name-dut" not in text
    assert bench.dut.overrun_lost == 4
    # the held 'n' is the start of the next command line
    host.out.clear()
    host.send("ame%")
    assert "m-name-dut-[unspecified]" in host.out.decode()


def _one_write(models_dir, data: bytes, energy: bool, byte_by_byte: bool):
    bench = build_dut_bench("kws01", models_dir=models_dir, speed="fast", energy_mode=energy)
    host = Collector(bench)
    if byte_by_byte:  # as at the board's pace (realtime): every byte its own delivery
        host.ep.per_byte = bench.dut.uart.per_byte = True
    bench.twin.run_until_idle()
    host.out.clear()
    host.send(data.decode())
    return bytes(host.out), bench.dut.overrun_lost


@pytest.mark.parametrize("energy", [False, True])
@pytest.mark.parametrize("tail", [3, 40, 60])
def test_a_tail_sent_with_a_command_overruns_as_it_does_byte_by_byte(models_dir, energy, tail):
    # In fast mode the UART hands the DUT a segment at its last byte's
    # arrival. The tail's bytes that came while the DUT answered 'name' met
    # a busy CPU, as they do one at a time: the first is kept, the rest lost.
    data = b"name%" + b"A" * tail + b"%"
    out, lost = _one_write(models_dir, data, energy, byte_by_byte=False)
    assert (out, lost) == _one_write(models_dir, data, energy, byte_by_byte=True)
    assert b"m-name-dut-[unspecified]" in out
    if tail == 60:  # longer than the answer: the tail's end is read, after the first A
        assert lost > 0 and re.search(rb"e-\[Unknown command: (A+)\]", out).group(1) == b"A" * (tail - lost)


def test_power_off_silences_and_power_on_boots_with_fresh_state(kws_bench):
    bench, host = kws_bench
    host.send("db load 10%")
    host.send("db 0102%")
    bench.dut.power_off()
    host.out.clear()
    host.send("name%")
    assert host.out == b""
    bench.dut.power_on()
    bench.twin.run_until_idle()
    assert host.lines()[0] == "m-timestamp-mode-performance"
    host.out.clear()
    host.send("db print%")
    assert host.out.decode() == "m-ready\r\n"  # the buffer size is 0 after reset


def test_baud_mismatch_garbles_like_a_uart():
    sent = b"name%"
    assert resample(sent, 115200, 115200) == sent
    assert resample(sent, 115200, 116000) == sent  # within tolerance
    garbled = resample(sent, 9600, 115200)
    assert garbled != sent and len(garbled) > len(sent)
    assert resample(sent, 115200, 9600) != sent


def test_energy_mode_timestamp_is_a_gpio_pulse(models_dir):
    bench = build_dut_bench("kws01", models_dir=models_dir, speed="fast", energy_mode=True)
    host = Collector(bench)
    bench.twin.run_until_idle()
    assert bench.dut.uart.baud == 9600
    lines = host.lines()
    assert lines[0] == "m-timestamp-mode-energy"
    assert lines[2:4] == ["m-init-done", "m-ready"]
    host.out.clear()
    edges_before = len(bench.dut.timestamp_pin.falling_edges())
    host.send("timestamp%")
    assert host.lines() == ["m-ready", ""]
    edges = bench.dut.timestamp_pin.edges
    assert len(bench.dut.timestamp_pin.falling_edges()) == edges_before + 1
    (t_low, lv0), (t_high, lv1) = edges[-2:]
    assert (lv0, lv1) == (0, 1)
    assert t_high - t_low == pytest.approx(bench.dut.timing.timestamp_hold_ns, abs=1)


@pytest.mark.slow
def test_realtime_window_wall_clock_matches_printed_delta(models_dir, shared):
    """Issue 3: in realtime mode a ~10 s window lasts what it prints, within 1%."""
    url = f"tinytwin://kws01?models_dir={models_dir}&speed=realtime&instance=rt-window"
    port = serial.serial_for_url(url, baudrate=115200, timeout=1)
    try:
        host = Host(port)
        data = (shared / "datasets/kws01/tst_000001_Left_2.bin").read_bytes()
        host.load(data)
        host.lines.clear()
        out = host.command("infer 55 0", timeout=30)
        l1, l2 = laps(out)
        stamped = [(t, x) for t, x in host.lines if x.startswith("m-lap-us-")]
        wall = stamped[1][0] - stamped[0][0]
        printed = (l2 - l1) / 1e6
        assert printed > 9.9
        assert abs(wall - printed) / printed < 0.01
    finally:
        port.close()
        emulator.urlhandler.protocol_tinytwin.shutdown_all()
