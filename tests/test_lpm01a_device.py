"""The LPM01A on the twin's clock: it powers a real DUT, sees its D7 pulses and
streams samples that integrate the DUT's simulated supply power exactly."""
from __future__ import annotations

import math
import time

import pytest
import serial

from emulator.benches.dut import load_engine
from emulator.dut.device import Dut
from emulator.dut.timing import timing_for
from emulator.emon.lpm01a import Lpm01a, parse_ascii_stream, parse_binary_stream
from emulator.sim import MS, S, Twin
from emulator.hw.uart import SerialEndpoint, connect
from emulator.transport import PtyPort

P = b"PowerShield > "


class EnergyBench:
    """A DUT in energy mode powered by an LPM01A; the host talks to the EMON
    through :meth:`emon_cmd` and to the DUT's UART (where the IO manager sits
    on the real bench) through :meth:`dut_cmd`. Everything runs in simulated
    time."""

    def __init__(self, model: str, models_dir, speed: str = "fast", **emon_kw):
        self.twin = Twin(speed)
        self.dut = Dut(self.twin, load_engine(model, models_dir), timing_for(model), energy_mode=True, powered=False)
        self.states: list[tuple[int, str]] = [(0, "off")]
        self.dut.state_listeners.append(lambda s, t: self.states.append((t, s)))
        self.emon = Lpm01a(self.twin, self.dut, **emon_kw)
        self.out = bytearray()
        self.emon.taps.append(self.out.extend)
        self.dut_out = bytearray()
        self.io = SerialEndpoint(self.twin, "io", self.dut.uart.baud, receiver=self.dut_out.extend)
        connect(self.io, self.dut.uart)

    def run(self, ns: float) -> None:
        self.twin.run_until_idle(self.twin.now + ns)

    def run_until(self, pred, limit_ns: float) -> None:
        env, deadline = self.twin.env, self.twin.now + limit_ns
        while not pred():
            if env.peek() > deadline:
                raise AssertionError("condition not met in simulated time")
            env.step()

    def emon_cmd(self, line: str, wait_ns: float = 2 * MS) -> bytes:
        mark = len(self.out)
        self.emon.host_input(line.encode() + b"\r\n")
        self.run(wait_ns)
        return bytes(self.out[mark:])

    def configure(self, *lines: str) -> None:
        for line in ("htc",) + lines:
            answer = self.emon_cmd(line)
            assert answer.startswith(P + b"ack " + line.encode()), (line, answer)

    def wait_for_boot(self, limit_ns: float = 1 * S) -> None:
        """Until the DUT's boot banner has ended with its m-ready (a command
        sent earlier meets a busy firmware: all but its first byte overrun)."""
        self.run_until(lambda: b"m-ready\r\n" in self.dut_out, limit_ns)

    def dut_cmd(self, text: str, limit_ns: float = 30 * S) -> str:
        mark = len(self.dut_out)
        self.io.send(text.encode() + b"%")
        self.run_until(lambda: b"m-ready\r\n" in self.dut_out[mark:], limit_ns)
        return self.dut_out[mark:].decode()

    # -- the reference integral, from the DUT's own state log ------------------
    def expected_energy_j(self, a: int, b: int) -> float:
        """Energy (J) drawn between ``a`` and ``b`` ns, integrating the power
        model over the recorded DUT states (the EMON output being on)."""
        model, v = self.emon.power_model, self.emon.voltage_v
        clock = self.dut.timing.clock_mhz
        total = 0.0
        for i, (t, s) in enumerate(self.states):
            t_next = self.states[i + 1][0] if i + 1 < len(self.states) else math.inf
            lo, hi = max(a, t), min(b, t_next)
            if hi > lo:
                total += model.power_w(s, v, clock) * (hi - lo) * 1e-9
        return total


@pytest.fixture
def kws(models_dir):
    return EnergyBench("kws01", models_dir)


