"""The control channel of a running twin (``tinytwin ctl``, fault plans):
every operation against a twin served through real pseudo-terminals, read
with real pyserial, and what the firmware does about it.

The DUT runs the small test engine of ``test_external`` (kws01's I/O, the
reference board's kws01 latency): what is tested is the bench and its
faults, not a model. Our runner's recovery from the same faults is in
``test_runner_faults.py``.
"""
from __future__ import annotations

import json
import os
import socket
import stat
import time
from pathlib import Path

import pytest
import serial
from typer.testing import CliRunner

from emulator.benches.external import open_bench
from emulator.benches.setups import BenchSetup
from emulator.control import ControlClient, ControlError, FaultPlan
from emulator.errors import ConfigError
from helpers import Host
from test_external import ECHO_TIMING, KWS01, EchoEngine

BANNER_END = ["m-init-done", "m-ready"]


def wait_for(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.fixture
def bench_factory(tmp_path):
    benches = []

    def make(setup: BenchSetup | None = None, **kw):
        b = open_bench(KWS01, setup=setup or BenchSetup(interface="none", firmware="performance", emon="none"),
                       engine=EchoEngine(), timing=ECHO_TIMING, **kw)
        benches.append(b)
        return b

    yield make
    for b in benches:
        b.close()


@pytest.fixture
def dut(bench_factory):
    """A running DUT bench, its control client and a host on its pty (opened after boot)."""
    bench = bench_factory()
    d = bench.objects["dut"]
    wait_for(lambda: d.state == "idle" and d.core.parser_enabled)
    client = ControlClient(bench.control_path)
    host = Host(serial.Serial(bench.sides[0].device, 115200, timeout=0.5))
    yield bench, client, host
    host.port.close()


def silent(port: serial.Serial, seconds: float = 0.6) -> bytes:
    port.timeout = seconds
    return port.read(4096)


# -- the DUT -----------------------------------------------------------------------------------


def test_state_through_the_control_socket(dut):
    bench, client, host = dut
    st = client.call("state")
    assert st["dut"]["powered"] and st["dut"]["state"] == "idle" and not st["dut"]["hung"]
    assert st["dut"]["firmware"] == "performance" and st["dut"]["supply"] == "usb"
    assert st["ports"]["dut"]["plugged"] and st["ports"]["dut"]["device"] == bench.sides[0].device
    assert st["sim_s"] > 0
    path = bench.control_path
    assert stat.S_ISSOCK(os.stat(path).st_mode) and stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_reset_reboots_the_dut_with_its_banner(dut):
    bench, client, host = dut
    assert host.command("name") == ["m-name-dut-[unspecified]", "m-ready"]
    r = client.call("reset")
    assert r["done"] and r["sim_s"] > 0
    banner = host.read_until_ready()
    assert banner[0] == "m-timestamp-mode-performance" and banner[-2:] == BANNER_END
    assert host.command("name") == ["m-name-dut-[unspecified]", "m-ready"]


def test_a_hung_dut_answers_nothing_until_reset(dut):
    bench, client, host = dut
    assert client.call("hang")["done"]
    host.port.write(b"name%")
    assert silent(host.port) == b""
    assert client.call("state")["dut"]["hung"]
    client.call("reset")
    banner = host.read_until_ready()
    assert banner[-2:] == BANNER_END
    assert host.command("name") == ["m-name-dut-[unspecified]", "m-ready"]
    assert host.command("db load 2") == ["m-[Expecting 2 bytes]", "m-ready"]


@pytest.mark.parametrize("op,args", [("power-cycle", {"off_ms": 50}), ("brown-out", {"ms": 0.5})])
def test_power_cycle_and_brown_out_reboot_the_dut(dut, op, args):
    bench, client, host = dut
    host.command("db load 2")
    assert client.call(op, **args)["done"]
    banner = host.read_until_ready()
    assert banner[0] == "m-timestamp-mode-performance" and banner[-2:] == BANNER_END
    # the RAM is gone with the supply: the buffer declared before is not there
    assert host.command("db 0b01") == ["m-ready"]


def test_unplugging_the_dut_removes_its_port_and_replugging_brings_a_new_one(dut):
    bench, client, host = dut
    old = bench.sides[0].device
    assert client.call("unplug", port="dut")["done"]
    with pytest.raises(serial.SerialException):
        host.port.timeout = 1
        host.port.write(b"name%")
        host.port.read(10)
    listing = json.loads((bench.inject_dir / "ports.json").read_text())
    assert listing["ports"] == []
    assert not bench.objects["dut"].powered  # its USB powered it
    r = client.call("replug", port="dut")
    assert r["done"] and r["device"] != ""
    listing = json.loads((bench.inject_dir / "ports.json").read_text())
    assert [p["device"] for p in listing["ports"]] == [r["device"]] and (old == r["device"] or not os.path.exists(old))
    d = bench.objects["dut"]
    wait_for(lambda: d.powered and d.state == "idle" and d.core.parser_enabled)
    with serial.Serial(r["device"], 115200, timeout=0.5) as s:
        assert Host(s).command("name") == ["m-name-dut-[unspecified]", "m-ready"]


def test_bytes_lost_or_garbled_on_the_way_to_the_dut(dut):
    bench, client, host = dut
    client.call("drop", port="dut", direction="to-board", count=1)
    assert host.command("name") == ["e-[Unknown command: ame]", "m-ready"]
    client.call("garble", port="dut", direction="to-board", count=1)
    ans = host.command("name")
    assert ans[-1] == "m-ready" and ans[0] != "m-name-dut-[unspecified]"
    # mlcommons/tiny#79: one hex digit of a db command lost on the way
    assert host.command("db load 2") == ["m-[Expecting 2 bytes]", "m-ready"]
    uart = bench.objects["dut"].uart
    before = uart.rx_bytes
    host.port.write(b"db ")
    wait_for(lambda: uart.rx_bytes >= before + 3)
    client.call("drop", port="dut", direction="to-board", count=1)
    host.port.write(b"0b01%")
    assert host.read_until_ready() == ["e-[Insufficent number of hex digits]", "m-ready"]
    tap = client.call("state")["ports"]["dut"]["tap"]["to-board"]
    assert tap["lost_bytes"] == 2 and tap["garbled_bytes"] == 1


def test_lines_lost_or_garbled_on_the_way_to_the_host(dut):
    bench, client, host = dut
    client.call("drop-line", port="dut", direction="to-host", count=1)
    assert host.command("name") == ["m-ready"]
    client.call("garble-line", port="dut", direction="to-host")
    host.port.write(b"name%")
    got = host.port.read_until(b"m-ready\r\n")
    want = b"m-name-dut-[unspecified]\r\nm-ready\r\n"
    assert len(got) == len(want) and sum(a != b for a, b in zip(got, want)) == 1
    # a lost command (to the board): the DUT never sees it
    client.call("drop-line", port="dut", direction="to-board")
    host.port.write(b"name%")
    assert silent(host.port) == b""
    assert host.command("name") == ["m-name-dut-[unspecified]", "m-ready"]


def test_delay_holds_bytes_back_by_the_usb_latency(bench_factory, tmp_path):
    trace = tmp_path / "wire.log"
    bench = bench_factory(trace=trace)
    d = bench.objects["dut"]
    wait_for(lambda: d.state == "idle" and d.core.parser_enabled)
    client = ControlClient(bench.control_path)
    client.call("delay", port="dut", direction="to-host", ms=40)
    with serial.Serial(bench.sides[0].device, 115200, timeout=0.5) as s:
        assert Host(s).command("name") == ["m-name-dut-[unspecified]", "m-ready"]
        client.call("delay", port="dut", direction="to-host", ms=0)
        assert Host(s).command("name") == ["m-name-dut-[unspecified]", "m-ready"]
    bench.close()
    rows = [ln.split(None, 4) for ln in trace.read_text().splitlines()[1:]]
    sent = [float(r[0]) for r in rows if r[3] == ">" and "name%" in r[4]]
    got = [float(r[0]) for r in rows if r[3] == "<" and "m-name-dut" in r[4]]
    assert len(sent) == 2 and len(got) == 2
    # 26 characters at 115200 baud take 2.3 ms; the delay adds 40 ms
    assert got[0] - sent[0] >= 0.040 and got[1] - sent[1] < 0.010



def test_a_delay_set_back_to_0_keeps_the_order_of_bytes_on_their_way(bench_factory):
    """Bytes still held back by a delay go out before bytes written after the
    delay was set back to 0 (a USB link does not reorder)."""
    bench = bench_factory()
    d = bench.objects["dut"]
    wait_for(lambda: d.state == "idle" and d.core.parser_enabled)
    client = ControlClient(bench.control_path)
    client.call("delay", port="dut", direction="to-host", ms=200)
    with serial.Serial(bench.sides[0].device, 115200, timeout=0.5) as s:
        s.write(b"name%")
        time.sleep(0.05)  # answered, and held on its way
        client.call("delay", port="dut", direction="to-host", ms=0)
        s.write(b"profile%")
        got = b""
        end = time.monotonic() + 2.0
        while time.monotonic() < end and got.count(b"m-ready") < 2:
            got += s.read(256)
    bench.close()
    assert got.index(b"m-name-dut") < got.index(b"m-profile-"), got

def test_timer_jump_to_near_the_wrap(dut):
    bench, client, host = dut
    r = client.call("timer", to_us=2**32 - 200_000)
    assert r["timer_us"] == 2**32 - 200_000
    lap = int(host.command("timestamp")[0][len("m-lap-us-"):])
    assert 2**32 - 200_000 <= lap < 2**32
    time.sleep(0.3)  # idle: simulated time follows the wall clock
    lap2 = int(host.command("timestamp")[0][len("m-lap-us-"):])
    assert lap2 < lap  # it wrapped
    with pytest.raises(ControlError, match="exactly one"):
        client.call("timer")
    # a reset restarts the timer from its power-on value, not from the jump
    client.call("reset")
    wait_for(lambda: bench.objects["dut"].state == "idle" and bench.objects["dut"].core.parser_enabled)
    host.port.reset_input_buffer()
    lap3 = int(host.command("timestamp")[0][len("m-lap-us-"):])
    assert lap3 < 5_000_000, lap3  # seconds since the reset, not near 2^32


def test_errors_name_the_fix(dut):
    bench, client, host = dut
    with pytest.raises(ControlError, match="no port 'emon' on this bench: choose one of dut"):
        client.call("drop", port="emon", direction="to-host")
    with pytest.raises(ControlError, match="direction must be to-host or to-board"):
        client.call("drop", port="dut", direction="sideways")
    with pytest.raises(ControlError, match="unknown operation 'explode'"):
        client.call("explode")
    with pytest.raises(ControlError, match="this bench has no LPM01A"):
        client.call("stream-emon")
    with pytest.raises(ControlError, match="cannot reach a running twin"):
        ControlClient(Path(bench.inject_dir) / "nothing-here").call("state")


def test_tinytwin_ctl_command(dut):
    bench, client, host = dut
    from emulator.cli import app

    r = CliRunner().invoke(app, ["ctl", "--socket", str(bench.control_path), "state"])
    assert r.exit_code == 0, r.output
    assert "state at " in r.output and '"powered": true' in r.output
    r = CliRunner().invoke(app, ["ctl", "--socket", str(bench.control_path), "drop", "dut", "to-board", "2"])
    assert r.exit_code == 0 and "drop at" in r.output
    assert host.command("name") == ["e-[Unknown command: me]", "m-ready"]
    r = CliRunner().invoke(app, ["ctl", "--socket", str(bench.control_path), "hang", "io"])
    assert r.exit_code == 2 and "this bench has no interface board" in r.stderr
    r = CliRunner().invoke(app, ["ctl", "ops"])
    assert r.exit_code == 0 and "stream-emon" in r.output and "js220-loss ms [in_ms=0.0]" in r.output


# -- fault plans -------------------------------------------------------------------------------


def test_fault_plan_fires_after_the_nth_command_and_at_a_time(bench_factory, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "faults:\n"
        "  - do: drop-line\n    port: dut\n    direction: to-host\n    when: {after_command: 3}\n"
        "  - do: hang\n    when: {after_line: m-ready, count: 4, port: dut}\n"
    )
    bench = bench_factory(faults=plan)
    d = bench.objects["dut"]
    wait_for(lambda: d.state == "idle" and d.core.parser_enabled)
    with serial.Serial(bench.sides[0].device, 115200, timeout=0.5) as s:
        host = Host(s)
        assert host.command("name") == ["m-name-dut-[unspecified]", "m-ready"]
        assert host.command("name") == ["m-name-dut-[unspecified]", "m-ready"]
        assert host.command("name") == ["m-ready"]  # the 3rd command's first line is lost
        assert host.command("name") == ["m-name-dut-[unspecified]", "m-ready"]  # its m-ready is the 4th: the DUT hangs
        s.write(b"name%")
        assert silent(s) == b""  # hung after it
    report = bench.plan.report()
    assert all("at " in line for line in report), report
    assert [h["op"] for h in bench.control.history] == ["drop-line", "hang"]


def test_fault_plan_errors_name_the_entry(tmp_path):
    cases = {
        "faults: [{do: explode}]": "fault #1: unknown operation 'explode'",
        "faults: [{do: drop, port: dut}]": "fault #1: drop: missing direction",
        "faults: [{do: reset, when: {at: 3}}]": "'when' takes at_s, after_command",
        "faults: [{do: reset, when: {after_command: 3}}]": "say which port to count on",
        "faults: [{port: dut}]": "needs 'do: <operation>'",
        "nothing: here": "expected a mapping with a list 'faults:'",
        "faults: [{do: reset, when: {at_s: -1}}]": "at_s must be >= 0",
        # values of the wrong type: refused at load, not when they fire (they crashed the simulation)
        "faults: [{do: drop, port: dut, direction: to-board, count: x, when: {after_command: 1}}]":
            "fault #1: drop: count must be an integer, got 'x'",
        "faults: [{do: delay, port: dut, direction: to-host, ms: soon}]": "delay: ms must be a number",
        "faults: [{do: reset, when: {at_s: .inf}}]": "at_s must be >= 0",
    }
    for text, message in cases.items():
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("'", "'")):
            FaultPlan.parse(text, tmp_path / "p.yaml")
    assert len(FaultPlan.parse("faults: [{do: reset}, {do: stream-emon, when: {at_s: 1}}]").faults) == 2


