"""The energy rig through its pseudo-terminals, with real pyserial on the host
side: the IO managers' own commands, DUT passthrough, the energy-mode DUT.
(The EnergyRunner session replay is in test_rig_replay.py.)
"""
from __future__ import annotations

import re
import time

import pytest
import serial

from emulator.dut.core import MSG_READY
from emulator.benches.rig import build_rig


class Lines:
    """Line reader on a real serial port (what a host runner sees)."""

    def __init__(self, port: serial.Serial):
        self.port = port
        self.buf = b""
        self.seen: list[str] = []

    def write(self, text: str) -> None:
        self.port.write(text.encode())

    def until(self, pattern, timeout: float = 10.0) -> list[str]:
        """Lines up to and including the first that matches ``pattern`` (a
        regex, or a predicate on the line)."""
        match = pattern if callable(pattern) else re.compile(pattern).search
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                raw, self.buf = self.buf.split(b"\n", 1)
                line = raw.rstrip(b"\r").decode("latin-1")
                out.append(line)
                self.seen.append(line)
                if match(line):
                    return out
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line matching {pattern!r} within {timeout} s; got {out!r} + {self.buf!r}")
            self.port.timeout = min(left, 0.2)
            self.buf += self.port.read(max(1, self.port.in_waiting))

    def quiet(self, seconds: float) -> bytes:
        """Everything that arrives within ``seconds`` (expecting little or nothing)."""
        end = time.monotonic() + seconds
        got = self.buf
        self.buf = b""
        while time.monotonic() < end:
            self.port.timeout = max(0.0, min(0.05, end - time.monotonic()))
            got += self.port.read(max(1, self.port.in_waiting))
        return got

    def command(self, cmd: str, ack: str = r"^m-ready$", timeout: float = 10.0) -> list[str]:
        self.write(cmd + "%")
        return self.until(ack, timeout)


def power(rig, on: bool = True) -> None:
    """Switch the DUT's supply (what the EMON's ``pwr on``/``pwr off`` does)."""
    rig.twin.call_soon(rig.dut.power_on if on else rig.dut.power_off)


def wait_for(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.01)


@pytest.fixture
def make_rig(models_dir, tmp_path):
    """Build a rig, open its io port with pyserial, start it; returns (rig, io).

    The port is opened before the twin runs: pyserial flushes whatever arrived
    before it opened the port, so the Arduino's banner is read here, whole."""
    rigs = []

    def make(interface="arduino", **kw):
        kw.setdefault("emon", None)
        rig = build_rig("kws01", models_dir=models_dir, interface=interface, speed="fast", dir=tmp_path / interface, **kw)
        rigs.append(rig)
        io = Lines(serial.Serial(rig.io_path, 115200, timeout=0.2))
        rig.start()
        wait_for(lambda: rig.ioman.running)  # bytes sent to a booting board are lost
        if interface == "arduino":
            assert io.until(r"^m-ready$") == ["m-ver-IoTConnect IO Manager 1.0.3", "m-ready"]
        return rig, io

    yield make
    for r in rigs:
        r.close()


# --------------------------------------------------------------------------
# Arduino io-manager


def test_rig_makes_the_pty_symlinks(make_rig, tmp_path):
    rig, io = make_rig()
    link = tmp_path / "arduino" / "io"
    assert link.is_symlink() and rig.io_path == str(link)
    rig.close()
    assert not link.exists()


def test_arduino_name_version_and_errors(make_rig):
    rig, io = make_rig()  # the banner was checked there
    assert io.command("name") == ["m-name-io", "m-ready"]
    assert io.command("version") == ["m-version-1.0.3", "m-ready"]
    assert io.command("nosuch") == ["e-?nosuch", "m-ready"]


def test_arduino_passthrough_to_an_unpowered_dut_gets_no_answer(make_rig):
    rig, io = make_rig()
    assert io.command("dut name") == ["m-dut-passthrough(name)", "m-ready"]
    assert io.quiet(0.3) == b""