def test_pwr_on_powers_the_dut_which_boots_and_pwr_off_cuts_it(kws):
    assert not kws.dut.powered and kws.dut.state == "off"
    kws.configure()
    assert kws.emon_cmd("pwr on") == P + b"ack pwr on\r\n"
    kws.run(500 * MS)
    assert kws.dut_out.decode().splitlines() == [
        "m-timestamp-mode-energy",
        "4 bytes lost due to alignment. To avoid this loss, please make sure the tensor_arena is 16 bytes aligned.",
        "m-init-done",
        "m-ready",
    ][-len(kws.dut_out.decode().splitlines()):]
    assert kws.dut_out.endswith(b"m-init-done\r\nm-ready\r\n")
    assert kws.dut.state == "idle"
    assert "m-name-dut-[unspecified]" in kws.dut_cmd("name")
    assert kws.emon_cmd("pwr get") == P + b"ack pwr get on\r\n"
    assert kws.emon_cmd("pwr off") == P + b"ack pwr off\r\n"
    assert not kws.dut.powered and kws.dut.state == "off"
    kws.dut_out.clear()
    kws.io.send(b"name%")
    kws.run(100 * MS)
    assert kws.dut_out == b""  # an unpowered board answers nothing
    assert kws.emon.power_now_w() == 0.0


def test_an_emon_switches_off_a_dut_built_powered(models_dir):
    twin = Twin("fast")
    dut = Dut(twin, load_engine("kws01", models_dir), timing_for("kws01"), energy_mode=True, powered=True)
    Lpm01a(twin, dut)
    assert not dut.powered  # the EMON's output is the board's only supply, and it starts off


@pytest.mark.parametrize(
    "freq, hz, output, fmt",
    [("1k", 1000, "energy", "ascii_dec"), ("10k", 10000, "current", "bin_hexa"), ("100", 100, "energy", "ascii_dec")],
)
def test_samples_integrate_the_dut_power_over_each_period(kws, freq, hz, output, fmt):
    kws.configure(f"freq {freq}", f"output {output}", f"format {fmt}", "acqtime inf", "trigdelay 0", "volt 2500m")
    kws.emon_cmd("start", wait_ns=0)
    kws.run(kws.emon.reply_latency_ns)
    t0 = kws.emon._acq.t0
    kws.run(300 * MS)  # pwr auto: start powered the DUT; boot, banner (tx), idle
    kws.dut_cmd("db load 490")
    kws.dut_cmd("db " + "7f" * 26)
    kws.dut_cmd("infer 2 1")  # busy, tx, infer, GPIO hold, ...
    kws.run(37 * MS + 123_457)  # not on a sample boundary
    t_stop = kws.twin.now + kws.emon.reply_latency_ns
    stream = kws.emon_cmd("stop", wait_ns=5 * MS)
    stream = bytes(kws.out)
    start = stream.index(P + b"ack start\r\n") + len(P + b"ack start\r\n")
    parsed = parse_binary_stream(stream[start:]) if fmt == "bin_hexa" else parse_ascii_stream(stream[start:])
    period = 10**9 // hz
    n = (t_stop - t0) // period
    assert len(parsed.samples) == n  # whole samples only; the partial last one is dropped
    assert parsed.ended and parsed.completed
    tol = 2e-3 if fmt == "bin_hexa" else 0.5e-3  # the encodings' resolution
    scale = 1.0 if output == "energy" else 1.0 / (kws.emon.voltage_v * period * 1e-9)
    levels = set()
    total = expected_total = 0.0
    for k, v in enumerate(parsed.samples):
        exp = kws.expected_energy_j(t0 + k * period, t0 + (k + 1) * period) * scale
        assert v == pytest.approx(exp, rel=tol, abs=1e-15), k
        total += v
        expected_total += exp
        levels.add(round(exp, 12))
    assert total == pytest.approx(expected_total, rel=tol)
    # boot, idle, busy/tx, infer and the mixed samples at the transitions
    assert len(levels) > 5
    # the summary's min and max are those of the samples
    assert parsed.summary == pytest.approx((min(parsed.samples), max(parsed.samples)), rel=tol)


