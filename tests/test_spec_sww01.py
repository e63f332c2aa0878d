"""Conformance: every case of firmware_api_spec/sww01_protocol.yaml against the
pure sww01 protocol core (:mod:`emulator.dut.sww01.core`), instantly, no I/O;
and drift guards between that YAML and its prose (sww01_protocol.md).

Cases that run the model use the real sww01 model (TFLM) from ``../shared``;
they skip while it is missing. The same cases over a pseudo-terminal: tests/test_spec_sww01_pty.py.
"""
from __future__ import annotations

import re

import pytest


from firmware_api_spec import SPEC_DIR, SWW01_SPEC_PATH, MissingData, fixed_parts, load_spec

from emulator.dut.sww01 import core as swwcore
from emulator.dut.sww01.core import Sww01Core, run_until_idle

SPEC = load_spec(SWW01_SPEC_PATH)
PROSE = (SPEC_DIR / "sww01_protocol.md").read_text(encoding="utf-8")
MODEL = "sww01"


def run_on_core(case, engine) -> bytes:
    core = Sww01Core(engine=engine)
    core.boot()
    for kind, data in case.setup_steps(None):
        if kind == "uart":
            core.feed(data)
        else:
            core.feed_audio(data)
        run_until_idle(core)
    core.feed(case.send)
    return run_until_idle(core)


@pytest.fixture(scope="module")
def engine(request):
    from emulator.dut.sww01.model import open_sww01

    models_dir = request.getfixturevalue("models_dir")
    if not (models_dir / "sww01.tflite").is_file():
        pytest.skip("sww01.tflite is missing: run `tinytwin models download`")
    return open_sww01(models_dir)


@pytest.mark.parametrize("case", SPEC.cases, ids=lambda c: c.id)
def test_case_on_core(case, request):
    eng = request.getfixturevalue("engine") if case.needs_model else None
    try:
        out = run_on_core(case, eng)
    except MissingData as exc:
        pytest.skip(str(exc))
    case.check(out, MODEL)
    # every line the firmware printed is one the spec's catalogue knows
    assert SPEC.message_regex(MODEL).fullmatch(out), out


def test_every_case_is_well_formed():
    ids = [c.id for c in SPEC.cases]
    assert len(ids) == len(set(ids))
    for case in SPEC.cases:
        assert case.model == MODEL, case.id
        assert case.scope == "both", case.id
        assert case.why, case.id
        assert case.expect and case.expect[0].startswith("Received command: "), case.id


def test_matcher_rejects_wrong_output():
    case = next(c for c in SPEC.cases if c.id == "name")
    case.check(b"Received command: name\r\nm-name-dut-[ML Commons]\r\nm-ready\r\n", MODEL)
    with pytest.raises(AssertionError):
        case.check(b"m-name-dut-[ML Commons]\r\nm-ready\r\n", MODEL)  # no echo
    with pytest.raises(AssertionError):
        case.check(b"Received command: name\nm-name-dut-[ML Commons]\nm-ready\n", MODEL)  # LF only
    dump = next(c for c in SPEC.cases if c.id == "stop_after_three_frames")
    head = b"Received command: stop\r\nStreaming stopped.\r\ntarget activations: \r\n"
    dump.check(head + b"[-128, 5, 127  \r\n]\r\nm-ready\r\n", MODEL)
    with pytest.raises(AssertionError):
        dump.check(head + b"[-128, 5, 127, \r\n]\r\nm-ready\r\n", MODEL)  # the last value gets a space
    with pytest.raises(AssertionError):
        dump.check(head + b"[-128, 5  \r\n]\r\nm-ready\r\n", MODEL)  # one score too few


def test_reader_keeps_uart_only_harnesses_safe():
    case = next(c for c in SPEC.cases if c.id == "stop_after_three_frames")
    steps = case.setup_steps(None)
    assert [k for k, _ in steps] == ["uart", "i2s", "i2s", "i2s"]
    assert all(len(d) == swwcore.I2S_CHUNK_BYTES for k, d in steps if k == "i2s")
    with pytest.raises(ValueError):
        case.setup_bytes(None)


def test_constants_match_the_core():
    fr, fw, m = SPEC.framing, SPEC.firmware, SPEC.models[MODEL]
    assert fr["command_buffer_chars"] == swwcore.EE_CMD_SIZE
    assert fr["max_tokens"] == swwcore.MAX_CMD_TOKENS
    assert fr["i2s_frame_bytes"] == swwcore.I2S_CHUNK_BYTES
    assert fr["detect_threshold"] == swwcore.DETECT_THRESHOLD
    assert fr["activation_log_max"] == swwcore.GP_BUFF_BYTES
    assert fw["fw_version"] == swwcore.FW_VERSION and fw["vendor"] == swwcore.VENDOR
    assert m["model_version"] == swwcore.MODEL_VERSION
    assert "\r\n".join(SPEC.help).encode() + b"\r\n" == swwcore.HELP_TEXT


# ---------------------------------------------------------------- prose drift guards


@pytest.mark.parametrize("cmd", SPEC.commands, ids=lambda c: c["name"])
def test_prose_names_every_command(cmd):
    assert re.search(rf"^### \d+\.\d+ `{re.escape(cmd['syntax'])}`$", PROSE, re.M), (
        f"no section of sww01_protocol.md is headed by `{cmd['syntax']}`"
    )


@pytest.mark.parametrize("msg", SPEC.messages, ids=lambda m: m["id"])
def test_prose_quotes_every_message(msg):
    for part in fixed_parts(msg["text"]):
        assert part in PROSE, f"sww01_protocol.md does not contain {part!r} (message {msg['id']})"


@pytest.mark.parametrize("msg", [m for m in SPEC.messages if m["kind"] == "err"], ids=lambda m: m["id"])
def test_bad_input_table_covers_every_error(msg):
    table = PROSE[PROSE.index("## 8 Bad input") : PROSE.index("## 9 ")]
    assert fixed_parts(msg["text"])[0] in table, f"section 8 does not list {msg['text']!r}"


def test_bad_input_table_names_existing_cases():
    table = PROSE[PROSE.index("## 8 Bad input") : PROSE.index("## 9 ")]
    ids = {c.id for c in SPEC.cases}
    commands = {c["name"] for c in SPEC.commands}
    for name in set(re.findall(r"`([a-z0-9_]+)`", table)):
        if "_" in name and name not in commands:
            assert name in ids, f"section 8 names case {name!r}, which the YAML does not have"
