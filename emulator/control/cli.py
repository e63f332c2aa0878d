"""``tinytwin ctl``: act on a running twin (``tinytwin rig``, ``tinytwin
external``) through its control socket."""
from __future__ import annotations

import json
from typing import Optional

import typer

from ..errors import TinytwinError
from .bench import describe_ops
from .server import CONTROL_ENV, DEFAULT_SOCKET, ControlClient

app = typer.Typer(
    help="Act on a running twin: press RESET, power-cycle, hang, unplug a port, drop or garble bytes, ... "
         "(the operations run at a defined simulated time; see firmware_api_spec/faults.md).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

PORT = typer.Argument(..., help="dut, io, emon or js220 (see `tinytwin ctl state`)")
DIRECTION = typer.Argument(..., help="to-board (host to board) or to-host (board to host)")


@app.callback()
def _options(
    ctx: typer.Context,
    socket: Optional[str] = typer.Option(None, "--socket", "-s",
                                         help=f"the twin's control socket (default: ${CONTROL_ENV}, else {DEFAULT_SOCKET})"),
    tcp: Optional[str] = typer.Option(None, "--tcp", help="a twin started with --control-tcp HOST:PORT"),
    as_json: bool = typer.Option(False, "--json", help="print the answer as JSON"),
) -> None:
    hostport = None
    if tcp:
        host, sep, port = tcp.rpartition(":")
        if not sep or not port.isdigit():
            raise typer.BadParameter(f"expects HOST:PORT, got {tcp!r}", param_hint="--tcp")
        hostport = (host or "127.0.0.1", int(port))
    ctx.obj = {"client": ControlClient(socket, tcp=hostport), "json": as_json}


def _do(ctx: typer.Context, op: str, **args) -> None:
    args = {k: v for k, v in args.items() if v is not None}
    try:
        result = ctx.obj["client"].call(op, **args)
    except TinytwinError as exc:
        typer.echo(f"tinytwin ctl: {exc}", err=True)
        raise typer.Exit(2)
    if ctx.obj["json"]:
        typer.echo(json.dumps(result, indent=1, default=str))
        return
    sim = result.pop("sim_s", None)
    result.pop("op", None)
    head = f"{op} at {sim:.6f} s (simulated)" if sim is not None else op
    note = result.pop("note", None)
    typer.echo(head + (f": {note}" if note else ""))
    for key, value in result.items():
        if key == "done":
            continue
        if isinstance(value, dict):
            typer.echo(f"{key}:")
            typer.echo("\n".join("  " + ln for ln in json.dumps(value, indent=1, default=str).splitlines()))
        else:
            typer.echo(f"{key}: {value}")


@app.command()
def state(ctx: typer.Context) -> None:
    """The bench's state: DUT, interface board, EMONs, ports and their armed faults."""
    _do(ctx, "state")


@app.command()
def reset(ctx: typer.Context) -> None:
    """Press the DUT's RESET button."""
    _do(ctx, "reset")


@app.command("power-cycle")
def power_cycle(ctx: typer.Context, off_ms: float = typer.Option(100.0, "--off-ms", help="how long the supply is off")) -> None:
    """Cut the DUT's supply, then restore it."""
    _do(ctx, "power-cycle", off_ms=off_ms)


@app.command("brown-out")
def brown_out(ctx: typer.Context, ms: float = typer.Option(1.0, "--ms", help="how long the supply sags")) -> None:
    """The DUT's supply sags below its brown-out level: the MCU resets."""
    _do(ctx, "brown-out", ms=ms)


@app.command()
def hang(ctx: typer.Context, board: str = typer.Argument("dut", help="dut or io")) -> None:
    """The firmware stops answering (a HardFault): until RESET (DUT) or a power cycle."""
    _do(ctx, "hang", board=board)


@app.command()
def timer(ctx: typer.Context, to: Optional[int] = typer.Option(None, "--to", help="set the DUT's µs timer to this"),
          by: Optional[int] = typer.Option(None, "--by", help="jump the timer by this many µs")) -> None:
    """Jump the DUT's 32-bit µs timer (e.g. --to 4294967000: it wraps soon)."""
    _do(ctx, "timer", to_us=to, by_us=by)


@app.command()
def unplug(ctx: typer.Context, port: str = PORT) -> None:
    """Pull a board's USB cable: its port disappears, what it powers goes off."""
    _do(ctx, "unplug", port=port)


@app.command()
def replug(ctx: typer.Context, port: str = PORT) -> None:
    """Plug it in again (a new port device; the board boots)."""
    _do(ctx, "replug", port=port)


@app.command()
def drop(ctx: typer.Context, port: str = PORT, direction: str = DIRECTION,
         count: int = typer.Argument(1, help="how many bytes")) -> None:
    """Lose the next COUNT bytes."""
    _do(ctx, "drop", port=port, direction=direction, count=count)


@app.command()
def garble(ctx: typer.Context, port: str = PORT, direction: str = DIRECTION,
           count: int = typer.Argument(1, help="how many bytes")) -> None:
    """Flip a bit in each of the next COUNT bytes."""
    _do(ctx, "garble", port=port, direction=direction, count=count)


@app.command("drop-line")
def drop_line(ctx: typer.Context, port: str = PORT, direction: str = DIRECTION,
              count: int = typer.Argument(1, help="how many lines")) -> None:
    """Lose the next COUNT lines (to-board: commands)."""
    _do(ctx, "drop-line", port=port, direction=direction, count=count)


@app.command("garble-line")
def garble_line(ctx: typer.Context, port: str = PORT, direction: str = DIRECTION,
                count: int = typer.Argument(1, help="how many lines")) -> None:
    """Flip a bit in one byte of each of the next COUNT lines."""
    _do(ctx, "garble-line", port=port, direction=direction, count=count)


@app.command()
def delay(ctx: typer.Context, port: str = PORT, direction: str = DIRECTION,
          ms: float = typer.Argument(..., help="the added latency (0 ends it)")) -> None:
    """Delay every byte by MS milliseconds from now on (a USB latency)."""
    _do(ctx, "delay", port=port, direction=direction, ms=ms)


@app.command()
def clear(ctx: typer.Context, port: Optional[str] = typer.Argument(None, help="a port (default: all)")) -> None:
    """Disarm the faults and delays armed so far."""
    _do(ctx, "clear", port=port)


@app.command("stream-emon")
def stream_emon(ctx: typer.Context) -> None:
    """The LPM01A streams as a killed earlier run left it (a stale stream)."""
    _do(ctx, "stream-emon")


@app.command("js220-loss")
def js220_loss(ctx: typer.Context, ms: float = typer.Argument(..., help="milliseconds of stream lost"),
               in_ms: float = typer.Option(0.0, "--in-ms", help="start that long from now")) -> None:
    """The JS220 loses MS of its stream (NaN samples on the host)."""
    _do(ctx, "js220-loss", ms=ms, in_ms=in_ms)


@app.command()
def ops() -> None:
    """List the operations (also what a fault plan's 'do:' takes)."""
    for line in describe_ops():
        typer.echo(line)


def register(parent) -> None:
    parent.add_typer(app, name="ctl")


__all__ = ["app", "register"]
