"""Conformance: every case of firmware_api_spec/ioman_arduino.yaml and
ioman_h573.yaml against the IO managers' protocol cores, instantly, no I/O.

The cases that pass a command to the DUT (``needs: dut``) run with the
reference DUT firmware's own core behind the board (energy build, wired
through the cores' DUT-side inputs). The pseudo-terminal run of the same
cases is ``tinytwin conform`` in tests/test_conform_twin.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from emulator.core import Hang
from emulator.dut.core import DutCore, run_script
from emulator.ioman.actions import Restart, ToDut, ToHost
from emulator.ioman.arduino import ArduinoIoCore
from emulator.ioman.h573 import H573IoCore
from firmware_api_spec import load_spec, spec_path

SPECS = {"arduino": load_spec(spec_path("ioman_arduino.yaml")), "h573": load_spec(spec_path("ioman_h573.yaml"))}
DUT_SPEC = load_spec()


@dataclass(frozen=True)
class SpecProfile:
    name: str = "kws01"
    model_version: str = "kws01"
    max_db_input_size: int = DUT_SPEC.models["kws01"]["max_db_input_size"]
    input_count: int = DUT_SPEC.models["kws01"]["input_count"]
    input_elem_size: int = 1


class Bench:
    """An IO manager core with the reference DUT core behind it, driven one
    byte at a time (as the board's UARTs deliver them)."""

    def __init__(self, kind: str):
        self.io = ArduinoIoCore() if kind == "arduino" else H573IoCore()
        self.dut = DutCore(SpecProfile(), energy_mode=True)
        run_script(self.dut, self.dut.boot_script(), None)
        self.dut.enable_parser()
        self.to_io = bytearray()  # the DUT's output on its way to the board
        self.hung = False
        self.booted = self._run(self.io.boot())

    def _run(self, actions) -> bytes:
        out = bytearray()
        for a in actions:
            if isinstance(a, ToHost):
                out += a.data
            elif isinstance(a, ToDut):
                for script in self.dut.receive(a.data):
                    self.to_io += run_script(self.dut, script, None)
            elif isinstance(a, Restart):
                self.io.reset()
                self.to_io.clear()
                out += self._run(self.io.boot())
            elif isinstance(a, Hang):
                self.hung = True
        return bytes(out)

    def _drain(self) -> bytes:
        out = bytearray()
        while not self.hung:
            acts = self.io.step()
            if acts is None:
                if not self.to_io:
                    break
                self.io.feed_dut(bytes(self.to_io[:1]))
                del self.to_io[:1]
                continue
            out += self._run(acts)
        return bytes(out)

    def send(self, data: bytes) -> bytes:
        out = bytearray()
        for i in range(len(data)):
            self.io.feed_host(data[i : i + 1])
            out += self._drain()
        return bytes(out + self._drain())


def run_case(kind: str, case) -> bytes:
    bench = Bench(kind)
    if case.boot:
        return bench.booted
    for step, data in case.setup_steps(None):
        if step == "uart":
            bench.send(data)
    return bench.send(case.send_for())


def instances():
    return [pytest.param(kind, case, id=f"{kind}-{case.id}") for kind, spec in SPECS.items() for case in spec.cases]


@pytest.mark.parametrize("kind,case", instances())
def test_case_on_core(kind, case):
    out = run_case(kind, case)
    case.check(out)
    # every line the board printed is one of its catalogue's
    assert SPECS[kind].message_regex(None).fullmatch(out), out


@pytest.mark.parametrize("kind", SPECS)
def test_every_case_is_well_formed(kind):
    spec = SPECS[kind]
    ids = [c.id for c in spec.cases]
    assert len(ids) == len(set(ids))
    for case in spec.cases:
        assert case.model == "any" and case.mode == "any", case.id
        assert case.requirement in ("runner", "reference"), case.id
        assert (case.requirement == "runner") == bool(case.breaks), case.id
        assert case.section and case.why, case.id
        assert case.needs in ("", "dut"), case.id
        # a case that passes a command to the DUT needs one
        assert (case.needs == "dut") == (b"dut " in case.send and case.send != b"dut %"), case.id
    hangs = [i for i, c in enumerate(spec.cases) if c.hangs]
    assert hangs == list(range(len(spec.cases) - len(hangs), len(spec.cases)))


def test_constants_match_the_cores():
    from emulator.ioman import arduino, h573
    from emulator.ioman.actions import DUT_BAUD, HOST_BAUD

    a, h = SPECS["arduino"], SPECS["h573"]
    assert a.framing["command_buffer_chars"] == arduino.LINE_SIZE
    assert a.framing["max_args"] == arduino.MAX_ARGS
    assert a.framing["lap_slots"] == arduino.LAP_SLOTS
    assert a.framing["host_baud"] == HOST_BAUD and a.framing["dut_baud"] == DUT_BAUD
    assert a.firmware["banner"].encode() + b"\r\n" == arduino.BANNER
    assert [c["name"] for c in a.commands] == [name for name, _, _ in arduino.COMMANDS]
    assert [c["args"] for c in a.commands] == [n for _, n, _ in arduino.COMMANDS]
    assert h.framing["host_queue_bytes"] == h573.RX_QUEUE == h.framing["dut_queue_bytes"]
    assert h.framing["max_dut_baud"] == h573.MAX_BAUD and h.framing["dut_baud_default"] == DUT_BAUD
    assert [c["name"] for c in h.commands] == list(h573.COMMANDS)
    assert h.firmware["name"].encode() == h573.NAME


def test_the_bench_can_fail():
    # the harness itself: a DUT answer is relayed, and a wrong expectation fails
    bench = Bench("arduino")
    out = bench.send(b"dut name%")
    assert out == b"m-dut-passthrough(name)\r\nm-ready\r\n[dut]: m-name-dut-[unspecified]\r\n[dut]: m-ready\r\n"
    case = SPECS["arduino"].case("name")
    with pytest.raises(AssertionError):
        case.check(b"m-name-io\r\n")
