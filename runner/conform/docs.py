"""The tables of ``firmware_api_spec/porting_the_dut_firmware.md``, built from
the cases of ``dut_protocol.yaml`` (what the runners need, what is the
reference firmware's own). ``python -m runner.conform.docs`` rewrites them in
place; tests/test_conform_docs.py checks that the page is current."""
from __future__ import annotations

import sys
from pathlib import Path

from firmware_api_spec import SPEC_DIR, Spec, load_spec

from .report import prose_section

PAGE = SPEC_DIR / "porting_the_dut_firmware.md"
BEGIN = "<!-- generated from dut_protocol.yaml: begin (python -m runner.conform.docs) -->"
END = "<!-- generated from dut_protocol.yaml: end -->"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _section_key(number: str) -> tuple[int, ...]:
    return tuple(int(x) for x in number.split("."))


def case_flags(case) -> list[str]:
    """What limits where a case runs: its model, its firmware build, opt-in,
    measured, inferred."""
    bits = []
    if case.model != "any":
        bits.append(case.model)
    if case.mode != "any":
        bits.append(case.mode)
    if case.risky:
        bits.append("risky, opt-in")
    if case.timing:
        bits.append("timing")
    if case.inferred:
        bits.append("inferred")
    return bits


def _scope(case) -> str:
    return ", ".join(case_flags(case))


def porting_tables(spec: Spec | None = None) -> str:
    spec = spec or load_spec()
    out: list[str] = [BEGIN, ""]
    runner = [c for c in spec.cases if c.requirement == "runner"]
    reference = [c for c in spec.cases if c.requirement == "reference"]
    out.append(f"### What the runners need ({len(runner)} cases)")
    out.append("")
    out.append("A port that deviates from one of these breaks mlcommons/tiny's runner or the EEMBC EnergyRunner "
               "(or makes it report wrong figures). Each row: the case, what it checks, and what a runner does "
               "when a board departs from it.")
    out.append("")
    out.append("| case | § | what the firmware must do | what breaks otherwise |")
    out.append("|---|---|---|---|")
    for c in sorted(runner, key=lambda c: _section_key(c.section)):
        scope = f" ({_scope(c)})" if _scope(c) else ""
        out.append(f"| `{c.id}`{scope} | {c.section} | {_cell(c.why)} | {_cell(c.breaks)} |")
    out.append("")
    out.append(f"### Reference-firmware behaviour ({len(reference)} cases)")
    out.append("")
    out.append("The reference firmware's own behaviour, quirks included. No runner depends on it: a port may "
               "behave otherwise, and the tester then reports a deviation that does not break a runner. "
               "Copying it makes a port indistinguishable from the reference board, which is what the twin does.")
    out.append("")
    by_section: dict[str, list] = {}
    for c in reference:
        by_section.setdefault(c.section, []).append(c)
    for number in sorted(by_section, key=_section_key):
        found = prose_section("dut_protocol.md", number)
        title = found[0] if found else number
        anchor = f"dut_protocol.md#{found[1]}" if found else "dut_protocol.md"
        out.append(f"**[§ {title}]({anchor})**")
        out.append("")
        for c in by_section[number]:
            scope = f" ({_scope(c)})" if _scope(c) else ""
            out.append(f"* `{c.id}`{scope}: {_cell(c.why)}")
        out.append("")
    out.append(END)
    return "\n".join(out)


def current_page(page: Path = PAGE) -> str:
    """The page with its generated part rebuilt."""
    text = page.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + porting_tables() + text[end:]


def main() -> None:
    PAGE.write_text(current_page(), encoding="utf-8")
    print(f"rewrote the tables of {PAGE}", file=sys.stderr)


if __name__ == "__main__":
    main()