# -- the energy bench: interface board and LPM01A ----------------------------------------------


@pytest.fixture
def rig(bench_factory):
    bench = bench_factory(BenchSetup(interface="h573", firmware="energy", emon="lpm01a"))
    # booted: what a host sends the interface board before its menu runs is
    # lost, as on the board (a test that talks to it at once failed 1 run in 12)
    wait_for(lambda: bench.objects["rig"].ioman.running)
    yield bench, ControlClient(bench.control_path)


def _port(bench, name):
    return bench.control.plugs[name].port.device


def test_stale_emon_stream_and_our_runner_taking_control_again(rig):
    from runner.emon_lpm01a import Lpm01aClient

    bench, client = rig
    assert client.call("stream-emon")["acquiring"]
    st = client.call("state")["lpm01a"]
    assert st["acquiring"] and st["host_control"] and st["target_on"]
    time.sleep(0.3)
    with serial.Serial(_port(bench, "emon"), 3686400, timeout=0.5) as s:
        stale = s.read(2000)
    assert stale.count(b"\r\n") > 20 and b"PowerShield" not in stale  # samples, no answer to anything
    emon = Lpm01aClient(_port(bench, "emon"), timeout=3)
    emon.open()
    try:
        emon.connect()  # htc, sees the stream, stops it
        emon.configure(1.8)
        st = client.call("state")["lpm01a"]
        assert not st["acquiring"] and not st["target_on"]  # the DUT unpowered while the settings change
        emon.start()  # a fresh stream: the stale samples are not part of it
        wait_for(lambda: emon.stream.timestamps)
        assert emon.stream.timestamps[0] == (0, 0)
        emon.stop()
    finally:
        emon.close()


