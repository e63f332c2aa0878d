"""The ``tinytwin`` console command."""
from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    help="tinytwin: a software DUT and digital twin of the MLPerf Tiny reference board, and a host runner.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SPEED_HELP = (
    "realtime (default: every byte and inference takes the board's wall time), "
    "fast (busy periods cost no wall time; printed timestamps are still the board's), "
    "or a factor such as 10"
)
MODELS_DIR_HELP = "directory with kws01.tflite, vww01.tflite, ic01.tflite, ad01.tflite (default: $TINYTWIN_MODELS_DIR or ~/.cache/tinytwin/models)"


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"tinytwin: {message}", err=True)
    raise typer.Exit(code)


def serve_until_signal(twin, lines: list[str]) -> None:
    """Run ``twin`` in this thread until SIGINT/SIGTERM; print ``lines`` first."""
    stop = threading.Event()

    def _stop(signum, frame):
        stop.set()
        twin.wake()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    for line in lines:
        print(line, flush=True)
    twin.log = lambda msg: print(f"tinytwin: {msg}", file=sys.stderr, flush=True)
    try:
        twin.run(stop)
    finally:
        twin.close()


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        fail(f"--tcp expects HOST:PORT (e.g. 127.0.0.1:7000), got {text!r}")
    return (host or "127.0.0.1").strip("[]"), int(port)


@app.command()
def dut(
    model: str = typer.Option(..., "--model", "-m", help="kws01, vww01, ic01, ad01, or a path to your own int8 .tflite (then --io-profile)"),
    link: Optional[Path] = typer.Option(None, "--link", help="symlink to create at the pty device, e.g. /tmp/tinytwin/dut"),
    tcp: Optional[str] = typer.Option(None, "--tcp", help="also serve on TCP HOST:PORT (pyserial socket://HOST:PORT)"),
    models_dir: Optional[Path] = typer.Option(None, "--models-dir", help=MODELS_DIR_HELP),
    speed: str = typer.Option("realtime", "--speed", help=SPEED_HELP),
    baud: Optional[int] = typer.Option(None, "--baud", help="the DUT's UART baud (default: the firmware's, 115200; ad01 921600; energy mode 9600)"),
    energy: bool = typer.Option(False, "--energy", help="the firmware built for energy mode (9600 baud, GPIO timestamps); normally used inside `tinytwin rig`"),
    backend: str = typer.Option("tflm", "--backend", help="tflm (bit-exact with the board) or litert (faster, see README for fidelity)"),
    io_profile: Optional[str] = typer.Option(None, "--io-profile", help="for your own .tflite: which model's I/O conventions it follows (kws01, vww01, ic01, ad01)"),
    profile: Optional[Path] = typer.Option(None, "--profile", help="timing profile JSON (from `tinytwin calibrate`); default: the reference board's"),
    clock_mhz: Optional[float] = typer.Option(None, "--clock-mhz", help="CPU clock for the cycle model (default 120)"),
    timer_start_us: int = typer.Option(0, "--timer-start-us", help="value of the 32-bit µs timer at reset (e.g. 4293967296 = 1 s before it wraps)"),
    ignore_host_baud: bool = typer.Option(False, "--ignore-host-baud", help="convenience: accept any baud the host sets on the pty instead of garbling bytes like a real UART"),
    firmware_variant: str = typer.Option("reference", "--firmware-variant", help="reference (default), or a firmware with one porting mistake, to see what `tinytwin conform` reports: results-format, no-ready-after-error, cmd-buffer-64, lost-lap-line"),
) -> None:
    """Serve one DUT (performance-mode firmware by default) on a pseudo-terminal."""
    from .benches.dut import build_dut_bench
    from .sim import Speed
    from .transport import PtyPort, TcpListener, TransportError

    try:
        Speed.parse(speed)
    except ValueError as exc:
        fail(str(exc))
    try:
        bench = build_dut_bench(
            model,
            models_dir=models_dir,
            backend=backend,
            io_profile=io_profile,
            speed=speed,
            baud=baud,
            energy_mode=energy,
            timer_start_us=timer_start_us,
            timing_profile=profile,
            clock_mhz=clock_mhz,
            honour_host_baud=not ignore_host_baud,
            variant=firmware_variant,
        )
    except Exception as exc:  # model / profile errors carry a user-facing message
        fail(str(exc))
    lines = []
    try:
        port = bench.bridge.attach(PtyPort("dut", link=link, initial_baud=bench.dut.uart.baud))
        lines.append(f"dut: {port.device}" + (f" (link {port.link})" if port.link else ""))
        if tcp:
            host, p = parse_hostport(tcp)
            listener = TcpListener("dut-tcp", host, p, bench.bridge)
            bench.twin.add_port(listener)
            lines.append(f"dut: socket://{listener.address[0]}:{listener.address[1]}")
    except TransportError as exc:
        bench.twin.close()
        fail(str(exc))
    lines.append(
        f"model {bench.dut.profile.name}, {bench.dut.uart.baud} baud, speed {speed}, "
        f"{'energy' if energy else 'performance'} mode; Ctrl-C to stop"
    )
    serve_until_signal(bench.twin, lines)


def _mount() -> None:
    """Mount the sub-commands that live with their subsystems."""
    from runner.cli import register as register_runner

    from .benches.external import register as register_external
    from .benches.rig import register as register_rig
    from .cpu.cli import register as register_cpu
    from .models.cli import app as models_app

    app.add_typer(models_app, name="models", help="Download, verify and inspect the official models.")
    register_cpu(app)
    register_runner(app)
    register_rig(app)
    register_external(app)


_mount()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