def test_d7_falling_edges_become_event_markers_before_their_sample(kws):
    kws.configure("freq 1k", "output energy", "acqtime inf", "trigdelay 0", "pwr on")
    kws.wait_for_boot()
    kws.emon_cmd("start", wait_ns=0)
    kws.run(kws.emon.reply_latency_ns)
    t0 = kws.emon._acq.t0
    for _ in range(3):
        kws.run(7 * MS + 250_000)
        kws.dut_cmd("timestamp")
    kws.run(20 * MS)
    kws.emon_cmd("stop")
    falls = [t for t in kws.dut.timestamp_pin.falling_edges() if t >= t0]
    assert len(falls) == 3
    p = parse_ascii_stream(bytes(kws.out))
    assert p.events == [(i + 1, (t - t0) // MS) for i, t in enumerate(falls)]
    raw = bytes(kws.out)
    assert raw.count(b"\r\nevent 1 ris\r\n") == 1 and b"\r\nevent 3 ris\r\n" in raw


def test_eventsrc_rising_edge_marks_the_end_of_the_pulse(kws):
    kws.configure("freq 10k", "output energy", "acqtime 1", "trigdelay 0", "pwr on", "eventsrc d7 ris")
    kws.wait_for_boot()
    kws.emon_cmd("start", wait_ns=0)
    kws.run(kws.emon.reply_latency_ns)
    t0 = kws.emon._acq.t0
    kws.dut_cmd("timestamp")
    kws.run(1 * S)
    (t_fall, _), (t_rise, lv) = kws.dut.timestamp_pin.edges[-2:]
    assert lv == 1 and t_rise - t_fall == pytest.approx(kws.dut.timing.timestamp_hold_ns, abs=1)
    p = parse_ascii_stream(bytes(kws.out))
    assert p.events == [(1, (t_rise - t0) // (100 * 1000))]


def test_acqtime_ends_the_stream_and_pwrend_off_powers_down(kws):
    kws.configure("freq 1k", "output energy", "acqtime 250m", "trigdelay 0", "pwrend off")
    kws.emon_cmd("start")
    assert kws.dut.powered  # pwr auto
    kws.run(400 * MS)
    raw = bytes(kws.out)
    p = parse_ascii_stream(raw)
    assert len(p.samples) == 250
    assert p.timestamps == [(0, 0, 0)]
    assert raw.endswith(
        b"\r\nend\r\n\r\nsummary begin\r\n" + raw.split(b"summary begin\r\n")[1].split(b"summary end")[0]
        + b"summary end\r\n" + P + b"Acquisition completed\r\n"
    )
    assert b"ack stop" not in raw  # nobody sent stop
    assert not kws.dut.powered and not kws.emon.acquiring
    assert kws.emon_cmd("pwr get") == P + b"ack pwr get off\r\n"
    assert kws.emon_cmd("freq 100") == P + b"ack freq 100\r\n"  # configurable again


def test_timestamps_every_1000_samples(kws):
    kws.configure("freq 10k", "output current", "acqtime 1", "trigdelay 0")
    kws.emon_cmd("start")
    kws.run(1100 * MS)
    p = parse_ascii_stream(bytes(kws.out))
    assert len(p.samples) == 10000
    assert p.timestamps == [(100 * i, 0, 1000 * i) for i in range(10)]
    assert b"TimeStamp: 000s 900ms, buff 00%\r\n\x00" in bytes(kws.out)


def test_d7_trigger_starts_each_acquisition_after_trigdelay(kws):
    kws.configure("freq 1k", "output energy", "acqtime 20m", "trigsrc d7", "trigdelay 5m", "pwr on")
    kws.run(300 * MS)
    kws.out.clear()
    assert kws.emon_cmd("start", wait_ns=50 * MS) == P + b"ack start\r\n"  # armed, nothing streams
    for _ in range(2):
        kws.dut_cmd("timestamp")
        kws.run(100 * MS)
    rises = [t for t, lv in kws.dut.timestamp_pin.edges[-4:] if lv == 1]
    raw = bytes(kws.out)
    assert raw.count(b"\r\nend\r\n") == 2 and raw.count(P + b"Acquisition completed\r\n") == 2
    first = parse_ascii_stream(raw.split(b"\r\nend\r\n")[0])
    assert len(first.samples) == 20
    t0 = rises[0] + 5 * MS
    assert first.samples[0] == pytest.approx(kws.expected_energy_j(t0, t0 + MS), rel=5e-4)
    # still armed after acqtime; stop disarms
    assert kws.emon_cmd("freq 100").startswith(P + b"error freq 100")
    assert kws.emon_cmd("stop") == P + b"ack stop\r\n" + P + b"Acquisition completed\r\n"
    assert kws.emon_cmd("freq 100") == P + b"ack freq 100\r\n"


def test_targrst_power_cycles_the_dut(kws):
    kws.configure("pwr on")
    kws.run(300 * MS)
    kws.dut_out.clear()
    assert kws.emon_cmd("targrst 100m") == P + b"ack targrst 100m\r\n"
    assert not kws.dut.powered
    kws.run(99 * MS)
    assert not kws.dut.powered
    kws.run(400 * MS)
    assert kws.dut.powered and kws.dut_out.endswith(b"m-init-done\r\nm-ready\r\n")
    assert kws.emon_cmd("targrst 0") == P + b"ack targrst 0\r\n"
    kws.run(1 * S)
    assert not kws.dut.powered


def test_voltage_scales_the_measured_power(kws):
    kws.configure("pwr on", "volt 1800m")
    kws.run(300 * MS)
    p18 = kws.emon.power_now_w()
    kws.emon_cmd("volt 3300m")
    assert kws.emon.power_now_w() == pytest.approx(p18 * 3.3 / 1.8)


def test_over_a_pty_in_fast_mode_streaming_follows_wall_time(models_dir, tmp_path):
    """The mlcommons runner's sequence through a real pseudo-terminal; with
    only the EMON streaming, fast mode paces simulated time with wall time."""
    twin = Twin("fast")
    dut = Dut(twin, load_engine("kws01", models_dir), timing_for("kws01"), energy_mode=True, powered=False)
    emon = Lpm01a(twin, dut)
    port = emon.attach(PtyPort("emon", link=tmp_path / "emon"))
    twin.start()
    try:
        host = serial.Serial(str(tmp_path / "emon"), 3686400, timeout=0.1)
        got = bytearray()

        def talk(line: str, until: bytes, timeout: float = 5.0) -> bytes:
            mark = len(got)
            host.write(line.encode() + b"\r\n")
            deadline = time.monotonic() + timeout
            while until not in got[mark:]:
                assert time.monotonic() < deadline, (line, bytes(got[mark:]))
                got.extend(host.read(4096))
            return bytes(got[mark:])

        for line in ("htc", "pwr off", "acqtime inf", "trigdelay 0", "trigsrc sw", "eventsrc d7 fal",
                     "output energy", "format ascii_dec", "freq 1k", "volt 1800m", "pwr on nostatus"):
            assert P + b"ack " + line.encode() in talk(line, b"\r\n"), line
        time.sleep(0.3)
        assert dut.state == "idle"
        talk("start", P + b"ack start\r\n")
        t0 = time.monotonic()
        time.sleep(0.5)
        tail = talk("stop", b"Acquisition completed\r\n")
        wall = time.monotonic() - t0
        p = parse_ascii_stream(bytes(got))
        # about one sample per wall millisecond, not the thousands fast mode
        # would produce if the stream counted as busy
        assert 0.6 * wall * 1000 < len(p.samples) < 1.5 * wall * 1000 + 50
        assert p.samples and all(s == pytest.approx(p.samples[0], rel=1e-3) for s in p.samples)  # idle DUT
        assert p.samples[0] == pytest.approx(emon.power_model.power_w("idle", 1.8) * 1e-3, rel=1e-3)
        assert tail.index(b"\r\nend\r\n") < tail.index(b"Acquisition completed")
        host.close()
    finally:
        twin.close()


def test_pwr_status_frames_the_stream(kws):
    kws.configure("freq 100", "output energy", "acqtime 50m", "trigdelay 0", "pwr on status")
    kws.run(300 * MS)
    kws.out.clear()
    kws.emon_cmd("start", wait_ns=200 * MS)
    raw = bytes(kws.out)
    assert raw.startswith(P + b"ack start\r\n\r\npwr on\r\n\r\nTimeStamp: 000s 000ms, buff 00%\r\n\x00")
    assert b"\r\npwr on\r\n\r\nend\r\n" in raw
    assert len(parse_ascii_stream(raw).samples) == 5