def test_lost_lpm01a_answer_is_reported_not_waited_for_forever(rig):
    from runner.emon_lpm01a import Lpm01aClient
    from runner.errors import DeviceTimeout

    bench, client = rig
    client.call("drop-line", port="emon", direction="to-host")
    emon = Lpm01aClient(_port(bench, "emon"), timeout=1.5)
    emon.open()
    try:
        emon.command("htc")  # a lost acknowledgement of an idempotent command: asked again
        client.call("drop-line", port="emon", direction="to-host", count=2)
        with pytest.raises(DeviceTimeout, match="did not acknowledge 'start'"):
            emon.command("start")
    finally:
        emon.close()


def test_a_hung_interface_board_recovers_by_unplugging_it(rig):
    bench, client = rig
    io = bench.objects["rig"].ioman
    io_old = _port(bench, "io")
    with serial.Serial(io_old, 115200, timeout=0.5) as s:
        assert Host(s).command("name") == ["tinyML Enhanced Interface Board", "m-ready"]
        client.call("hang", board="io")
        s.write(b"name%")
        assert silent(s) == b""
    client.call("unplug", port="io")
    assert not client.call("state")["io"]["powered"]
    new = client.call("replug", port="io")["device"]
    wait_for(lambda: io.running)
    with serial.Serial(new, 115200, timeout=0.5) as s:
        assert Host(s).command("name") == ["tinyML Enhanced Interface Board", "m-ready"]


