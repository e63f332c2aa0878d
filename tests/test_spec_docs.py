"""Drift guards between firmware_api_spec/ (prose and YAML) and the emulator."""
from __future__ import annotations

import re

import pytest


from firmware_api_spec import SPEC_DIR, fixed_parts, load_spec

from emulator.dut import core as dutcore

SPEC = load_spec()
PROSE = (SPEC_DIR / "dut_protocol.md").read_text(encoding="utf-8")
INDEX = (SPEC_DIR / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("cmd", SPEC.commands, ids=lambda c: c["name"])
def test_prose_names_every_command(cmd):
    assert f"`{cmd['syntax']}`" in PROSE, f"dut_protocol.md never shows `{cmd['syntax']}`"
    assert re.search(rf"^### 5\.\d+ `{re.escape(cmd['syntax'])}`$", PROSE, re.M), (
        f"no section of dut_protocol.md is headed by `{cmd['syntax']}`"
    )


@pytest.mark.parametrize("msg", SPEC.messages, ids=lambda m: m["id"])
def test_prose_quotes_every_message(msg):
    for part in fixed_parts(msg["text"]):
        assert part in PROSE, f"dut_protocol.md does not contain {part!r} (message {msg['id']})"


@pytest.mark.parametrize("msg", [m for m in SPEC.messages if m["kind"] == "err"], ids=lambda m: m["id"])
def test_bad_input_table_covers_every_error(msg):
    table = PROSE[PROSE.index("## 11 Bad input") : PROSE.index("## 12 ")]
    assert fixed_parts(msg["text"])[0] in table, f"section 11 does not list {msg['text']!r}"


def test_prose_quotes_the_help_text():
    block = "\n".join(SPEC.help)
    assert "```\n" + block + "\n```" in PROSE


def test_prose_states_the_default_speed():
    assert "realtime (the default of `tinytwin dut`)" in PROSE
    assert "fast (opt-in" in PROSE


def test_every_case_id_in_the_bad_input_table_exists():
    table = PROSE[PROSE.index("## 11 Bad input") : PROSE.index("## 12 ")]
    ids = {c.id for c in SPEC.cases}
    named = set(re.findall(r"`([a-z0-9_]+)`", table))
    for name in named:
        if "_" in name:
            assert name in ids, f"section 11 names case {name!r}, which the YAML does not have"


@pytest.mark.parametrize("msg", SPEC.messages, ids=lambda m: m["id"])
def test_every_message_is_exercised(msg):
    """Each catalogued line appears in some case's answer or in a banner."""
    for model in SPEC.models:
        pattern = re.compile(SPEC._line_regex(msg["text"], model).encode("latin-1"), re.S)
        lines = list(SPEC.banner(model, "performance")) + list(SPEC.banner(model, "energy"))
        for case in SPEC.cases_for(model):
            lines += [x if isinstance(x, str) else x["line"] for x in SPEC.expand(case.expect, model)]
        for line in lines:
            if line == msg["text"] or pattern.fullmatch(SPEC.substitute(line, model).encode("latin-1")):
                return
    pytest.fail(f"no case or banner shows {msg['text']!r}")


def test_yaml_constants_equal_the_core():
    f, fw = SPEC.framing, SPEC.firmware
    assert f["command_buffer_chars"] == dutcore.EE_CMD_SIZE
    assert ord(f["terminator"]) == dutcore.EE_CMD_TERMINATOR
    assert fw["fw_version"] == dutcore.EE_FW_VERSION
    assert fw["device_name"] == dutcore.EE_DEVICE_NAME
    assert fw["vendor"] == dutcore.TH_VENDOR_NAME_STRING
    assert "".join(line + "\r\n" for line in SPEC.help).encode() == dutcore.HELP_TEXT
    align = next(m["text"] for m in SPEC.messages if m["id"] == "arena_alignment")
    assert align.encode() + b"\r\n" == dutcore.MSG_ARENA_ALIGNMENT
    assert dutcore.MSG_READY == b"m-ready\r\n" and dutcore.MSG_INIT_DONE == b"m-init-done\r\n"


def test_index_links_every_file():
    for name in ("dut_protocol.md", "dut_protocol.yaml", "dut_spec.py"):
        assert f"({name})" in INDEX
        assert (SPEC_DIR / name).is_file()
