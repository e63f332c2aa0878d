"""Conformance through a real serial device: every case of
firmware_api_spec/dut_protocol.yaml sent over a pseudo-terminal with pyserial
to a freshly booted twin (fast mode), and the boot banner of every model in
both modes.

"any" cases run on kws01 here (the pure core runs them for every model, see
test_spec_core.py); the model-specific cases run on their own model.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import serial

from firmware_api_spec import MissingData, load_spec

from emulator.benches.dut import build_dut_bench
from emulator.transport import PtyPort

SPEC = load_spec()
READY = b"m-ready"
QUIET_S = 0.05  # silence that ends an answer once its last m-ready has arrived
NO_ANSWER_S = 0.4  # how long a case expecting no output listens


class PtyDut:
    """A twin served on a pseudo-terminal, and a pyserial port opened on it."""

    def __init__(self, model: str, models_dir: Path, mode: str = "performance", speed: str = "fast"):
        self.bench = build_dut_bench(model, models_dir=models_dir, speed=speed, energy_mode=mode == "energy")
        baud = self.bench.dut.uart.baud
        self.pty = self.bench.bridge.attach(PtyPort("dut", initial_baud=baud))
        # open the device before the twin runs, so the banner is not flushed away
        self.port = serial.Serial(self.pty.device, baudrate=baud, timeout=0.02)
        self.bench.twin.start()

    def read_answer(self, ready_lines: int, timeout: float = 30.0, quiet: float = QUIET_S) -> bytes:
        """Read until ``ready_lines`` complete ``m-ready`` lines have arrived and
        the line has then stayed quiet for ``quiet`` s (for 0 lines: until a
        quiet period of NO_ANSWER_S)."""
        buf = bytearray()
        deadline = time.monotonic() + timeout
        last_rx = time.monotonic()
        while True:
            chunk = self.port.read(1)  # waits at most the port timeout
            if chunk and self.port.in_waiting:
                chunk += self.port.read(self.port.in_waiting)
            now = time.monotonic()
            if chunk:
                buf += chunk
                last_rx = now
            complete = bytes(buf).split(b"\r\n")[:-1]
            seen = sum(1 for line in complete if line == READY)
            if ready_lines == 0:
                if now - last_rx >= NO_ANSWER_S:
                    return bytes(buf)
            elif seen >= ready_lines and now - last_rx >= quiet:
                return bytes(buf)
            if now > deadline:
                raise TimeoutError(f"{seen}/{ready_lines} m-ready after {timeout} s; got {bytes(buf)!r}")

    def write(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def close(self) -> None:
        try:
            self.port.close()
        finally:
            self.bench.twin.close()
        assert not self.bench.twin.errors, self.bench.twin.errors


def pty_instances():
    out = []
    for case in SPEC.cases:
        model = "kws01" if case.model == "any" else case.model
        mode = "performance" if case.mode == "any" else case.mode
        out.append(pytest.param(case, model, mode, id=f"{case.id}[{model}-{mode}]"))
    return out


@pytest.mark.parametrize("case,model,mode", pty_instances())
def test_case_through_pty(case, model, mode, models_dir, shared):
    try:
        setup = case.setup_bytes(shared, model)
    except MissingData as exc:
        pytest.skip(str(exc))
    dut = PtyDut(model, models_dir, mode)
    sent = bytearray()  # everything the DUT's UART transmits
    dut.bench.dut.uart.tap = lambda direction, data, t: sent.extend(data) if direction == "tx" else None
    try:
        banner = dut.read_answer(1, quiet=0)  # anything after it shows up in the answer below
        SPEC.match(SPEC.banner(model, mode), banner, model, what=f"banner before {case.id}")
        if case.boot:
            out = banner
        else:
            for chunk in setup:
                dut.write(chunk)
                if b"%" in chunk:
                    dut.read_answer(1, quiet=0)  # one answer (a device may lose later commands: see uart_overrun_while_busy)
                else:
                    time.sleep(0.02)
            before = len(sent)
            dut.write(case.send_for(model))
            out = dut.read_answer(case.ready_count())
            if case.hangs:
                # a fast twin prints megabytes faster than any host reads them and
                # its port keeps the last MiB: check what the UART sent, and that
                # the hung firmware answers nothing more through the pty
                # (a loaded host can leave the twin's thread without CPU for longer
                # than the quiet period: wait, bounded, for the fault itself)
                deadline = time.monotonic() + 30
                while not dut.bench.dut.hung and time.monotonic() < deadline:
                    time.sleep(0.05)
                out = bytes(sent[before:])
                assert dut.bench.dut.hung
                # what the port still holds of the flood was sent before the
                # fault: read it away, so that what follows is the answer to
                # the next command only (on a loaded host the quiet period
                # above can end before the flood has been read)
                hung_at = len(sent)
                dut.read_answer(0)
                assert len(sent) == hung_at  # the UART sent nothing more meanwhile
                dut.write(b"name%")
                assert dut.read_answer(0) == b""
    finally:
        dut.close()
    case.check(out, model)
    assert SPEC.message_regex(model).fullmatch(out), out


@pytest.mark.parametrize("model", list(SPEC.models))
@pytest.mark.parametrize("mode", ["performance", "energy"])
def test_banner_through_pty(model, mode, models_dir):
    dut = PtyDut(model, models_dir, mode)
    try:
        out = dut.read_answer(1)
        assert dut.bench.dut.uart.baud == (SPEC.models[model]["perf_baud"] if mode == "performance" else SPEC.framing["energy_baud"])
        # the parser is on once m-ready is out
        dut.write(b"profile%")
        prof = dut.read_answer(1)
    finally:
        dut.close()
    SPEC.match(SPEC.banner(model, mode), out, model, what=f"banner ({mode})")
    SPEC.match(["m-profile-[{}]".format(SPEC.firmware["fw_version"]), "m-model-[{model}]", "m-ready"], prof, model)
