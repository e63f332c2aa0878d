"""Energy mode, host side, without a bench: the LPM01A stream parser against
the twin's encoder and decoder, the energy-mode ``infer`` answer, the EMON
client's command/ack/error handling and silence detection over a scripted
serial port."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from emulator.emon.lpm01a.stream import (
    ACQUISITION_COMPLETED,
    PROMPT,
    end_record,
    event_record,
    format_ascii_value,
    parse_ascii_stream,
    summary_record,
    timestamp_record,
)
from runner.emon_lpm01a import AsciiStream, EmonError, Lpm01aClient, decode_sample
from runner.protocol import parse_energy_infer
from runner.errors import DeviceTimeout
from runner.protocol import ProtocolError


def encoded_stream(values, events_at=(), start=True, finish=True) -> bytes:
    """What the LPM01A sends for ``values`` (J), with D7 events before the
    given sample indices (the twin's own encoders)."""
    parts = [PROMPT + b"ack start\r\n"] if start else []
    n_ev = 0
    ev = sorted(events_at)
    for j, v in enumerate(values):
        if j % 1000 == 0:
            parts.append(timestamp_record("ascii_dec", j))
        while ev and ev[0] == j:
            ev.pop(0)
            n_ev += 1
            parts.append(event_record("ascii_dec", n_ev))
        parts.append(format_ascii_value(v) + b"\r\n")
    if finish:
        parts += [end_record("ascii_dec"), PROMPT + b"ack stop\r\n", summary_record(min(values), max(values)), ACQUISITION_COMPLETED]
    return b"".join(parts)


@pytest.mark.parametrize("chunk", [1, 9, 100, 4096, None])
def test_stream_parser_matches_the_twins_decoder(chunk):
    rng = np.random.default_rng(3)
    values = rng.uniform(20e-6, 60e-6, 5000)
    values[100] = 1.234e-9  # another exponent
    data = encoded_stream(values, events_at=(0, 7, 7, 2500, 4999))
    ref = parse_ascii_stream(data)
    s = AsciiStream()
    step = chunk or len(data)
    logged = []
    for i in range(0, len(data), step):
        logged += s.feed(data[i : i + step])
    assert s.count == len(ref.samples) == 5000
    assert np.array_equal(s.samples(), np.array(ref.samples))
    assert [(e.number, e.sample) for e in s.events] == ref.events
    assert [(ms, k) for ms, k in s.timestamps] == [(ms, k) for ms, _, k in ref.timestamps]
    assert s.ended and s.completed and not s.bad_lines
    assert s.summary == list(ref.summary)
    assert s.messages == ["PowerShield > ack start", "PowerShield > ack stop", "PowerShield > Acquisition completed"]
    # every line is handed to the log once, in order (samples included)
    text_lines = [ln for ln in data.replace(b"\0", b"").replace(b"\r", b"").decode().split("\n") if ln]
    assert logged == text_lines


def test_stream_parser_is_fast_enough_for_long_windows():
    """A vww01 window is 60 s = 60 000 samples; a whole vww01 run ~750 000."""
    values = np.full(300_000, 40.3e-6)
    data = encoded_stream(values, events_at=(10, 299_990))
    s = AsciiStream()
    t0 = time.perf_counter()
    for i in range(0, len(data), 8192):  # the chunks a reader thread gets
        s.feed(data[i : i + 8192])
    dt = time.perf_counter() - t0
    assert s.count == 300_000 and [e.sample for e in s.events] == [10, 299_990]
    assert s.samples()[10:299_990].sum() == pytest.approx(40.3e-6 * 299_980, rel=1e-9)
    assert dt < 2.0, f"parsing 300k samples took {dt:.2f} s"


def test_stream_parser_keeps_odd_lines_apart():
    data = (
        b"0123-06\r\n0456-06\r\n12x4-06\r\nsomething else\r\n\r\n"
        b"\x000789-06\r\nevent 1 ris\r\n1000-06\r\nend\r\nsummary begin\r\n0123-06\r\n1000-06\r\nsummary end\r\n"
        + ACQUISITION_COMPLETED
    )
    s = AsciiStream()
    s.feed(data[:30])
    s.feed(data[30:])
    assert s.samples().tolist() == pytest.approx([123e-6, 456e-6, 789e-6, 1000e-6], rel=1e-12)
    assert [(e.number, e.sample) for e in s.events] == [(1, 3)]
    assert s.bad_lines == [(2, "12x4-06")]
    assert "something else" in s.messages
    assert s.summary == pytest.approx([123e-6, 1000e-6], rel=1e-12)  # not taken for samples
    assert s.ended and s.completed



def test_stream_losses_show_between_the_boards_timestamps():
    """A sample line lost or garbled on the way shows as a shortfall between
    the board's TimeStamp records (1000 samples a second at 1 kHz), counted
    for the windows whose span overlaps that second."""
    values = np.full(5000, 40e-6)
    lines = encoded_stream(values, events_at=(500, 2500), start=False, finish=False).split(b"\r\n")
    sample_lines = [i for i, ln in enumerate(lines) if ln[:1].isdigit()]
    drop = set(sample_lines[1200:1203])  # 3 samples of the second second
    lines[sample_lines[3500]] = b"12x4-06"  # one garbled in the fourth
    s = AsciiStream()
    s.feed(b"\r\n".join(ln for i, ln in enumerate(lines) if i not in drop) + b"\r\n")
    assert s.count == 5000 - 4
    assert s.losses(0, 900, 1000) == (0, 0)  # the first second is whole
    assert s.losses(500, 2497, 1000) == (3, 0)  # the window of the two events
    assert s.losses(2600, 4000, 1000) == (1, 1)
    assert s.losses(4000, 4996, 1000) == (0, 0)  # after the last record: not checked

def test_decode_sample():
    assert decode_sample(b"6409-07") == pytest.approx(640.9e-6)
    assert decode_sample(b"1234+02") == 123400.0


def test_energy_infer_answer():
    ok = ["m-warmup-start-1", "m-warmup-done", "m-infer-start-100", "m-infer-done", "m-results-[0.000,0.761,0.234]"]
    results, notes = parse_energy_infer(ok, 100, 1)
    assert results == [0.0, 0.761, 0.234] and notes == []
    perf_fw = ok[:3] + ["m-lap-us-100", "m-lap-us-200"] + ok[3:]
    _, notes = parse_energy_infer(perf_fw, 100, 1)
    assert notes and "performance-mode firmware" in notes[0]
    with pytest.raises(ProtocolError, match="m-infer-done"):
        parse_energy_infer(ok[:3] + ok[4:], 100, 1)
    with pytest.raises(ProtocolError, match="m-results"):
        parse_energy_infer(ok[:4], 100, 1)
    with pytest.raises(ProtocolError, match="m-infer-start-100"):
        parse_energy_infer(ok, 10, 1)
    with pytest.raises(ProtocolError, match="error"):
        parse_energy_infer(["e-[Inference warmup must be >=0]"], 100, 1)


class FakeBoard:
    """A serial-port stand-in scripted like an LPM01A shell: every line
    written gets ``respond(line)`` back; ``push`` adds stream bytes."""

    def __init__(self, respond):
        self.respond = respond
        self._buf = bytearray()
        self._lock = threading.Condition()
        self.closed = False
        self.written: list[str] = []

    @property
    def in_waiting(self) -> int:
        with self._lock:
            return len(self._buf)

    def read(self, n: int) -> bytes:
        with self._lock:
            if not self._buf:
                self._lock.wait(0.05)
            out = bytes(self._buf[:n])
            del self._buf[:n]
            return out

    def push(self, data: bytes) -> None:
        with self._lock:
            self._buf += data
            self._lock.notify_all()

    def write(self, data: bytes) -> int:
        for line in data.decode().splitlines():
            self.written.append(line)
            reply = self.respond(line)
            if reply:
                self.push(reply)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def shell(line: str) -> bytes:
    if line.startswith("volt 9"):
        return PROMPT + f"error {line}\r\n".encode() + PROMPT + b"Error detail: voltage out of range\r\n"
    if line == "silent":
        return b""
    return PROMPT + f"ack {line}\r\n".encode()


def test_emon_client_commands_and_errors():
    board = FakeBoard(shell)
    logged = []
    c = Lpm01aClient("fake", lambda who, lines: logged.extend((who, ln) for ln in lines), timeout=0.5, opener=lambda p, b: board)
    c.open()
    try:
        assert c.command("freq 1k") == ""
        with pytest.raises(EmonError, match=r"refused 'volt 9000m': voltage out of range"):
            c.command("volt 9000m")
        with pytest.raises(DeviceTimeout, match="did not acknowledge 'silent'"):
            c.command("silent")
        with pytest.raises(EmonError, match="outside the LPM01A's range"):
            c.configure(5.0)
        assert ("host>emon", "freq 1k") in logged and ("emon", "PowerShield > ack freq 1k") in logged
    finally:
        c.close()


def test_emon_client_events_and_silence():
    board = FakeBoard(shell)
    c = Lpm01aClient("fake", timeout=0.5, stall_s=0.5, opener=lambda p, b: board)
    c.open()
    try:
        c.start()
        values = np.full(3000, 40e-6)
        data = encoded_stream(values, events_at=(100, 2100), start=False, finish=False)
        board.push(data[: len(data) // 2])
        # the first edge is in, the second not yet: giving up at a sample count
        assert not c.wait_events(2, until_sample=1200)
        board.push(data[len(data) // 2 :])
        assert c.wait_events(2, until_sample=10_000)
        assert [e.sample for e in c.events()] == [100, 2100]
        assert c.samples(100, 2100).sum() == pytest.approx(2000 * 40e-6)
        # then nothing more: the acquisition counts as stopped
        with pytest.raises(EmonError, match="stopped streaming: nothing received for"):
            c.wait_events(3)
    finally:
        c.close()


def test_default_supply_is_the_reference_boards(tmp_path):
    """1.8 V unless told otherwise, from `tinytwin run` and `python -m
    runner.energy` alike: the v0.5 reference runs' supply (m-voltage-mv[1800]);
    3.3 V for a streaming-wakeword run (mlcommons/tiny's devices_sww.yaml)."""
    import inspect

    from runner.cli import run_command
    from runner.energy import DEFAULT_VOLTAGE_V, EnergyOptions

    assert DEFAULT_VOLTAGE_V == 1.8
    assert EnergyOptions("io", "emon", Path("d"), Path("o")).supply_v() == DEFAULT_VOLTAGE_V
    assert EnergyOptions("io", "emon", Path("d"), Path("o"), voltage=3.0).supply_v() == 3.0
    assert EnergyOptions("io", "emon", Path("d"), Path("o"), truth="sww_short_test.json").supply_v() == 3.3
    assert inspect.signature(run_command).parameters["voltage"].default.default is None  # resolved as above
