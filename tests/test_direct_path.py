"""The twin's direct path (fast mode: a command that arrives while nothing is
scheduled is carried out at once, the clock jumping to each time) against the
stepped path (every transfer and wait a SimPy event), kept as the reference:
for random host streams cut into random pieces, at random bauds, the host gets
the same bytes at the same simulated times, both UARTs see the same bytes at
the same times, and the DUT ends in the same state. With a tap on the host
port (issue 14's faults), the direct path steps aside while a fault is armed
or a fault plan's trigger waits, and the two paths still agree."""
from __future__ import annotations

import math
import random
import socket
from types import SimpleNamespace

import pytest

from emulator.benches.dut import build_dut_bench
from emulator.control.bench import BenchControl, Plug
from emulator.control.plan import FaultPlan
from emulator.control.tap import TO_BOARD, TO_HOST, PortTap
from emulator.dut.timing import DutTiming
from emulator.sim import MS, US
from emulator.transport import MemoryPort, SocketPort


class SmallEngine:
    """A model with a 64-byte buffer and 49 int8 inputs (so that buffers
    overflow and short loads happen); its result depends on the input."""

    def __init__(self):
        self.profile = SimpleNamespace(
            name="kws01", model_version="small", max_db_input_size=64, input_count=49,
            input_elem_size=1, perf_baud=115200, energy_baud=9600,
        )
        self.raw = b""
        self.invocations = 0

    def set_input(self, raw: bytes) -> None:
        self.raw = bytes(raw)

    def load_short(self, raw: bytes) -> None:
        self.raw = bytes(raw)

    def invoke(self, count: int = 1) -> None:
        self.invocations += count

    def results_text(self) -> str:
        return f"m-results-[{sum(self.raw) % 97},{self.invocations}]\r\n"


TIMING = DutTiming(inference_us=1234.567, load_tensor_us=10.3, command_us=15.7, boot_ms=1.0,
                   timestamp_print_us=3.3, timestamp_hold_us=50.0)


class Recorder(MemoryPort):
    """What the host receives, with the simulated time of each write."""

    def __init__(self, baud: int):
        super().__init__("host", baud)
        self.log: list[tuple[int, bytes]] = []

    def write_to_host(self, data: bytes) -> None:
        self.log.append((self.twin.now, bytes(data)))
        super().write_to_host(data)


class Bench:
    """A DUT bench driven by a host in this test: by default a recorder of
    what the host receives and when, with taps on both UARTs; ``os_host``: a
    host behind a socket (a process of its own, as over a pty: it gets the
    bytes and their order, never the simulated clock), no taps."""

    def __init__(self, direct: bool, energy: bool, express: bool = False, os_host: bool = False):
        self.bench = build_dut_bench("kws01", engine=SmallEngine(), timing=TIMING, speed="fast", energy_mode=energy)
        self.twin = self.bench.twin
        self.twin.allow_direct = direct
        self.twin.allow_express = express
        self.express = self.bench.bridge.express
        self.dut = self.bench.dut
        self.taps: list[tuple[str, str, bytes, int]] = []
        if os_host:
            self.host, theirs = socket.socketpair()
            self.host.setblocking(False)
            self.port = SocketPort("host", theirs)
            self.port.baud = self.dut.uart.baud
            self.got = bytearray()
        else:
            self.host = None
            self.port = Recorder(self.dut.uart.baud)
            for ep in (self.bench.bridge.endpoint, self.dut.uart):
                ep.tap = lambda d, data, t, name=ep.name: self.taps.append((name, d, bytes(data), t))
        self.bench.bridge.attach(self.port)
        self.twin.run_until_idle()  # boot (a process either way)
        self.direct_commands = 0
        run_now = self.dut._run_now

        def counting():
            self.direct_commands += 1
            run_now()

        self.dut._run_now = counting

    def send(self, data: bytes, at: int, baud: int) -> None:
        self.port.baud = baud
        self.twin.inject_at(self.port, data, at)

    def received(self) -> bytes:
        """Everything the host has received so far."""
        if self.host is None:
            return b"".join(data for _, data in self.port.log)
        while True:
            try:
                self.got += self.host.recv(65536)
            except BlockingIOError:
                return bytes(self.got)

    def state(self, host_view: bool = True):
        """The bench's state; without ``host_view``, what a host behind an
        fd cannot see (the simulated times of its bytes, the taps) left out."""
        dut, core = self.dut, self.dut._core
        seen = (self.port.log, self.taps) if host_view else ()
        return (
            self.twin.now, *seen, dut.commands, dut.overrun_lost, dut.state, dut.hung,
            dut._rx.held, dut._rx.polling, dut._rx.changed_at, dut._rx.held_when_resumed, dut._cpu_busy, bytes(core.cmd), bytes(core.buff), core.buff_pos, core.buff_size,
            self.dut.timestamp_pin.edges, self.dut.uart._tx_free_at, self.bench.bridge.endpoint._tx_free_at,
        )


