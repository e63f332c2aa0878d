"""What ``tinytwin conform`` writes: ``report.json``, an annotated
``transcript.md`` (every exchange with the bytes on the wire and the spec
section it checks), and a terminal summary (rich).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from firmware_api_spec import SPEC_DIR

from .session import DEVIATION, NA, PASS, SKIPPED, CaseResult, ConformReport
from .wire import Exchange

TOOL = "tinytwin conform"

# --------------------------------------------------------------------------------
# the prose: sections and their anchors


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def prose_section(prose_file: str, number: str) -> tuple[str, str, str] | None:
    """(heading, anchor, body) of section ``number`` ("5.1", "9") of a prose
    page, or None."""
    path = SPEC_DIR / prose_file
    if not number or not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    m = re.search(rf"^(#{{2,4}}) ({re.escape(number)} .*)$", text, re.M)
    if not m:
        return None
    level = len(m.group(1))
    rest = text[m.end():]
    nxt = re.search(rf"^#{{2,{level}}} ", rest, re.M)
    body = rest[: nxt.start()] if nxt else rest
    # a section with subsections: stop at its first subsection
    sub = re.search(r"^#{2,4} ", body, re.M)
    if sub:
        body = body[: sub.start()]
    return m.group(2), slug(m.group(2)), body.strip()


# --------------------------------------------------------------------------------
# bytes as a reader sees them


def show_bytes(data: bytes) -> str:
    """Text with CR, LF, TAB, NUL and other unprintable bytes escaped."""
    out = []
    for c in data:
        if c == 0x0D:
            out.append("\\r")
        elif c == 0x0A:
            out.append("\\n")
        elif c == 0x09:
            out.append("\\t")
        elif c == 0x5C:
            out.append("\\\\")
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
        else:
            out.append(f"\\x{c:02x}")
    return "".join(out)


def hex_bytes(data: bytes, limit: int = 24) -> str:
    h = data[:limit].hex(" ")
    return h + (f" ... ({len(data)} bytes)" if len(data) > limit else "")


def wire_block(ex: Exchange, max_lines: int = 40) -> list[str]:
    """An exchange as lines of a text block: what the host wrote, then each
    line the board sent with its arrival time (ms after the write)."""
    out = []
    if ex.sent:
        out.append(f"-> {show_bytes(ex.sent)}")
        if any(not 0x20 <= c < 0x7F for c in ex.sent):
            out.append(f"   ({len(ex.sent)} bytes: {hex_bytes(ex.sent)})")
    for t, data in ex.injected:
        out.append(f"-> +{(t - ex.t_sent) * 1e3:8.1f} ms  {show_bytes(data)}   (sent while the board was answering)")
    lines = ex.lines()
    shown = lines if len(lines) <= max_lines else lines[: max_lines // 2] + [(None, b"")] + lines[-max_lines // 2 :]
    for t, line in shown:
        if t is None:
            out.append(f"<- ... {len(lines) - max_lines} more lines ...")
            continue
        out.append(f"<- +{t * 1e3:8.1f} ms  {show_bytes(line)}")
    if not lines:
        out.append("<- (nothing)")
    return out


# --------------------------------------------------------------------------------
# report.json


def _exchange_json(ex: Exchange) -> dict[str, Any]:
    return {
        "kind": ex.kind,
        "note": ex.note,
        "sent": ex.sent.decode("latin-1"),
        "received": [{"ms": round(t * 1e3, 3), "line": line.decode("latin-1")} for t, line in ex.lines()],
        "injected": [{"ms": round((t - ex.t_sent) * 1e3, 3), "bytes": d.decode("latin-1")} for t, d in ex.injected],
        "ended": ex.ended,
    }


def result_json(r: CaseResult) -> dict[str, Any]:
    c = r.case
    return {
        "id": c.id,
        "status": r.status,
        "requirement": c.requirement,
        "breaks_runner": r.breaks_runner,
        "breaks": c.breaks if r.breaks_runner else "",
        "section": c.section,
        "why": c.why,
        "reason": r.reason,
        "inferred": c.inferred,
        "risky": c.risky,
        "expected": r.expected,
        "allowed_as": r.allowed_as,
        "got": r.answer.text_lines() if r.answer is not None else None,
        "measured": r.measured,
        "seconds": round(r.seconds, 3),
        "exchanges": [_exchange_json(ex) for ex in r.exchanges],
    }


def report_json(rep: ConformReport) -> dict[str, Any]:
    return {
        "tool": TOOL,
        "profile": rep.profile.name,
        "profile_description": rep.profile.description,
        "spec": rep.spec_path,
        "spec_version": rep.spec_version,
        "port": rep.port,
        "baud": rep.baud,
        "model": rep.model,
        "identity": rep.identity,
        "started": rep.started,
        "seconds": round(rep.seconds, 3),
        "options": rep.options,
        "summary": {
            "pass": rep.count(PASS),
            "deviation": rep.count(DEVIATION),
            "not_applicable": rep.count(NA),
            "skipped": rep.count(SKIPPED),
            "breaks_runner": [r.id for r in rep.breaking],
            "pass_rate": rep.pass_rate,
        },
        "notes": rep.notes,
        "stopped": rep.stopped,
        "preamble": [_exchange_json(ex) for ex in rep.preamble],
        "cases": [result_json(r) for r in rep.results],
    }


# --------------------------------------------------------------------------------
# transcript.md

_VERDICT = {PASS: "pass", DEVIATION: "DEVIATION", NA: "not applicable", SKIPPED: "skipped"}


def _requirement_text(r: CaseResult) -> str:
    if r.case.requirement == "runner":
        return "required by the runners"
    return "reference-firmware behaviour"


def _section_link(prose_file: str, section: str, link_base: str) -> str:
    found = prose_section(prose_file, section)
    target = f"{link_base}/{prose_file}" if link_base else prose_file
    if found is None:
        return f"[{prose_file}]({target})"
    title, anchor, _ = found
    return f"[{prose_file} § {title}]({target}#{anchor})"


def transcript_md(rep: ConformReport, link_base: str = "", intro: str | None = None,
                  port_label: str | None = None) -> str:
    """The session as a Markdown lesson: each case with the bytes on the wire,
    the rule it checks (a link into the prose) and the verdict."""
    p = rep.profile
    out: list[str] = []
    out.append(f"# Conformance transcript: {p.description}")
    out.append("")
    model = f", model {rep.model}" if rep.model else ""
    out.append(
        f"`{TOOL} --profile {p.name}` against {port_label or f'`{rep.port}`'} at {rep.baud} baud{model}, "
        f"spec [{p.spec_file}]({(link_base + '/') if link_base else ''}{p.spec_file}) "
        f"(version {rep.spec_version}), {rep.started}, {rep.seconds:.1f} s."
    )
    out.append("")
    rate = rep.pass_rate
    out.append(
        f"**{rep.count(PASS)} pass, {rep.count(DEVIATION)} deviations "
        f"({len(rep.breaking)} of them break a runner), {rep.count(NA)} not applicable, "
        f"{rep.count(SKIPPED)} skipped**"
        + (f" — {rate * 100:.0f} % of the cases that ran pass." if rate is not None else ".")
    )
    out.append("")
    for note in rep.notes:
        out.append(f"> {note}")
        out.append("")
    if rep.primer:
        out.append("### The protocol in a nutshell")
        out.append("")
        out.append(rep.primer.strip())
        out.append("")
    out.append(intro if intro is not None else HOW_TO_READ)
    out.append("")
    if rep.preamble:
        out.append("## Opening the port")
        out.append("")
        out.append(
            "Before the cases, the tester listens for a boot banner (if asked to), ends any partial command "
            "the board may hold, and asks the board what it is."
        )
        out.append("")
        for ex in rep.preamble:
            out.append(f"*{ex.kind}*: {ex.note}")
            out.append("")
            out.append("```text")
            out.extend(wire_block(ex))
            out.append("```")
            out.append("")
    ran = [r for r in rep.results if r.exchanges or r.answer is not None]
    out.append("## Index")
    out.append("")
    out.append("| # | case | checks | needed by | verdict |")
    out.append("|---|---|---|---|---|")
    for i, r in enumerate(ran, 1):
        anchor = slug(f"{i}. `{r.id}` — {_VERDICT[r.status]}")
        needed = "runners" if r.case.requirement == "runner" else "reference"
        out.append(f"| {i} | [`{r.id}`](#{anchor}) | § {r.case.section} | {needed} | {_VERDICT[r.status]} |")
    out.append("")
    out.append("## The cases")
    out.append("")
    for i, r in enumerate(ran, 1):
        out.extend(_case_md(i, r, p.prose_file, link_base, rep.model))
    not_run = [r for r in rep.results if r not in ran]
    if not_run:
        out.append("## Cases not run")
        out.append("")
        out.append("| case | verdict | why | checks |")
        out.append("|---|---|---|---|")
        for r in not_run:
            link = _section_link(p.prose_file, r.case.section, link_base) if r.case.section else ""
            out.append(f"| `{r.id}` | {_VERDICT[r.status]} | {r.reason.replace('|', '/')} | {link} |")
        out.append("")
    return "\n".join(out) + "\n"


HOW_TO_READ = """\
### How to read this transcript