def test_unplugging_the_lpm01a_cuts_the_duts_supply(rig):
    bench, client = rig
    with serial.Serial(_port(bench, "emon"), 3686400, timeout=1) as s:
        s.write(b"htc\npwr on\n")
        assert s.read_until(b"ack pwr on\r\n").endswith(b"ack pwr on\r\n")
    d = bench.objects["dut"]
    wait_for(lambda: d.powered)
    client.call("unplug", port="emon")
    assert not d.powered and not client.call("state")["lpm01a"]["powered"]
    client.call("replug", port="emon")
    st = client.call("state")["lpm01a"]
    assert st["powered"] and not st["host_control"] and not st["target_on"] and not d.powered


def test_control_tcp_only_when_asked(bench_factory):
    bench = bench_factory(control_tcp=("127.0.0.1", 0))
    host, port = bench.server.tcp_address
    assert host == "127.0.0.1"
    assert ControlClient(tcp=(host, port)).call("state")["dut"]["powered"] in (True, False)
    plain = bench_factory()
    assert all(s.family == socket.AF_UNIX for s in plain.server.socks)


def test_calls_run_in_the_thread_that_runs_the_loop():
    import threading

    from emulator.sim import Twin

    twin = Twin("fast")
    stop = threading.Event()
    t = threading.Thread(target=twin.run, args=(stop,))  # as `tinytwin rig` runs it: not start()
    t.start()
    try:
        wait_for(lambda: twin._loop_thread is t)
        assert twin.call(threading.current_thread) is t
    finally:
        stop.set()
        twin.wake()
        t.join(5)
        twin.close()
    assert twin.call(threading.current_thread) is threading.current_thread()  # no loop: here



