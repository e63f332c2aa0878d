"""Conformance through a real serial device: every case of
firmware_api_spec/sww01_protocol.yaml sent with pyserial over a
pseudo-terminal to a freshly powered sww01 twin (the device on the clock, fast
mode), as tests/test_spec_pty.py does for the EEMBC DUT. The ``i2s_frames``
setup items are played into the DUT's SAI over its I2S wires, each set
completing and being processed before the next setup item."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "firmware_api_spec"))

from dut_spec import SWW01_SPEC_PATH, MissingData, load_spec  # noqa: E402
from test_spec_pty import PtyDut  # noqa: E402

from emulator.sim import US  # noqa: E402

SPEC = load_spec(SWW01_SPEC_PATH)
MODEL = "sww01"
PAIRS_PER_FRAME = 512


class Frames:
    """``count`` DMA transfers of one repeated stereo pair, as an I2S stream."""

    def __init__(self, pair: bytes, count: int):
        self.pair = pair
        self.pairs = count * PAIRS_PER_FRAME

    def read(self, n0: int, count: int) -> bytes:
        return self.pair * count


def play_frames(dut: PtyDut, data: bytes, count: int) -> None:
    """Clock ``count`` transfers into the DUT's SAI and wait until they are served."""
    twin, dev = dut.bench.twin, dut.bench.dut
    pair = data[:4]
    assert data == pair * PAIRS_PER_FRAME
    stream = Frames(pair, count)
    duration = int(round(stream.pairs * 1e9 / 16000))

    def start():
        dev.link.start(stream, 16000.0)
        twin.schedule(duration + 10 * US, dev.link.stop, busy=True)  # fast mode: no wall time

    twin.call_soon(start)
    deadline = time.monotonic() + 30
    while dev.link.running or dev.link.sessions_played == 0 or dev.state.value != "idle":
        assert time.monotonic() < deadline, "the frames were not served"
        time.sleep(0.01)


def send_commands(dut: PtyDut, data: bytes, timeout: float = 30.0) -> bytes:
    """Send ``data`` one command (up to its ``%``) at a time, each after the
    previous answer's ``m-ready``, as every host of this firmware does: it
    reads its UART one byte at a time with no FIFO, so bytes that arrive while
    it prints an answer are lost (the core takes them all at once)."""
    out = bytearray()
    parts = data.split(b"%")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if last and not part:
            break
        dut.write(part if last else part + b"%")
        if last:  # no terminator: nothing is answered
            time.sleep(0.05)
            break
        buf = bytearray()
        deadline = time.monotonic() + timeout
        while not buf.endswith(b"m-ready\r\n"):
            assert time.monotonic() < deadline, f"no m-ready for {part!r}: {bytes(buf)!r}"
            chunk = dut.port.read(1)
            if chunk and dut.port.in_waiting:
                chunk += dut.port.read(dut.port.in_waiting)
            buf += chunk
        out += buf
    return bytes(out)


def wait_booted(dut: PtyDut) -> None:
    """The firmware prints nothing at reset; bytes sent while it boots are lost
    (as on the board), so wait for its main loop."""
    deadline = time.monotonic() + 10
    while dut.bench.dut.state.value != "idle":
        assert time.monotonic() < deadline, "the sww01 DUT did not boot"
        time.sleep(0.005)


def instances():
    return [pytest.param(c, id=c.id) for c in SPEC.cases]


@pytest.mark.parametrize("case", instances())
def test_case_through_pty(case, request, models_dir):
    if case.needs_model and not (models_dir / "sww01.tflite").is_file():
        pytest.skip("sww01.tflite is missing: run `tinytwin models download`")
    try:
        steps = case.setup_steps(None)
    except MissingData as exc:
        pytest.skip(str(exc))
    dut = PtyDut(MODEL, models_dir)
    try:
        wait_booted(dut)
        grouped: list[tuple[str, bytes, int]] = []
        for kind, data in steps:  # consecutive transfers of one setup item play as one stream
            if kind == "i2s" and grouped and grouped[-1][0] == "i2s" and grouped[-1][1] == data:
                grouped[-1] = ("i2s", data, grouped[-1][2] + 1)
            else:
                grouped.append((kind, data, 1))
        for kind, data, n in grouped:
            if kind == "uart":
                send_commands(dut, data)
            else:
                play_frames(dut, data, n)
                dut.read_answer(0)  # whatever the interrupt printed (an i2scap dump), then quiet
        out = send_commands(dut, case.send)
    finally:
        dut.close()
    case.check(out, MODEL)
    assert SPEC.message_regex(MODEL).fullmatch(out), out


def test_frames_helper_matches_the_spec_reader():
    case = next(c for c in SPEC.cases if c.id == "i2scap_finishes_after_one_frame")
    (_, data), = [s for s in case.setup_steps(None) if s[0] == "i2s"]
    assert list(np.frombuffer(data[:4], dtype="<i2")) == [1, -1]
    assert Frames(data[:4], 1).read(0, PAIRS_PER_FRAME) == data