Every case is one question to the board and the answer the spec expects. In the text blocks,
`->` is what the host wrote and `<-` each line the board sent, with the time it arrived in
milliseconds after the write. Bytes are shown as text, with `\\r` for CR (0x0D), `\\n` for LF
(0x0A), `\\t` for TAB and `\\xNN` for any other byte that is not printable; the host's bytes
are also given in hex when some are not printable.

Each case names the section of the spec it checks (follow the link for the rule in prose),
whether the runners depend on it (*required by the runners*: a board that deviates breaks
mlcommons/tiny's runner or the EEMBC EnergyRunner) or it is *reference-firmware behaviour*
(a quirk of the reference firmware a port need not copy). A board cannot be reset over its
serial port, so before a case the tester may *prepare* the board (end a partial command,
recreate the power-on state of the db buffer) and run the case's *setup*; those exchanges
are folded away, and only the last exchange is checked."""


def _case_md(i: int, r: CaseResult, prose_file: str, link_base: str, model: str | None) -> list[str]:
    c = r.case
    out = [f"### {i}. `{c.id}` — {_VERDICT[r.status]}", ""]
    meta = [_requirement_text(r)]
    if c.section:
        meta.append("checks " + _section_link(prose_file, c.section, link_base))
    if c.inferred:
        meta.append(f"inferred: {c.inferred}")
    out.append(" · ".join(meta))
    out.append("")
    if c.why:
        out.append(f"*{' '.join(c.why.split())}*")
        out.append("")
    before = [ex for ex in r.exchanges if ex.kind in ("prepare", "sync", "setup")]
    after = [ex for ex in r.exchanges if ex.kind in ("timing", "teardown", "probe")]
    if before:
        n = len(before)
        out.append(f"<details><summary>preparation and setup ({n} exchange{'s' if n != 1 else ''})</summary>")
        out.append("")
        out.append("```text")
        shown = before if n <= 8 else before[:4] + [None] + before[-3:]
        for ex in shown:
            if ex is None:
                out.append(f"# ... {n - 7} more exchanges of the same kind ...")
                continue
            label = ex.kind + (f": {ex.note}" if ex.note else "")
            out.append(f"# {label}")
            out.extend(wire_block(ex, max_lines=6))
        out.append("```")
        out.append("")
        out.append("</details>")
        out.append("")
    if r.answer is not None:
        out.append("```text")
        if c.boot:
            out.append("# after a reset (nothing sent)")
        out.extend(wire_block(r.answer))
        out.append("```")
        out.append("")
    if after:
        out.append("<details><summary>further exchanges of the check</summary>")
        out.append("")
        out.append("```text")
        for ex in after:
            out.append(f"# {ex.kind}" + (f": {ex.note}" if ex.note else ""))
            out.extend(wire_block(ex, max_lines=6))
        out.append("```")
        out.append("")
        out.append("</details>")
        out.append("")
    exp = ", ".join(f"`{show_bytes(x.encode('latin-1'))}`" for x in r.expected) if r.expected else "nothing at all"
    out.append(f"Expected: {exp}.")
    out.append("")
    if r.measured:
        out.append("Measured: " + "; ".join(f"{k} = {v}" for k, v in r.measured.items()) + ".")
        out.append("")
    if r.status == PASS:
        out.append("**pass**" + (f": {r.reason}." if r.reason else "."))
    elif r.status == DEVIATION:
        tail = (f" **This breaks a runner**: {c.breaks}" if r.breaks_runner
                else " No runner depends on this (a reference-firmware quirk a port need not copy).")
        if c.inferred:
            tail += (f" The expectation is inferred ({c.inferred}), not read from a source: the board may be "
                     "right and the spec wrong.")
        out.append(f"**DEVIATION**: {r.reason}.{tail}")
    elif r.status == NA:
        extra = f" (allowed answer: {', '.join(f'`{x}`' for x in r.allowed_as)})" if r.allowed_as else ""
        out.append(f"**not applicable**: {r.reason}{extra}.")
    else:
        out.append(f"**skipped**: {r.reason}.")
    out.append("")
    return out


# --------------------------------------------------------------------------------
# writing and the terminal


def default_link_base(out_dir: Path) -> str:
    """How ``transcript.md`` in ``out_dir`` links to the installed spec pages."""
    try:
        return Path(os.path.relpath(SPEC_DIR, out_dir)).as_posix()
    except ValueError:  # another drive (Windows)
        return SPEC_DIR.as_uri()


def write_report(rep: ConformReport, out_dir: Path, link_base: str | None = None) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / "report.json"
    js.write_text(json.dumps(report_json(rep), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md = out_dir / "transcript.md"
    write_transcript(rep, md, link_base)
    return js, md


def write_transcript(rep: ConformReport, path: Path, link_base: str | None = None, port_label: str | None = None) -> Path:
    """``transcript.md`` alone (links to the spec pages relative to ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = default_link_base(path.parent) if link_base is None else link_base
    path.write_text(transcript_md(rep, base, port_label=port_label), encoding="utf-8")
    return path


def print_summary(rep: ConformReport, console=None) -> None:
    """The terminal summary: counts, then every case that did not pass."""
    from rich.console import Console
    from rich.table import Table

    from rich.markup import escape

    console = console or Console()
    rate = rep.pass_rate
    ident = ", ".join(f"{k} {v}" for k, v in rep.identity.items() if v and k != "model_string")
    console.print(f"[bold]{TOOL}[/bold] {rep.profile.name}: {escape(rep.port)} at {rep.baud} baud; {escape(ident)}")
    console.print(
        f"[green]{rep.count(PASS)} pass[/green], "
        f"[{'red' if rep.count(DEVIATION) else 'green'}]{rep.count(DEVIATION)} deviations[/], "
        f"{rep.count(NA)} not applicable, {rep.count(SKIPPED)} skipped"
        + (f" — [bold]{rate * 100:.1f} %[/bold] of the cases that ran pass" if rate is not None else "")
        + f" ({rep.seconds:.1f} s)"
    )
    shown = [r for r in rep.results if r.status == DEVIATION or (r.status == NA and r.allowed_as)
             or (r.status == PASS and r.measured)]
    if shown:
        table = Table(show_lines=False)
        table.add_column("case")
        table.add_column("verdict")
        table.add_column("runner?")
        table.add_column("what")
        for r in shown:
            verdict = {PASS: "[green]pass[/]", DEVIATION: "[red]deviation[/]", NA: "n/a", SKIPPED: "skipped"}[r.status]
            runner = "[red]BREAKS[/]" if r.breaks_runner else ("required" if r.case.requirement == "runner" else "-")
            what = r.reason
            if r.status == DEVIATION and r.case.inferred:
                what = f"{what} (expectation inferred, not read from a source)"
            if r.status == PASS and r.measured:
                what = r.reason or ", ".join(f"{k}={v}" for k, v in list(r.measured.items())[:3])
            table.add_row(r.id, verdict, runner, escape(what))
        console.print(table)
    skipped = [r for r in rep.results if r.status == SKIPPED]
    if skipped:
        console.print(f"skipped: {', '.join(r.id for r in skipped)}")
    if rep.breaking:
        console.print(
            f"[bold red]{len(rep.breaking)} deviation(s) will break a runner:[/] " + ", ".join(r.id for r in rep.breaking)
        )
    for note in rep.notes:
        console.print(f"[yellow]note:[/] {note}")