def test_a_call_that_timed_out_does_not_run_later():
    """The caller of a call that timed out is told it failed (tinytwin ctl
    prints so): it must not then run when the loop gets to it (a retried
    reset would reset twice)."""
    import threading

    from emulator.sim import Twin

    twin = Twin("fast")
    stop = threading.Event()
    t = threading.Thread(target=twin.run, args=(stop,))
    t.start()
    ran = []
    try:
        wait_for(lambda: twin._loop_thread is t)
        twin.call_soon(lambda: time.sleep(0.6))  # the loop is busy for a while
        with pytest.raises(TimeoutError, match="it will not run later"):
            twin.call(lambda: ran.append("reset"), timeout=0.1)
        time.sleep(1.0)
        assert twin.call(lambda: "alive") == "alive" and ran == []
    finally:
        stop.set()
        twin.wake()
        t.join(5)
        twin.close()


def test_a_call_made_before_the_loop_runs_finishes_before_it_starts():
    """tinytwin rig's control socket is up before its loop runs: a call made
    then runs directly, and the loop must not start under it."""
    import threading

    from emulator.sim import Twin

    twin = Twin("fast")
    events: list[str] = []

    def slow_call():
        events.append("call start")
        time.sleep(0.3)
        events.append("call end")

    caller = threading.Thread(target=lambda: twin.call(slow_call))
    caller.start()
    wait_for(lambda: events)
    twin.call_soon(lambda: events.append("loop"))  # the loop's first turn runs it
    stop = threading.Event()
    loop = threading.Thread(target=twin.run, args=(stop,))
    loop.start()
    try:
        caller.join(5)
        wait_for(lambda: "loop" in events)
        assert events == ["call start", "call end", "loop"]
    finally:
        stop.set()
        twin.wake()
        loop.join(5)
        twin.close()

def test_tinytwin_rig_serves_its_control_socket(models_dir, tmp_path):
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator.cli", "rig", "--model", "kws01", "--models-dir", str(models_dir),
         "--dir", str(tmp_path), "--interface", "h573", "--emon", "js220", "--dut-usb", "--speed", "fast"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "ctl").exists() or proc.poll() is not None, timeout=60)
        st = ControlClient(tmp_path / "ctl").call("state")
        assert set(st["ports"]) == {"io", "js220", "dut"} and st["js220"]["powered"]
        assert st["dut"]["supply"] == "supply" and st["dut"]["powered"]  # the bench supply: on from the start
        assert (tmp_path / "io").is_symlink() and (tmp_path / "dut").is_symlink() and (tmp_path / "js220").exists()
        client = ControlClient(tmp_path / "ctl")
        client.call("unplug", port="dut")
        assert not (tmp_path / "dut").exists()
        client.call("replug", port="dut")
        assert (tmp_path / "dut").is_symlink()  # the same path, to the new pty
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "control: tinytwin ctl --socket" in out and "js220: driver link" in out
    assert not (tmp_path / "ctl").exists()



def test_a_socket_that_is_not_a_twins_gets_a_message_not_a_traceback(tmp_path):
    import threading

    from emulator.control.server import ControlClient

    path = tmp_path / "not-a-twin"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)

    def answer():
        conn, _ = srv.accept()
        conn.recv(1024)
        conn.sendall(b"HTTP/1.0 400 Bad Request\n")
        conn.close()

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    try:
        with pytest.raises(ControlError, match="is not the control channel's JSON"):
            ControlClient(str(path), timeout=2).call("state")
    finally:
        t.join(2)
        srv.close()