def test_arduino_dut_boot_name_and_profile(make_rig):
    rig, io = make_rig()
    power(rig)
    assert io.until(r"^\[dut\]: m-ready$") == [
        "[dut]: m-timestamp-mode-energy",
        "[dut]: 4 bytes lost due to alignment. To avoid this loss, please make sure the tensor_arena is 16 bytes aligned.",
        "[dut]: m-init-done",
        "[dut]: m-ready",
    ]
    assert io.command("dut name", ack=r"^\[dut\]: m-ready$") == [
        "m-dut-passthrough(name)",
        "m-ready",
        "[dut]: m-name-dut-[unspecified]",
        "[dut]: m-ready",
    ]
    assert io.command("dut profile", ack=r"^\[dut\]: m-ready$") == [
        "m-dut-passthrough(profile)",
        "m-ready",
        "[dut]: m-profile-[ULPMark for tinyML Firmware V0.0.1]",
        "[dut]: m-model-[kws01]",
        "[dut]: m-ready",
    ]
    assert rig.dut.uart.baud == 9600 and rig.ioman.dut_uart.baud == 9600


def test_energy_mode_timestamp_is_a_gpio_pulse_not_a_line(make_rig):
    rig, io = make_rig()
    power(rig)
    io.until(r"^\[dut\]: m-ready$")
    before = len(rig.dut.timestamp_pin.falling_edges())
    lines = io.command("dut timestamp", ack=r"^\[dut\]: m-ready$")
    assert lines == ["m-dut-passthrough(timestamp)", "m-ready", "[dut]: m-ready"]
    assert not any("m-lap-us" in ln for ln in io.seen)
    assert len(rig.dut.timestamp_pin.falling_edges()) == before + 1