def random_piece(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.35:
        return b"db " + bytes(rng.randrange(256) for _ in range(rng.choice([1, 7, 31]))).hex().encode() + b"%"
    if r < 0.45:
        return b"db load %d%%" % rng.choice([1, 31, 49, 60, 64, 65])
    if r < 0.55:
        return rng.choice([b"infer 1 0%", b"infer 2 1%", b"infer 0%", b"results%"])
    if r < 0.75:
        return rng.choice([b"name%", b"profile%", b"help%", b"timestamp%", b"db print%", b"db print 8%", b"%",
                           b"bogus 1 2%", b"db xyz%", b"\r\n", b"na", b"me%"])
    if r < 0.9:  # two commands at once: the second arrives while the DUT is busy
        return random_piece(rng) + random_piece(rng)
    return bytes(rng.choice(b"ab 0%\r\n\0") for _ in range(rng.randrange(1, 90)))


def play_stream(seed: int, benches, after_each=lambda: None) -> None:
    """The random host stream of ``seed`` (60 pieces, random gaps and host
    bauds, more bytes while an inference runs) sent to every bench alike."""
    rng = random.Random(seed)
    baud = benches[0].dut.uart.baud
    for _ in range(60):
        data = random_piece(rng)
        host_baud = baud if rng.random() < 0.9 else rng.choice([9600, 115200, 921600])
        gap = rng.choice([0, 1, 999, 87 * US, 3 * MS])
        at = max(b.twin.now for b in benches) + gap
        for b in benches:
            b.send(data, at, host_baud)
        if benches[-1].twin.env.peek() < math.inf and rng.random() < 0.5:
            # the DUT still works (an inference: a process on every bench):
            # more bytes arrive meanwhile
            mid = max(b.twin.now for b in benches) + rng.choice([10 * US, 300 * US, 2 * MS])
            more = random_piece(rng)
            for b in benches:
                b.twin.step_until(mid)
                b.send(more, mid, host_baud)
        for b in benches:
            b.twin.run_until_idle()
        after_each()


@pytest.mark.parametrize("seed", range(24))
def test_direct_path_equals_the_stepped_path(seed: int) -> None:
    """Three benches on the same random stream: the stepped path, the
    direct path through the layers, and the direct path with the DUT's
    express lane for ``db`` chunks (emulator.dut.express, the default)."""
    energy = seed % 4 == 3
    stepped, direct, express = Bench(False, energy), Bench(True, energy), Bench(True, energy, express=True)

    def same() -> None:
        assert direct.state() == stepped.state()
        assert express.state() == stepped.state()

    play_stream(seed, (stepped, direct, express), same)
    # the direct path was taken (and not only for trivial commands), and
    # the express lane took chunks the layers would otherwise have carried
    assert direct.direct_commands > 10
    assert stepped.direct_commands == 0
    assert direct.express.taken == stepped.express.taken == 0
    assert express.direct_commands + express.express.taken == direct.direct_commands


@pytest.mark.parametrize("seed", range(24))
def test_the_express_lane_answers_a_host_behind_an_fd_first(seed: int) -> None:
    """With the host behind an fd (a pty, a socket) and nothing watching the
    wire, the lane writes its answer before its bookkeeping (the host's next
    command then waits for the kernel, not for that arithmetic): the host
    gets the same bytes as from the stepped path, and after every piece of
    the stream the twin is in the same state."""
    energy = seed % 4 == 3
    stepped, express, behind_fd = Bench(False, energy), Bench(True, energy, express=True), Bench(
        True, energy, express=True, os_host=True)

    def same() -> None:
        assert behind_fd.received() == stepped.received()
        assert behind_fd.state(host_view=False) == stepped.state(host_view=False)

    play_stream(seed, (stepped, express, behind_fd), same)
    assert behind_fd.express.taken == express.express.taken  # (229 chunks over the 24 streams, see below)
    behind_fd.host.close()


def test_the_random_streams_exercise_the_express_lane() -> None:
    """The streams above give the lane work: it took 0-14 chunks per stream
    when this was written (229 in all) and declined the rest (a buffer
    already past its end, a partial command, another baud, a busy DUT)."""
    taken = []
    for seed in range(24):
        b = Bench(True, seed % 4 == 3, express=True)
        play_stream(seed, (b,))
        taken.append(b.express.taken)
    assert sum(taken) > 100 and sum(1 for n in taken if n) >= 20


def test_the_express_lane_takes_a_download_and_steps_aside_otherwise() -> None:
    """A download of 64 bytes in 31-byte chunks, as the runner sends it,
    goes through the lane (``m-load-done`` included) with the layers' bytes
    and times; a chunk that is not one whole hex command, a bench with
    something scheduled or a host at another baud leaves it to the layers."""
    layered, express = Bench(True, False), Bench(True, False, express=True)
    data = bytes(range(64))
    cmds = [b"db load 64%"] + [b"db " + data[i:i + 31].hex().encode() + b"%" for i in range(0, 64, 31)]
    for b in (layered, express):
        for cmd in cmds:
            b.send(cmd, b.twin.now + 5 * US, 115200)
        assert b.twin.env.peek() == math.inf  # all carried out at once
    assert express.state() == layered.state()
    assert express.express.taken == 3 and express.direct_commands == 1
    assert express.port.log[-2:] == layered.port.log[-2:] and express.port.log[-2][1] == b"m-load-done\r\n"
    assert bytes(express.dut._core.buff[:64]) == data

    e = express.express
    for odd in (b"db 0g%", b"db 00%db 01%", b"db 0001", b"db  00%", b"db 00%\r\n", b"xdb 00%"):
        express.send(odd, express.twin.now + 1, 115200)
        express.twin.run_until_idle()
    assert e.taken == 3
    express.send(b"db 00%", express.twin.now + 1, 115200)  # past the buffer's end: the layers count it
    assert e.taken == 3 and express.port.log[-1][1] == b"m-ready\r\n"
    express.send(b"db load 64%", express.twin.now + 1, 115200)
    express.send(b"db 0", express.twin.now + 1, 115200)  # a partial command in the core ...
    express.send(b"0%", express.twin.now + 1, 115200)
    express.send(b"db 00%", express.twin.now + 1, 115200)  # ... and none again
    assert e.taken == 4
    express.twin.schedule(MS, lambda: None)
    express.send(b"db 00%", express.twin.now + 1, 115200)
    assert e.taken == 4
    express.twin.run_until_idle()
    express.send(b"db 00%", express.twin.now + 1, 921600)  # the host at another baud: garbled, by the layers
    assert e.taken == 4


def test_direct_path_is_taken_only_when_nothing_else_is_scheduled() -> None:
    b = Bench(True, False)
    b.port.log.clear()  # the boot banner
    b.twin.schedule(5 * MS, lambda: None)  # something else on the clock
    b.send(b"name%", b.twin.now + 1, 115200)
    assert b.direct_commands == 0 and b.port.log == []
    b.twin.run_until_idle()
    assert b"m-name-dut" in b.port.log[0][1]
    b.send(b"name%", b.twin.now + 1, 115200)
    assert b.direct_commands == 1 and len(b.port.log) == 4  # answered at once


# ---------------------------------------------------------------- a tap on the port (issue 14's faults)


class Tapped(Bench):
    """A bench whose host port has a :class:`PortTap` (as every port of
    ``tinytwin rig``/``external`` has) and a bench control over it; what
    crosses the tap towards the host is recorded with its time."""

    def __init__(self, direct: bool, energy: bool = False, seed: int = 0, express: bool = False):
        super().__init__(direct, energy, express)
        self.tap = PortTap("dut", b"%", seed=seed)
        self.port.hook = self.tap
        self.control = BenchControl(self.twin, self.dut, {"dut": Plug("dut", "l4r5zi", lambda tap: self.port, self.tap,
                                                                    port=self.port)})
        self.emitted: list[tuple[int, bytes]] = []
        emit = self.port.emit
        self.port.emit = lambda data: (self.emitted.append((self.twin.now, bytes(data))), emit(data))

    def state(self):
        return (*super().state(), self.emitted, self.tap.state())


def test_a_passive_tap_keeps_the_direct_path() -> None:
    """Nothing armed: the tap only counts; the direct path is taken and the
    host gets what an untapped bench gives it."""
    plain, tapped, express = Bench(True, False), Tapped(True), Tapped(True, express=True)
    for b in (plain, tapped, express):
        for cmd in (b"name%", b"db load 7%", b"db 00010203040506%", b"help%"):
            b.send(cmd, b.twin.now + 1, 115200)
            b.twin.run_until_idle()
    assert tapped.tap.passive() and tapped.direct_commands == plain.direct_commands > 0
    assert tapped.port.log == plain.port.log
    assert bytes(tapped.port.received) == bytes(plain.port.received)
    assert tapped.tap.commands == 4 and tapped.direct_commands == 4
    # the express lane takes the db chunk through the passive tap, which counts it as the layers' path does
    assert express.express.taken == 1 and express.direct_commands == 3
    assert express.state() == tapped.state()


ARMS = [
    ("garble the next line to the host", lambda t: t.arm(TO_HOST, "garble-line")),
    ("drop 3 bytes to the board", lambda t: t.arm(TO_BOARD, "drop", 3)),
    ("delay to the host", lambda t: t.set_delay(TO_HOST, 0.7)),
    ("delay to the board", lambda t: t.set_delay(TO_BOARD, 0.25)),
    ("a trigger waits", lambda t: t.on_command.append(lambda n: None)),
]


@pytest.mark.parametrize("what,arm", ARMS, ids=[a[0] for a in ARMS])
def test_an_armed_tap_steps_aside_to_the_stepped_path(what, arm) -> None:
    """A fault armed or a trigger waiting on a port: the direct path steps
    aside and the bytes cross the tap at the stepped path's exact times."""
    stepped, direct = Tapped(False), Tapped(True)
    for b in (stepped, direct):
        arm(b.tap)
        assert not b.tap.passive()
        b.send(b"name%", b.twin.now + 1, 115200)
        b.twin.run_until_idle()
    assert direct.direct_commands == 0
    assert direct.state() == stepped.state()


def test_a_delay_on_the_direct_path_would_lose_the_clock() -> None:
    """Why the direct path steps aside: a delayed chunk is an event on the
    clock, which the direct path's jumps may not pass."""
    b = Tapped(True)
    b.tap.set_delay(TO_HOST, 0.01)
    b.tap.passive = lambda: True  # pretend
    with pytest.raises(RuntimeError, match="cannot jump"):
        b.send(b"name%", b.twin.now + 1, 115200)  # its answer is two lines


@pytest.mark.parametrize("seed", range(8))
def test_direct_path_with_faults_on_demand_equals_the_stepped_path(seed: int) -> None:
    """Random faults armed on the port between random commands, and a fault
    plan that presses RESET after the 5th command and garbles after the 9th:
    the direct bench (which takes the direct path whenever its tap is passive
    again), the same with the express lane for db chunks, and the stepped
    bench agree on every byte, time and count."""
    rng = random.Random(1000 + seed)
    stepped, direct, express = Tapped(False, seed=seed), Tapped(True, seed=seed), Tapped(True, seed=seed, express=True)
    plan = FaultPlan.parse("faults:\n"
                           "  - {do: reset, when: {after_command: 5, port: dut}}\n"
                           "  - {do: garble, port: dut, direction: to-host, count: 2, when: {after_command: 9}}\n")
    for b in (stepped, direct, express):
        FaultPlan([type(f)(f.op, dict(f.args), dict(f.when), f.index) for f in plan.faults]).install(b.control)
    baud = stepped.dut.uart.baud
    for _ in range(60):
        r = rng.random()
        delayed = None
        if r < 0.25:
            kind = rng.choice(["drop", "garble", "drop-line", "garble-line"])
            dir_ = rng.choice([TO_HOST, TO_BOARD])
            n = rng.randrange(1, 4)
            for b in (stepped, direct, express):
                b.control.call(kind, port="dut", direction=dir_, count=n)
        elif r < 0.4:  # a USB latency for this command
            delayed = rng.choice([TO_HOST, TO_BOARD])
            ms = rng.choice([0.05, 1.5])
            for b in (stepped, direct, express):
                b.control.call("delay", port="dut", direction=delayed, ms=ms)
        data = random_piece(rng) if rng.random() < 0.5 else rng.choice([b"name%", b"db load 7%", b"help%",
                                                                         b"db 00010203040506%", b"results%"])
        at = max(b.twin.now for b in (stepped, direct, express)) + rng.choice([0, 999, 87 * US, 3 * MS])
        for b in (stepped, direct, express):
            b.send(data, at, baud)
            b.twin.run_until_idle()
            if delayed:
                b.control.call("delay", port="dut", direction=delayed, ms=0)
        assert direct.state() == stepped.state()
        assert express.state() == stepped.state()
    # the direct path was taken between the faults, and the plan fired on all three
    assert direct.direct_commands > 10 and stepped.direct_commands == 0
    assert express.direct_commands + express.express.taken == direct.direct_commands
    assert not direct.tap.on_command and not stepped.tap.on_command and not express.tap.on_command
    for b in (direct, express):
        assert [h["op"] for h in b.control.history if h["op"] == "reset"] == ["reset"]
