"""Fuzzing the interface boards' and the LPM01A's ports through real ptys:
random lines and bytes, the port closed and opened again, the host's baud
changed, a bounded number of times each (seeded, so a failure repeats).
Afterwards each board must answer correctly again once the host speaks
properly, and no buffer of the twin may have grown past its board's bound.
"""
from __future__ import annotations

import random
import time
from collections import deque

import pytest
import serial

from emulator.benches.rig import build_rig
from test_external import ECHO_TIMING, KWS01, EchoEngine

ROUNDS = 150
#: the largest buffer any part of the bench may hold (bytes or items)
BOUND = 1 << 16
BAUDS = (9600, 57600, 115200, 230400, 921600)


def sizes(obj, seen=None, path="", depth=0):
    """(path, size) of every bytes/bytearray/list/deque/dict reachable from
    ``obj``'s attributes (a few levels down)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 3:
        return
    seen.add(id(obj))
    for name, value in list(vars(obj).items()) if hasattr(obj, "__dict__") else []:
        where = f"{path}.{name}"
        if isinstance(value, (bytes, bytearray, list, deque, dict, str)):
            yield where, len(value)
        elif hasattr(value, "__dict__") and type(value).__module__.startswith("emulator"):
            yield from sizes(value, seen, where, depth + 1)


def fuzz(path: str, baud: int, ends: bytes, rng: random.Random, rounds: int) -> None:
    port = serial.Serial(path, baud, timeout=0)
    words = [b"name", b"dut", b"setbaud", b"htc", b"start", b"stop", b"freq", b"volt", b"pwr", b"db", b"%", b"\n",
             b"play", b"ls", b"checkbaud", b"tm", b"et", b"version", b"1k", b"on", b"off", b"inf", b"\x00", b"\xff"]
    try:
        for _ in range(rounds):
            what = rng.random()
            if what < 0.45:  # a random line of plausible words
                line = b" ".join(rng.choice(words) for _ in range(rng.randint(0, 8))) + rng.choice(ends)
                port.write(line)
            elif what < 0.8:  # random bytes
                port.write(bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))))
            elif what < 0.9:  # close and open again
                port.close()
                port = serial.Serial(path, baud, timeout=0)
            else:  # another baud for a while
                port.baudrate = rng.choice(BAUDS)
                port.write(bytes(rng.randrange(256) for _ in range(rng.randint(1, 50))))
                port.baudrate = baud
            port.read(4096)  # take what came back (a host that reads)
            time.sleep(rng.choice((0, 0, 0.001, 0.01)))
        port.write(b"x" * 70_000)  # one endless line: past every command buffer
        port.read(4096)
        port.write(b"\n%" * 3)
    finally:
        port.close()


def answer(path: str, baud: int, cmd: bytes, until: bytes, timeout: float = 5.0) -> bytes:
    with serial.Serial(path, baud, timeout=0.1) as s:
        time.sleep(0.3)
        s.reset_input_buffer()
        s.write(cmd)
        got = b""
        end = time.monotonic() + timeout
        while until not in got and time.monotonic() < end:
            got += s.read(256)
        return got


@pytest.mark.parametrize("interface", ["h573", "arduino"])
def test_fuzzed_ports_answer_correctly_with_bounded_buffers(tmp_path, interface):
    rig = build_rig(KWS01, interface=interface, dir=tmp_path / "rig", engine=EchoEngine(), timing=ECHO_TIMING)
    rig.start()
    rng = random.Random(14)
    try:
        io_ends, emon_ends = (b"%", b"", b" "), (b"\n", b"\r", b"\r\n", b"")
        fuzz(rig.io_path, 115200, io_ends, rng, ROUNDS)
        fuzz(rig.emon_path, 3686400, emon_ends, rng, ROUNDS)
        time.sleep(0.5)
        io = rig.ioman
        if io.hung or getattr(io.core, "awaiting_dut", False):
            # as the real board: `setbaud <not a number>` stops it, a `dut`
            # command to the (unpowered) DUT waits for good; a power cycle helps
            assert getattr(io.core, "stopped", False) or (io.core.awaiting_dut and not rig.dut.powered), vars(io.core)
            rig.control.call("unplug", port="io")
            rig.control.call("replug", port="io")
            deadline = time.monotonic() + 5
            while not io.running:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        # the boards answer properly again
        if interface == "h573":
            got = answer(rig.io_path, 115200, b"%name%", b"Board\r\nm-ready\r\n")
            assert got.endswith(b"tinyML Enhanced Interface Board\r\nm-ready\r\n"), got
        else:
            got = answer(rig.io_path, 115200, b"%name%", b"m-name-io\r\nm-ready\r\n")
            assert got.endswith(b"m-name-io\r\nm-ready\r\n"), got
        got = answer(rig.emon_path, 3686400, b"\nstop\nhtc\npowershield\n", b"ack powershield")
        assert b"PowerShield > ack htc" in got and b"PowerShield > ack powershield" in got, got[-400:]
        # and measure: a short acquisition of the DUT the fuzzing may have powered
        got = answer(rig.emon_path, 3686400, b"freq 1k\noutput energy\nformat ascii_dec\nacqtime 50m\nstart\n",
                     b"Acquisition completed")
        assert b"Acquisition completed" in got and got.count(b"\r\n") >= 50, got[:600]
        # nothing grew past its bound
        parts = {"ioman": rig.ioman, "emon": rig.emon, "dut": rig.dut, "io_port": rig.plugs["io"].port,
                 "emon_port": rig.plugs["emon"].port, "io_bridge": rig.io_bridge}
        big = [(name + p, n) for name, obj in parts.items() for p, n in sizes(obj) if n > BOUND]
        assert not big, big
    finally:
        rig.close()