def test_arduino_d3_timestamps_when_wired(make_rig):
    rig, io = make_rig(ioman_timestamp=True)
    power(rig)
    io.until(r"^\[dut\]: m-ready$")
    assert io.command("tm 0")[0] == "m-timestmp-mode-FALLING"
    assert io.command("enable-timer") == ["m-timer-enabled", "m-ready"]
    lines = io.command("dut timestamp", ack=r"^\[dut\]: m-ready$")
    laps = [ln for ln in lines if ln.startswith("m-lap-us-")]
    assert len(laps) == 1, lines
    edge_ns = rig.dut.timestamp_pin.falling_edges()[-1]
    # micros() since the UNO started, in its 4 µs steps
    expect = ((edge_ns - rig.ioman._boot_at) // 1000) & ~3
    assert int(laps[0][len("m-lap-us-"):]) == expect
    assert io.command("disable-timer") == ["m-timer-disabled", "m-ready"]
    lines = io.command("dut timestamp", ack=r"^\[dut\]: m-ready$")
    assert not any(ln.startswith("m-lap-us-") for ln in lines)


def test_host_at_the_wrong_baud_gets_garbage(make_rig):
    rig, io = make_rig()
    io.port.baudrate = 57600
    io.write("name%")
    got = io.quiet(0.5)
    assert b"m-name-io" not in got
    # back at 115200: the garbled characters are still in the board's command
    # buffer and make the next line an unknown command; then it answers
    io.port.baudrate = 115200
    io.port.reset_input_buffer()
    first = io.command("")
    assert first[0].startswith("e-?") and first[-1] == "m-ready"
    assert io.command("name") == ["m-name-io", "m-ready"]


def test_arduino_help_over_the_pty(make_rig):
    rig, io = make_rig()
    lines = io.command("help")
    assert lines[0].rstrip() == " help" and lines[-1] == "m-ready" and len(lines) == 15
    assert lines[5] == " dut               DUT passthrough"


# --------------------------------------------------------------------------
# STM32H573I-DK interface board


def test_h573_name_and_checkbaud(make_rig):
    rig, io = make_rig("h573")
    assert io.command("name") == ["tinyML Enhanced Interface Board", "m-ready"]
    assert io.command("checkbaud") == ["baud is: 9600", "m-ready"]
    assert io.command("ls") == ["m-ready"]


def test_h573_passthrough_relays_the_queued_banner_first(make_rig):
    rig, io = make_rig("h573")
    power(rig)
    time.sleep(0.3)  # the banner goes into the board's DUT queue; nothing to the host
    assert io.quiet(0.2) == b""
    # The queue keeps 100 bytes of the banner; the first passthrough relays
    # them up to the first m-ready it reads, which is the new command's: the
    # truncated banner line runs into the DUT's answer.
    banner = b"".join(op.text for op in rig.dut.core.boot_script() if hasattr(op, "text")) + MSG_READY
    kept = banner[:100].decode()
    first, rest = kept.split("\r\n", 1)
    assert "\r\n" not in rest
    assert io.command("dut name", ack=r"^\[dut\]: m-ready$") == [
        "m-dut-passthrough(name)",
        "m-ready",
        f"[dut]: {first}",
        f"[dut]: {rest}m-name-dut-[unspecified]",
        "[dut]: m-ready",
    ]
    # from then on, each passthrough gets its own answer
    assert io.command("dut profile", ack=r"^\[dut\]: m-ready$") == [
        "m-dut-passthrough(profile)",
        "m-ready",
        "[dut]: m-profile-[ULPMark for tinyML Firmware V0.0.1]",
        "[dut]: m-model-[kws01]",
        "[dut]: m-ready",
    ]
    assert rig.ioman.core.dut_rx.lost == len(banner) - 100


def test_h573_passthrough_when_the_dut_was_powered_before_the_board(make_rig):
    rig, io = make_rig("h573")
    # power-cycle the board after the DUT has booted: its queue starts empty
    power(rig)
    time.sleep(0.3)
    rig.twin.call_soon(rig.ioman.power_cycle)
    time.sleep(0.1)
    assert io.command("dut profile", ack=r"^\[dut\]: m-ready$") == [
        "m-dut-passthrough(profile)",
        "m-ready",
        "[dut]: m-profile-[ULPMark for tinyML Firmware V0.0.1]",
        "[dut]: m-model-[kws01]",
        "[dut]: m-ready",
    ]


def test_h573_setbaud_resets_and_a_wrong_baud_leaves_it_waiting(make_rig):
    rig, io = make_rig("h573")
    power(rig)
    time.sleep(0.3)
    rig.twin.call_soon(rig.ioman.power_cycle)  # start with an empty DUT queue
    time.sleep(0.1)
    assert io.command("setbaud 115200") == ["set baud to: 115200", "m-ready"]
    time.sleep(0.3)  # it resets
    assert rig.ioman.boots == 3 and rig.ioman.dut_uart.baud == 115200
    assert io.command("checkbaud") == ["baud is: 115200", "m-ready"]
    # the DUT still runs at 9600: it never sees a command, the board never
    # sees an m-ready line, and waits for it for good
    assert io.command("dut name")[-2:] == ["m-dut-passthrough(name)", "m-ready"]
    assert b"[dut]: m-ready" not in io.quiet(0.5)
    io.write("name%")
    assert io.quiet(0.3) == b""
    assert rig.ioman.core.awaiting_dut


def test_h573_flash_baud_survives_a_power_cycle(make_rig):
    rig, io = make_rig("h573", h573_flash_baud=9600)
    assert io.command("setbaud 19200")[0] == "set baud to: 19200"
    time.sleep(0.3)
    rig.twin.call_soon(rig.ioman.power_cycle)
    time.sleep(0.2)
    assert io.command("checkbaud") == ["baud is: 19200", "m-ready"]


# --------------------------------------------------------------------------
# `tinytwin rig`


def test_rig_command_serves_until_sigterm(models_dir, tmp_path):
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator.cli", "rig", "--model", "kws01", "--dir", str(tmp_path), "--interface", "h573",
         "--models-dir", str(models_dir), "--speed", "fast"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = []
        while not lines or lines[-1] != "Ctrl-C to stop":
            line = proc.stdout.readline()
            assert line, f"tinytwin rig ended early: {proc.stderr.read()}"
            lines.append(line.rstrip("\n"))
        assert lines[0].startswith("io (h573): /dev/pts/") and lines[0].endswith(f"(link {tmp_path / 'io'})")
        assert lines[1].startswith("emon (lpm01a): /dev/pts/") and lines[1].endswith(f"(link {tmp_path / 'emon'})")
        io = Lines(serial.Serial(str(tmp_path / "io"), 115200, timeout=0.2))
        wait_for(lambda: (io.write("name%"), io.quiet(0.2))[1] != b"", timeout=10)
        assert io.command("name") == ["tinyML Enhanced Interface Board", "m-ready"]
        io.port.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (tmp_path / "io").exists() and not (tmp_path / "emon").exists()


def test_rig_command_reports_a_bad_interface(models_dir, tmp_path):
    from typer.testing import CliRunner

    from emulator.cli import app

    r = CliRunner().invoke(app, ["rig", "--model", "kws01", "--dir", str(tmp_path), "--interface", "uno",
                                 "--models-dir", str(models_dir), "--speed", "fast"])
    assert r.exit_code == 2
    assert "unknown interface 'uno'" in r.stderr
