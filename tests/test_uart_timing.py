"""When a UART's bytes reach the other side, in simulated ns, and what the
sender and the twin's busy count see meanwhile (emulator/hw/uart.py)."""
from __future__ import annotations

import pytest

from emulator.sim import S, Twin
from emulator.hw.uart import SerialEndpoint, connect


def pair(speed: str, split_after: bytes = b""):
    twin = Twin(speed)
    got: list[tuple[int, bytes, int]] = []  # (time, data, busy count)
    rx = SerialEndpoint(twin, "rx", 115200, split_after=split_after)
    rx.receiver = lambda data: got.append((twin.now, data, twin.busy_count))
    tx = SerialEndpoint(twin, "tx", 115200)
    connect(tx, rx)
    return twin, tx, rx, got


def char_ns(n: int) -> int:
    return round(n * 10 * S / 115200)


def test_segments_end_after_split_bytes_and_arrive_with_their_last_byte():
    twin, tx, _rx, got = pair("fast", split_after=b"%")
    done = tx.send(b"ab%cd%ef")
    assert twin.busy_count >= 1
    twin.run_until_idle()
    assert [(t, d) for t, d, _ in got] == [(char_ns(3), b"ab%"), (char_ns(6), b"cd%"), (char_ns(8), b"ef")]
    assert all(busy >= 1 for _, _, busy in got)  # bytes on the wire: busy
    assert done.processed and twin.busy_count == 0 and twin.now == char_ns(8)


def test_transmissions_queue_behind_each_other():
    twin, tx, _rx, got = pair("fast")
    tx.send(b"abc")
    tx.send(b"de")
    twin.run_until_idle()
    assert [(t, d) for t, d, _ in got] == [(char_ns(3), b"abc"), (char_ns(5), b"de")]


def test_realtime_pacing_delivers_each_byte_at_its_stop_bit():
    twin, tx, _rx, got = pair("realtime", split_after=b"%")
    tx.send(b"ab%")
    twin.run_until_idle()
    assert [(t, d) for t, d, _ in got] == [(char_ns(1), b"a"), (char_ns(2), b"b"), (char_ns(3), b"%")]


@pytest.mark.parametrize("speed", ["fast", "realtime"])
def test_receiver_has_the_last_byte_before_the_sender_continues(speed):
    twin, tx, _rx, got = pair(speed)
    seen: list[tuple[int, int]] = []

    def sender():
        yield tx.send(b"xyz")
        seen.append((twin.now, len(got)))

    twin.env.process(sender())
    twin.run_until_idle()
    assert seen == [(char_ns(3), 3 if speed == "realtime" else 1)]
    assert twin.busy_count == 0


def test_a_receiver_error_surfaces_and_the_sender_still_finishes():
    twin, tx, rx, _got = pair("fast")

    def broken(data):
        raise RuntimeError("receiver bug")

    rx.receiver = broken
    finished = []

    def sender():
        yield tx.send(b"x")
        finished.append(twin.now)

    twin.env.process(sender())
    with pytest.raises(RuntimeError, match="receiver bug"):
        twin.run_until_idle()
    twin.run_until_idle()
    assert finished == [char_ns(1)]
    assert twin.busy_count == 0
