"""The pages built from the cases stay current: the tables of
porting_the_dut_firmware.md and the checked-in lesson transcript."""
from __future__ import annotations

import re

from firmware_api_spec import SPEC_DIR, load_spec
from runner.conform.docs import PAGE, current_page
from runner.conform.report import show_bytes

TRANSCRIPT = SPEC_DIR / "transcripts" / "dut_performance.md"


def test_porting_page_tables_are_built_from_the_current_cases():
    assert PAGE.read_text(encoding="utf-8") == current_page(), (
        "porting_the_dut_firmware.md is out of date: run python -m runner.conform.docs"
    )
    text = PAGE.read_text(encoding="utf-8")
    for case in load_spec().cases:
        assert f"`{case.id}`" in text, case.id


def test_the_lesson_transcript_covers_every_case_of_the_twins_firmware():
    """Regenerate with python examples/conform_transcript.py."""
    spec = load_spec()
    text = TRANSCRIPT.read_text(encoding="utf-8")
    ran = re.findall(r"^### \d+\. `([a-z0-9_]+)` — (pass|DEVIATION|not applicable|skipped)$", text, re.M)
    ids = {c.id for c in spec.cases}
    assert ran and {cid for cid, _ in ran} <= ids
    assert all(verdict == "pass" for cid, verdict in ran if cid != "timing_timer_wrap")
    applicable = {c.id for c in spec.cases
                  if c.model in ("any", "kws01") and c.mode in ("any", "performance") and not c.risky}
    assert applicable <= {cid for cid, _ in ran} | {"timing_timer_wrap"}
    # what the transcript says was expected is what the YAML expects now
    for cid, _ in ran:
        case = spec.case(cid)
        block = text.split(f"`{cid}` — ", 1)[1].split("\n### ", 1)[0]
        want = ", ".join(f"`{show_bytes(line.encode('latin-1'))}`" for line in spec.describe(case.expect, "kws01"))
        assert f"Expected: {want or 'nothing at all'}." in block, cid
    # a lesson: the primer, how to read it, links into the prose
    assert "### The protocol in a nutshell" in text and "### How to read this transcript" in text
    assert "(../dut_protocol.md#32-the-80-character-command-buffer)" in text


def test_the_porting_page_names_every_firmware_variant():
    from emulator.dut.core import VARIANTS

    text = PAGE.read_text(encoding="utf-8")
    assert all(v in text for v in VARIANTS if v != "reference")
