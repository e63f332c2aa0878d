"""``tinytwin conform --explain``: a guided tour of the DUT protocol, live.

It opens a port (by default an in-process twin of the reference board,
``tinytwin://kws01?speed=realtime``) and walks through the cases listed under
``lesson:`` in ``dut_protocol.yaml``. For each step it shows the rule (the
prose section the case checks), the bytes the host sends, every line the
board answers with the time it took, and why that is the answer (the case's
``why``), then waits for Enter. The same machinery as the tester runs the
exchanges, so what a learner sees is what a runner meets.
"""
from __future__ import annotations

from pathlib import Path

from .profiles import profile_named
from .report import prose_section, show_bytes
from .session import DEVIATION, NA, PASS, Conformance, ConformOptions
from .wire import Exchange

DEFAULT_TWIN = "tinytwin://kws01?speed=realtime&instance=tinytwin-conform-explain"

INTRO_TAIL = """\
Below, each step sends one command and shows the bytes on the wire: `->` what the host wrote,
`<-` each line the board sent and when it arrived (milliseconds after the write). `\\r` and
`\\n` stand for CR and LF."""


def run_explain(
    port: str | None,
    *,
    models_dir: Path | None = None,
    pause: bool = True,
    baud: int | None = None,
    timeout: float = 5.0,
    console=None,
    lesson: list[str] | None = None,
    on_open=None,
    data: Path | None = None,
) -> int:
    """Run the tutorial; returns a process exit code (0: every step behaved as
    the spec says)."""
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.panel import Panel
    from rich.rule import Rule

    console = console or Console()
    if port is None:
        port = DEFAULT_TWIN + (f"&models_dir={models_dir}" if models_dir else "")
        console.print(f"[dim]No --port: using an in-process twin of the reference board ({port}).[/dim]")
    opts = ConformOptions(port=port, profile="dut", baud=baud, timeout=timeout, boot_wait=2.0,
                          on_open=on_open, data=data)
    session = Conformance(opts)
    spec = session.spec
    prof = profile_named("dut")
    steps = lesson or list(spec.data.get("lesson", []))
    console.print(Markdown("# The MLPerf Tiny DUT protocol, live\n\n" + str(spec.data.get("primer", "")).strip()
                           + "\n\n" + INTRO_TAIL))
    session.open()
    boot = next((ex for ex in session.wire.log if ex.kind == "boot"), None)
    from rich.markup import escape

    console.print(
        f"\nThe board on {escape(port)} says it is [bold]{escape(session.driver.identity.get('name', '?'))}[/bold], "
        f"running [bold]{session.driver.model}[/bold] ({session.driver.identity.get('build')} build)."
    )
    ok = True
    try:
        for n, case_id in enumerate(steps, 1):
            case = spec.case(case_id)
            if pause:
                console.input("\n[dim]Press Enter for the next step...[/dim]")
            console.print(Rule(f"Step {n} of {len(steps)}: {case.id}"))
            found = prose_section(prof.prose_file, case.section)
            if found is not None:
                title, _, body = found
                console.print(Panel(Markdown(_first_paragraphs(body)), title=f"{prof.prose_file} § {title}",
                                    title_align="left"))
            start = len(session.wire.log)
            result = session.run_case(case, boot)
            exchanges = session.wire.log[start:]
            for ex in exchanges:
                if ex.kind in ("prepare", "sync"):
                    continue
                _print_exchange(console, ex, case.boot and ex is result.answer)
            if case.boot and result.answer is not None:
                _print_exchange(console, result.answer, True)
            console.print(f"[bold]Why:[/bold] {escape(' '.join(case.why.split()))}.")
            who = "The runners depend on this." if case.requirement == "runner" else (
                "This is the reference firmware's own behaviour; a port need not copy it.")
            console.print(f"[dim]{who}[/dim]")
            if result.measured:
                console.print("[bold]Measured:[/bold] " + escape("; ".join(f"{k} = {v}" for k, v in result.measured.items())))
            if result.status == PASS:
                console.print("[green]As the spec says.[/green]")
            elif result.status == NA:
                console.print(f"[yellow]Not shown here:[/yellow] {escape(result.reason)}.")
            else:
                ok = ok and result.status != DEVIATION
                console.print(f"[red]The board departs from the spec:[/red] {escape(result.reason)}.")
    finally:
        session.close()
    console.print(Rule("The end"))
    console.print(
        "That is the protocol a host runner drives. To check a whole board or a firmware port case by "
        f"case: [bold]tinytwin conform --port {port} --out DIR[/bold] (report.json and an annotated "
        "transcript.md); the rules are in firmware_api_spec/dut_protocol.md."
    )
    return 0 if ok else 1


def _first_paragraphs(body: str, max_lines: int = 14) -> str:
    lines = body.splitlines()
    out: list[str] = []
    for line in lines:
        if len(out) >= max_lines and not line.strip():
            break
        out.append(line)
    return "\n".join(out).strip()


def _print_exchange(console, ex: Exchange, boot: bool = False) -> None:
    from rich.markup import escape

    label = {"setup": "first, to set the stage", "send": "the step", "timing": "then",
             "teardown": "afterwards", "probe": "then"}.get(ex.kind, ex.kind)
    if boot:
        console.print("[bold]After a reset[/bold] (nothing sent):")
    elif ex.kind == "send":
        console.print("[bold]The host sends[/bold]:")
    else:
        console.print(f"[dim]{label}:[/dim]")
    if ex.sent:
        console.print(f"  -> [cyan]{escape(show_bytes(ex.sent))}[/cyan]   [dim]({ex.sent.hex(' ')})[/dim]"
                      if len(ex.sent) <= 24 else f"  -> [cyan]{escape(show_bytes(ex.sent))}[/cyan]")
    for t, data in ex.injected:
        console.print(f"  -> +{(t - ex.t_sent) * 1e3:7.1f} ms  [cyan]{escape(show_bytes(data))}[/cyan]  "
                      "[dim](sent while the board was busy)[/dim]")
    lines = ex.lines()
    if not lines:
        console.print("  <- [dim](nothing)[/dim]")
    for i, (t, line) in enumerate(lines):
        if len(lines) > 24 and 12 <= i < len(lines) - 8:
            if i == 12:
                console.print(f"  <- [dim]... {len(lines) - 20} more lines ...[/dim]")
            continue
        console.print(f"  <- +{t * 1e3:7.1f} ms  [green]{escape(show_bytes(line))}[/green]")
