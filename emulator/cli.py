"""The ``tinytwin`` console command."""
from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import typer

from . import pystack
from .config import TwinConfig, twin_options
from .dut.core import VARIANTS
from .errors import TinytwinError

app = typer.Typer(
    help="tinytwin: a software DUT and digital twin of the MLPerf Tiny reference board, and a host runner.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("tinytwin")
        except PackageNotFoundError:  # run from a source tree that is not installed
            v = "unknown (not installed)"
        typer.echo(f"tinytwin {v}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    """tinytwin: a software DUT and digital twin of the MLPerf Tiny reference board, and a host runner."""


def fail(message: str, code: int = 2) -> None:
    """Print ``tinytwin: message`` on stderr and exit with ``code``."""
    typer.echo(f"tinytwin: {message}", err=True)
    raise typer.Exit(code)


def serve_until_signal(twin, lines: list[str], on_close=None) -> None:
    """Run ``twin`` in this thread until SIGINT/SIGTERM; print ``lines`` first.
    Then close the twin (``on_close``, if given, does it)."""
    stop = threading.Event()

    def _stop(signum, frame):
        stop.set()
        twin.wake()

    old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    for line in lines:
        print(line, flush=True)
    twin.log = lambda msg: print(f"tinytwin: {msg}", file=sys.stderr, flush=True)
    try:
        pystack.with_headroom(twin.run, stop)  # see emulator/pystack.py
    finally:
        (on_close or twin.close)()
        for s, h in old.items():
            signal.signal(s, h)


def parse_hostport(text: str, option: str = "--tcp") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise typer.BadParameter(f"expects HOST:PORT (e.g. 127.0.0.1:7000), got {text!r}", param_hint=option)
    return (host or "127.0.0.1").strip("[]"), int(port)


@app.command()
@twin_options(speed_default="realtime", power=False)
def dut(
    cfg: TwinConfig,
    link: Optional[Path] = typer.Option(None, "--link", help="symlink to create at the pty device, e.g. /tmp/tinytwin/dut"),
    tcp: Optional[str] = typer.Option(None, "--tcp", help="also serve on TCP HOST:PORT (pyserial socket://HOST:PORT)"),
    baud: Optional[int] = typer.Option(None, "--baud", help="the DUT's UART baud (default: the firmware's, 115200; ad01 921600; energy mode 9600)"),
    energy: bool = typer.Option(False, "--energy", help="the firmware built for energy mode (9600 baud, GPIO timestamps); normally used inside `tinytwin rig`"),
    firmware_variant: str = typer.Option("reference", "--firmware-variant", help="reference (default), or a firmware with one porting mistake, to see what `tinytwin conform` reports: " + ", ".join(v for v in VARIANTS if v != "reference")),
) -> None:
    """Serve one DUT (performance-mode firmware by default) on a pseudo-terminal."""
    from .benches.dut import build_dut_bench
    from .transport import PtyPort, TcpListener

    hostport = parse_hostport(tcp) if tcp else None
    try:
        bench = build_dut_bench(cfg.replace(baud=baud, energy_mode=energy, firmware_variant=firmware_variant))
    except TinytwinError as exc:  # a model, a profile: the message names the fix
        fail(str(exc))
    lines = []
    try:
        port = bench.bridge.attach(PtyPort("dut", link=link, initial_baud=bench.dut.uart.baud))
        lines.append(f"dut: {port.device}" + (f" (link {port.link})" if port.link else ""))
        if hostport:
            listener = TcpListener("dut-tcp", *hostport, bench.bridge)
            bench.twin.add_port(listener)
            lines.append(f"dut: socket://{listener.address[0]}:{listener.address[1]}")
    except TinytwinError as exc:
        bench.twin.close()
        fail(str(exc))
    lines.append(
        f"model {bench.dut.profile.name}, {bench.dut.uart.baud} baud, speed {cfg.speed}, "
        f"{'energy' if energy else 'performance'} mode; Ctrl-C to stop"
    )
    serve_until_signal(bench.twin, lines)


def _mount() -> None:
    """Mount the sub-commands that live with their subsystems."""
    from runner.cli import register as register_runner

    from .benches.external import register as register_external
    from .control.cli import register as register_ctl
    from .benches.rig import register as register_rig
    from .cpu.cli import register as register_cpu
    from .models.cli import app as models_app
    from .whatif.cli import register as register_whatif

    app.add_typer(models_app, name="models", help="Download, verify and inspect the official models.")
    register_cpu(app)
    register_runner(app)
    register_rig(app)
    register_external(app)
    register_ctl(app)
    register_whatif(app)


_mount()


def command():
    """The click command behind ``tinytwin``, with flags shown without a
    ``<bool>`` placeholder (typer >= 0.29 prints one after every flag,
    ``--help`` included)."""
    cmd = typer.main.get_command(app)
    _quiet_flags(cmd, ["-h", "--help"])
    return cmd


def _quiet_flags(cmd, help_names: list[str]) -> None:
    for param in cmd.params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    ctx = SimpleNamespace(help_option_names=help_names)
    help_opt = cmd.get_help_option(ctx)  # made once and kept by the command
    if help_opt is not None:
        help_opt.metavar = ""
    for sub in getattr(cmd, "commands", {}).values():
        _quiet_flags(sub, help_names)


def main() -> None:
    command()()


if __name__ == "__main__":
    main()
