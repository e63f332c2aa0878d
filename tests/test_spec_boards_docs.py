"""Drift guards between the prose pages of the IO managers and the LPM01A and
their YAMLs (as tests/test_spec_docs.py does for the DUT)."""
from __future__ import annotations

import re

import pytest

from firmware_api_spec import SPEC_DIR, fixed_parts, load_spec, spec_path

PAGES = {"ioman_arduino": "8", "ioman_h573": "7", "lpm01a": "8"}  # page -> its bad-input section


def _spec(page):
    return load_spec(spec_path(f"{page}.yaml"))


def _prose(page):
    return (SPEC_DIR / f"{page}.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("page", PAGES)
def test_every_command_has_its_section(page):
    prose = _prose(page)
    for cmd in _spec(page).commands:
        assert re.search(rf"^### 5\.\d+ `{re.escape(cmd['syntax'])}`$", prose, re.M), (
            f"no section of {page}.md is headed by `{cmd['syntax']}`"
        )


@pytest.mark.parametrize("page", PAGES)
def test_every_message_is_quoted(page):
    prose = _prose(page)
    for msg in _spec(page).messages:
        for part in fixed_parts(msg["text"]):
            assert part in prose, f"{page}.md does not contain {part!r} (message {msg['id']})"


@pytest.mark.parametrize("page", PAGES)
def test_every_case_names_an_existing_section(page):
    prose = _prose(page)
    for case in _spec(page).cases:
        assert re.search(rf"^##+ {re.escape(case.section)} ", prose, re.M), (case.id, case.section)


@pytest.mark.parametrize("page", PAGES)
def test_bad_input_table_names_existing_cases(page):
    prose = _prose(page)
    n = PAGES[page]
    table = prose[prose.index(f"## {n} Bad input") : prose.index(f"## {int(n) + 1} ")]
    ids = {c.id for c in _spec(page).cases}
    named = {x for x in re.findall(r"`([a-z0-9_]+)`", table) if "_" in x}
    assert named and named <= ids, named - ids


@pytest.mark.parametrize("page", PAGES)
def test_the_index_links_the_page(page):
    index = (SPEC_DIR / "README.md").read_text(encoding="utf-8")
    assert f"({page}.md)" in index and f"({page}.yaml)" in index


def test_inferred_expectations_are_marked_where_no_source_exists():
    # the LPM01A's firmware source is not published: every case that depends on
    # more than UM2269 and the runners' parsers says so
    spec = _spec("lpm01a")
    assert sum(1 for c in spec.cases if c.inferred) >= 10
    # the H573's is: its cases are read from it
    assert not any(c.inferred for c in _spec("ioman_h573").cases)


@pytest.mark.parametrize("name", ["dut_protocol", "sww01_protocol", "ioman_arduino", "ioman_h573", "lpm01a"])
def test_every_case_of_every_spec_is_classified(name):
    """The runner / reference classification is data, one field per case, and
    the section it names exists in the page."""
    spec = _spec(name)
    prose = _prose(name)
    for case in spec.cases:
        assert case.requirement in ("runner", "reference"), (name, case.id)
        assert (case.requirement == "runner") == bool(case.breaks), (name, case.id)
        assert re.search(rf"^##+ {re.escape(case.section)} ", prose, re.M), (name, case.id, case.section)
