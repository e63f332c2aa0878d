"""``tinytwin conform``: the command line of the conformance tester."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..link import PORT_APPEAR_S


#: exit codes: nothing deviates; a deviation breaks a runner; the run could not be made or
#: stopped (a partial report is still written); deviations, none of which breaks a runner
EXIT_PASS, EXIT_BREAKS, EXIT_ERROR, EXIT_REFERENCE_ONLY = 0, 1, 2, 3

PROFILE_HELP = "dut (performance-mode DUT firmware), dut-energy, sww01, ioman-arduino, ioman-h573 or lpm01a"


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out = [x.strip() for v in values for x in v.split(",") if x.strip()]
    return out or None


def conform_command(
    port: Optional[str] = typer.Option(None, "--port", "-p", help="serial device (/dev/ttyACM0, COM3) or pyserial URL (socket://, tinytwin://kws01?...)"),
    baud: Optional[int] = typer.Option(None, "--baud", help="baud rate (default: the profile's: dut tries 115200 then 921600, a quick look at each then the full --timeout, as tinytwin run does; dut-energy 9600; IO managers 115200)"),
    profile: str = typer.Option("dut", "--profile", help=PROFILE_HELP),
    only: Optional[list[str]] = typer.Option(None, "--only", help="run only these cases (ids, comma separated; repeatable)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder for report.json and transcript.md (default: none written)"),
    include_risky: bool = typer.Option(False, "--include-risky", help="also run the cases that may hang the board or damage its state (reset it afterwards)"),
    model: Optional[str] = typer.Option(None, "--model", help="run this model's cases (default: the model the board names in profile%)"),
    data: Optional[Path] = typer.Option(None, "--data", help="shared data folder for the cases that load reference inputs (default $TINYTWIN_SHARED, else ../shared beside a checkout)"),
    boot_wait: float = typer.Option(0.0, "--boot-wait", help="seconds to listen for a boot banner after opening the port (reset the board meanwhile)"),
    with_dut: bool = typer.Option(False, "--with-dut", help="IO managers: a powered DUT with the reference firmware is wired behind the board"),
    dut_baud: int = typer.Option(9600, "--dut-baud", help="ioman-h573 with --with-dut: the DUT's baud (setbaud)"),
    port_wait: float = typer.Option(PORT_APPEAR_S, "--port-wait", min=0.0, help="seconds to wait for a port path that does not exist yet (0: fail at once)"),
    timeout: float = typer.Option(5.0, "--timeout", help="longest silence between two lines of an answer (s)"),
    inference_timeout: float = typer.Option(10.0, "--inference-timeout", help="longest one inference may take (s)"),
    list_cases: bool = typer.Option(False, "--list", help="list the profile's cases and exit"),
    explain: bool = typer.Option(False, "--explain", help="tutorial: walk through a live session step by step (default port: an in-process twin)"),
    no_pause: bool = typer.Option(False, "--no-pause", help="--explain: do not wait for Enter between steps"),
    models_dir: Optional[Path] = typer.Option(None, "--models-dir", help="--explain without --port: the twin's models folder"),
) -> None:
    """Run the spec's protocol cases against a board, a firmware port or a twin, and report
    where it departs from the protocol (and whether that breaks a runner).

    Exit code: 0 nothing deviates; 1 a deviation breaks a runner; 3 deviations, none of which
    breaks a runner (a port may differ there); 2 the run could not be made or
    stopped (the port failed: the report of the cases before is still written)."""
    from ..errors import RunnerError
    from .profiles import profile_named

    try:
        prof = profile_named(profile)
        if list_cases:
            _list(prof)
            raise typer.Exit(EXIT_PASS)
        if explain:
            from .explain import run_explain

            if prof.name != "dut":
                typer.echo(f"tinytwin conform: --explain walks through the DUT protocol (--profile dut), not "
                           f"--profile {prof.name}; run the cases with --port instead", err=True)
                raise typer.Exit(EXIT_ERROR)
            code = run_explain(port, models_dir=models_dir, pause=not no_pause and sys.stdin.isatty(), baud=baud,
                               timeout=timeout, data=data)
            raise typer.Exit(code)
        if not port:
            typer.echo("tinytwin conform: --port is required (or --explain for a tutorial with a twin)", err=True)
            raise typer.Exit(EXIT_ERROR)
        from .report import print_summary, write_report
        from .session import ConformOptions, run_conformance

        opts = ConformOptions(
            port=port, profile=prof.name, baud=baud, only=_split(only), include_risky=include_risky, model=model,
            data=data, boot_wait=boot_wait, with_dut=with_dut, dut_baud=dut_baud, timeout=timeout,
            inference_timeout=inference_timeout, on_result=_progress, port_wait_s=port_wait,
        )
        rep = run_conformance(opts)
    except RunnerError as exc:
        typer.echo(f"tinytwin conform: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR)
    print(file=sys.stderr)
    print_summary(rep)
    if out is not None:
        js, md = write_report(rep, out)
        typer.echo(f"wrote {js} and {md}")
    if rep.stopped:
        typer.echo(f"tinytwin conform: {rep.stopped}", err=True)
        raise typer.Exit(EXIT_ERROR)
    raise typer.Exit(exit_code(rep))


def exit_code(rep) -> int:
    """0: nothing deviates; 1: a deviation breaks a runner; 3: deviations,
    none of which breaks a runner (a port may differ there)."""
    if rep.breaking:
        return EXIT_BREAKS
    return EXIT_REFERENCE_ONLY if rep.count("deviation") else EXIT_PASS


def _progress(result) -> None:
    mark = {"pass": ".", "deviation": "D", "n/a": "-", "skipped": "s"}[result.status]
    print(mark, end="", file=sys.stderr, flush=True)


def _list(prof) -> None:
    from firmware_api_spec import load_spec, spec_path

    from .docs import case_flags

    spec = load_spec(spec_path(prof.spec_file))
    for c in spec.cases:
        if prof.mode and c.mode not in ("any", prof.mode):
            continue  # the other firmware build's cases (--profile dut / dut-energy)
        flags = [c.requirement] + case_flags(c)
        typer.echo(f"{c.id:42s} §{c.section:5s} {', '.join(flags)}")
