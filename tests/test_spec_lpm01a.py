"""Conformance: every case of firmware_api_spec/lpm01a.yaml against the
LPM01A's protocol core (the shell), instantly, no I/O; the cases of scope
"device" (the data stream) run on the device on the twin's clock here, and
all of them through a pseudo-terminal in tests/test_conform_twin.py."""
from __future__ import annotations

import pytest

from emulator.emon.lpm01a import stream
from emulator.emon.lpm01a.core import HELP_LINES, Lpm01aCore, Reply
from emulator.emon.lpm01a.device import Lpm01a
from emulator.sim import MS, Twin
from firmware_api_spec import load_spec, spec_path

SPEC = load_spec(spec_path("lpm01a.yaml"))


def run_on_core(case) -> bytes:
    core = Lpm01aCore()
    for _, data in case.setup_steps(None):
        core.receive(data)
    return b"".join(a.data for a in core.receive(case.send_for()) if isinstance(a, Reply))


def run_on_device(case) -> bytes:
    """The board on a fast twin, no DUT: the case's exchange, and what the
    board sends until it has been quiet for 200 ms of simulated time (with a
    stop sent after the line the case's timing names, if any)."""
    twin = Twin("fast")
    emon = Lpm01a(twin)
    out = bytearray()
    emon.taps.append(out.extend)
    for _, data in case.setup_steps(None):
        emon.host_input(data)
        twin.run_until_idle(twin.now + 50 * MS)
    out.clear()
    emon.host_input(case.send_for())
    inject = case.timing and case.timing.get("inject")
    for _ in range(200):
        n = len(out)
        twin.run_until_idle(twin.now + 20 * MS)
        if inject and case.timing["after"].encode() in out:
            emon.host_input(inject.encode())
            inject = None
        if len(out) == n and not emon.acquiring:
            break
    return bytes(out)


@pytest.mark.parametrize("case", SPEC.cases, ids=lambda c: c.id)
def test_case(case):
    out = run_on_core(case) if case.scope == "both" else run_on_device(case)
    case.check(out)
    assert SPEC.message_regex(None).fullmatch(out.replace(b"\x00", b"")), out


def test_every_case_is_well_formed():
    ids = [c.id for c in SPEC.cases]
    assert len(ids) == len(set(ids))
    for case in SPEC.cases:
        assert case.model == "any" and case.mode == "any", case.id
        assert case.requirement in ("runner", "reference"), case.id
        assert (case.requirement == "runner") == bool(case.breaks), case.id
        assert case.section and case.why, case.id
        assert case.send.endswith((b"\n", b"\r")), case.id


def test_constants_match_the_core():
    f = SPEC.framing
    assert f["prompt"].encode() == stream.PROMPT
    assert f["usb_baud"] == stream.USB_BAUD
    assert f["timestamp_every"] == stream.TIMESTAMP_EVERY
    assert f["max_energy_freq_hz"] == stream.MAX_ENERGY_FREQ_HZ
    assert SPEC.firmware["fw_version"] == stream.FW_VERSION
    names = {c["name"] for c in SPEC.commands}
    for line in HELP_LINES:
        first = line.split()[0]
        assert first in names, first


def test_the_matcher_reads_the_stream_strictly():
    case = SPEC.case("acquisition")
    good = run_on_device(case)
    case.check(good)
    with pytest.raises(AssertionError):
        case.check(good.replace(b"PowerShield > Acquisition completed\r\n", b""))
    with pytest.raises(AssertionError):
        case.check(good.replace(b"0000+00\r\n", b"0000e+00\r\n", 1))
