"""Transports: real pseudo-terminals, TCP, the tinytwin:// URL, and the CLI."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

import emulator.urlhandler  # noqa: F401
from emulator.benches.dut import build_dut_bench
from emulator.transport import PtyPort, TcpListener

from helpers import Host, wait_booted


@pytest.fixture
def pty_bench(models_dir, tmp_path):
    bench = build_dut_bench("kws01", models_dir=models_dir, speed="fast")
    port = bench.bridge.attach(PtyPort("dut", link=tmp_path / "dut", initial_baud=115200))
    bench.twin.start()
    wait_booted(bench)
    yield bench, tmp_path / "dut"
    bench.twin.close()


def test_pty_by_path_and_state_survives_reopen(pty_bench):
    bench, link = pty_bench
    with serial.Serial(str(link), 115200, timeout=2) as s:
        h = Host(s)
        assert h.command("name") == ["m-name-dut-[unspecified]", "m-ready"]
        h.command("db load 3")
        h.command("db 0a0b")
    # the host closed the port; the board keeps its state
    with serial.Serial(str(link), 115200, timeout=2) as s:
        h = Host(s)
        assert h.command("db 0c") == ["m-load-done", "m-ready"]
        assert h.command("db print")[:1] == ["m-buffer-a-b-c"]


def test_pty_wrong_host_baud_garbles(pty_bench):
    bench, link = pty_bench
    with serial.Serial(str(link), 9600, timeout=0.5) as s:
        s.write(b"name%")
        time.sleep(0.3)
        got = s.read(200)
    assert b"m-name-dut" not in got
    # back at the right baud, the board answers again (after resyncing with %)
    with serial.Serial(str(link), 115200, timeout=2) as s:
        h = Host(s)
        s.write(b"%")
        h.read_until_ready()
        assert h.command("name")[0] == "m-name-dut-[unspecified]"


def test_tcp_socket_url(models_dir):
    bench = build_dut_bench("kws01", models_dir=models_dir, speed="fast")
    listener = TcpListener("tcp", "127.0.0.1", 0, bench.bridge)
    bench.twin.add_port(listener)
    bench.twin.start()
    wait_booted(bench)
    try:
        host, port = listener.address
        with serial.serial_for_url(f"socket://{host}:{port}", timeout=2) as s:
            assert Host(s).command("profile") == [
                "m-profile-[ULPMark for tinyML Firmware V0.0.1]",
                "m-model-[kws01]",
                "m-ready",
            ]
    finally:
        bench.twin.close()


def test_url_scheme_reattaches_to_the_same_board(models_dir):
    url = f"tinytwin://ic01?models_dir={models_dir}&speed=fast&instance=reattach"
    try:
        with serial.serial_for_url(url, baudrate=115200, timeout=2) as s:
            h = Host(s)
            h.read_until_ready()  # boot banner ends with m-ready
            h.command("db load 2")
            h.command("db ff")
        with serial.serial_for_url(url, baudrate=115200, timeout=2) as s:
            assert Host(s).command("db ee") == ["m-load-done", "m-ready"]
    finally:
        emulator.urlhandler.protocol_tinytwin.shutdown_all()


def test_url_reopened_at_the_right_baud_is_understood_again(models_dir):
    url = f"tinytwin://kws01?models_dir={models_dir}&speed=fast&instance=rebaud"
    try:
        with serial.serial_for_url(url, baudrate=9600, timeout=0.5) as s:
            s.write(b"name%")
            time.sleep(0.2)
            assert b"m-name-dut" not in s.read(500)
        with serial.serial_for_url(url, baudrate=115200, timeout=2) as s:
            h = Host(s)
            s.write(b"%")
            h.read_until_ready()
            assert h.command("name")[0] == "m-name-dut-[unspecified]"
    finally:
        emulator.urlhandler.protocol_tinytwin.shutdown_all()


def test_url_scheme_bad_model_is_one_clear_error(tmp_path):
    with pytest.raises(serial.SerialException) as exc:
        serial.serial_for_url(f"tinytwin://kws01?models_dir={tmp_path}/nowhere")
    assert "models" in str(exc.value).lower()


def _tinytwin(*args, **kw):
    return subprocess.run([sys.executable, "-m", "emulator.cli", *args], capture_output=True, text=True, timeout=60, **kw)


def test_cli_dut_serves_a_pty_and_cleans_up_on_sigterm(models_dir, tmp_path):
    link = tmp_path / "t" / "dut"
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator.cli", "dut", "--model", "kws01", "--link", str(link),
         "--models-dir", str(models_dir), "--speed", "fast"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("dut: /dev/pts/"), first + proc.stderr.read()
        assert link.is_symlink()
        time.sleep(0.3)  # let it finish booting (opening mid-boot shows part of the banner, as on a board)
        with serial.Serial(str(link), 115200, timeout=2) as s:
            assert Host(s).command("name")[0] == "m-name-dut-[unspecified]"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0
    assert not link.exists()


def test_cli_errors_name_the_thing_and_the_fix(models_dir, tmp_path):
    r = _tinytwin("dut", "--model", "kws99", "--models-dir", str(models_dir))
    assert r.returncode != 0 and "kws99" in r.stderr and "Traceback" not in r.stderr
    r = _tinytwin("dut", "--model", "kws01", "--models-dir", str(tmp_path / "none"))
    assert r.returncode != 0 and "tinytwin models download" in r.stderr and "Traceback" not in r.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = _tinytwin("dut", "--model", "kws01", "--models-dir", str(models_dir), "--link", str(blocker / "dut"))
    assert r.returncode != 0 and "--link" in r.stderr and "Traceback" not in r.stderr
    r = _tinytwin("dut", "--model", "kws01", "--models-dir", str(models_dir), "--speed", "warp")
    assert r.returncode != 0 and "speed" in r.stderr


def test_a_second_twin_refuses_a_link_held_by_a_live_twin(models_dir, tmp_path):
    link = tmp_path / "dut"
    cmd = [sys.executable, "-m", "emulator.cli", "dut", "--model", "kws01", "--link", str(link),
           "--models-dir", str(models_dir), "--speed", "fast"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().startswith("dut: /dev/pts/")
        device = os.readlink(link)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert f"--link {link} belongs to a twin that is still running (process {first.pid}:" in second.stderr
        assert "Traceback" not in second.stderr
        assert os.readlink(link) == device  # the first twin keeps its link
        time.sleep(0.3)
        with serial.Serial(str(link), 115200, timeout=2) as s:
            assert Host(s).command("name")[0] == "m-name-dut-[unspecified]"
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=10)
    assert not link.exists()
    # a link left behind by a twin that is gone is taken over
    link.symlink_to("/dev/pts/999999")
    bench = build_dut_bench("kws01", models_dir=models_dir)
    port = bench.bridge.attach(PtyPort("dut", link=link))
    try:
        assert os.readlink(link) == port.device
    finally:
        bench.twin.close()


def _as_received(target: bytes, tx_baud: int, rx_baud: int) -> bytes:
    """Bytes that, sent at ``tx_baud`` (a multiple of ``rx_baud``), a UART at
    ``rx_baud`` decodes as ``target``: each of the receiver's bit samples
    falls in the middle of one of the sender's data bits."""
    k = tx_baud // rx_baud
    levels = []
    for b in target:
        levels += [0] + [(b >> i) & 1 for i in range(8)] + [1]
    wanted = {k // 2 + k * j: v for j, v in enumerate(levels)}
    frames = []
    for f in range((max(wanted) // 10) + 1):
        value = 0xFF
        for bit in range(8):
            if wanted.get(10 * f + 1 + bit) == 0:
                value &= ~(1 << bit)
        # a sample that falls on the sender's start or stop bit must want its level
        assert wanted.get(10 * f, 0) == 0 and wanted.get(10 * f + 9, 1) == 1
        frames.append(value)
    return bytes(frames)


@pytest.mark.parametrize("speed", ["fast", "realtime"])
def test_pty_at_a_wrong_baud_gets_garbage(models_dir, tmp_path, speed):
    """A host at 921600 on a 115200 DUT: what it sends arrives garbled, the
    DUT answers what it understood, and the answer arrives garbled (not
    silence), in every speed mode."""
    from emulator.hw.uart import resample

    probe = _as_received(b"%", 921600, 115200)
    assert resample(probe, 921600, 115200) == b"%"
    bench = build_dut_bench("kws01", models_dir=models_dir, speed=speed)
    bench.bridge.attach(PtyPort("dut", link=tmp_path / "dut", initial_baud=115200))
    received = []
    bench.dut.uart.tap = lambda direction, data, t: received.append(data) if direction == "rx" else None
    bench.twin.start()
    wait_booted(bench)
    try:
        with serial.Serial(str(tmp_path / "dut"), 921600, timeout=0.5) as s:
            s.write(probe)
            got = s.read(300)
        assert b"%" in b"".join(received)  # the DUT's UART decoded the terminator
        assert got and b"m-ready" not in got and b"Unknown" not in got  # its answer, garbled
        with serial.Serial(str(tmp_path / "dut"), 9600, timeout=0.5) as s:
            received.clear()
            s.write(b"name%")
            time.sleep(0.3)
            assert s.read(100) == b""  # a slower host's bits read as breaks: no '%', no answer
        assert set(b"".join(received)) == {0}
    finally:
        bench.twin.close()



def test_a_unix_socket_path_too_long_is_named_with_the_fix(tmp_path):
    """CI workspaces often have long TMPDIRs: AF_UNIX paths are limited to
    ~107 bytes, and the error (strerror None) said only 'None'."""
    from emulator.transport import TransportError
    from emulator.transport.unix import bind_unix

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with pytest.raises(TransportError, match=r"choose a shorter folder for it: TMPDIR for tinytwin external"):
        bind_unix(deep / "ctl", "the control socket")
