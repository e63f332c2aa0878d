"""``tinytwin external``: run a host program written for the real boards
against the twin, unchanged.

The program we have in mind is the Python runner of mlcommons/tiny
(``benchmark/runner/main.py``), which most MLPerf Tiny submitters use. It finds
its boards by listing serial ports with pyserial's
``serial.tools.list_ports.comports()`` and matching each port's USB vendor and
product id against its devices YAML (``devices_kws_ic_vww.yaml``,
``devices_ad.yaml``):

=================  ===========  ================================================
board              VID:PID      role
=================  ===========  ================================================
NUCLEO-L4R5ZI      0483:374B    the DUT (its ST-LINK/V2-1 virtual COM port)
STM32H573I-DK      0483:374E    the interface board (its STLINK-V3E VCP)
Arduino Uno        2341:0043    the older interface board
LPM01A             0483:5740    the energy monitor
=================  ===========  ================================================

The launcher

1. builds the twin: the DUT alone (performance/accuracy firmware) or, with
   ``--energy``, the energy rig (LPM01A, interface board, DUT with the
   energy-mode firmware), and gives each board the host can reach a real
   pseudo-terminal (:class:`emulator.transport.PtyPort`);
2. writes ``ports.json`` and a copy of
   :mod:`emulator.benches.inject`'s ``sitecustomize.py`` into a fresh
   temporary directory, and prepends that directory to the child's
   ``PYTHONPATH`` (``$TINYTWIN_EXTERNAL_PORTS`` names the JSON file): the
   child's ``comports()`` then lists the ptys first, with the VID/PID and
   descriptions above. Nothing else is injected, and no file of the program
   is read, copied or changed;
3. runs the command in the caller's working directory with the caller's
   stdin/stdout/stderr and returns its exit code;
4. tears the twin down and removes the temporary directory.

Speed: ``--speed auto`` (the default) runs the twin ``fast`` except when the
command runs the mlcommons runner in performance or energy mode (``--mode p``
/ ``--mode e``). In performance mode that runner checks with the host's wall
clock that each performance loop lasted at least 10 s, which a fast twin
finishes in well under a second: the twin then runs
:data:`PERFORMANCE_SPEED` times faster than real time, which keeps every
official performance script above 10 s. In energy mode the runner must read
the LPM01A's sample stream as fast as it comes: :data:`ENERGY_SPEED`; for
sww01 in energy mode it is realtime, because the runner's ``stream`` step
sleeps 0.25 s of wall time inside the energy window. See
``firmware_api_spec/external_runner.md``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..config import TwinConfig
from ..errors import ConfigError, TinytwinError
from .inject import PORTS_ENV, SITECUSTOMIZE

#: speed factor ``--speed auto`` picks for the runner's performance mode. The
#: shortest official performance loop (kws01: 5 x ``infer 70 10`` plus the
#: downloads) lasts 73 s on the board; at 4x it lasts ~18 s of wall time, above
#: the runner's 10 s check with margin for slow hosts, and 4x less than
#: realtime.
PERFORMANCE_SPEED = 4.0

#: speed factor ``--speed auto`` picks for the runner's energy mode. The runner
#: reads the LPM01A's 1 kHz sample stream one byte at a time in Python, and
#: right after the DUT's reply to ``infer`` it takes the samples and D7 events
#: read so far: its reader must keep up with the stream, or a window's closing
#: event lands in the next window (IndexError in print_energy_results). It
#: keeps up at 5x on the development machine and not at 8x or fast; 2x leaves
#: margin for slower hosts.
ENERGY_SPEED = 2.0


@dataclass(frozen=True)
class UsbIdentity:
    """What a board's USB-serial bridge tells the host (as pyserial lists it)."""

    vid: int
    pid: int
    manufacturer: str
    product: str
    serial_number: str
    interface: Optional[str] = None

    def describe(self) -> str:
        return f"{self.vid:04X}:{self.pid:04X}"


#: The USB identities of the reference bench, as in the runner's devices YAML.
#: The strings are those the boards' bridges report; the runner matches on
#: VID/PID only.
USB_IDENTITIES = {
    "l4r5zi": UsbIdentity(0x0483, 0x374B, "STMicroelectronics", "STM32 STLink", "TINYTWIN0DUT"),
    "stm32h573i-dk": UsbIdentity(0x0483, 0x374E, "STMicroelectronics", "STLINK-V3", "TINYTWIN0IO"),
    "arduino": UsbIdentity(0x2341, 0x0043, "Arduino (www.arduino.cc)", "Arduino Uno", "TINYTWIN0ARD"),
    "lpm01a": UsbIdentity(0x0483, 0x5740, "STMicroelectronics", "PowerShield", "TINYTWIN0EMON"),
}

INTERFACES = {"h573": "stm32h573i-dk", "arduino": "arduino"}

#: what the runner's devices YAML opens the LPM01A's USB CDC port with (the
#: board ignores it)
EMON_BAUD = 3686400


class ExternalError(TinytwinError):
    """The launcher cannot set up; the message says why and what to do."""


# --------------------------------------------------------------------------
# speed


def runner_mode(command: Sequence[str]) -> Optional[str]:
    """The mode (``e``, ``p`` or ``a``) an mlcommons runner command line asks
    for with ``--mode X``, ``--mode=X``, ``-m X`` or ``-mX`` (the last one
    wins, as with argparse), or ``None`` (the runner then runs accuracy).
    A ``-m`` followed by anything but a mode letter (``python -m module``) is
    not a mode."""
    modes = ("e", "p", "a")
    found = None
    args = list(command)
    for i, arg in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else None
        if arg in ("--mode", "-m") and nxt in modes:
            found = nxt
        elif arg.startswith("--mode=") and arg[7:] in modes:
            found = arg[7:]
        elif arg.startswith("-m") and arg[2:] in modes:
            found = arg[2:]
    return found


def resolve_speed(speed: str, command: Sequence[str]) -> str:
    """``auto`` -> :data:`PERFORMANCE_SPEED` for the runner's performance
    mode, :data:`ENERGY_SPEED` for its energy mode, else ``fast``; any other
    value is returned unchanged."""
    if speed.strip().lower() != "auto":
        return speed
    mode = runner_mode(command)
    if mode == "p":
        return f"{PERFORMANCE_SPEED:g}"
    if mode == "e":
        return f"{ENERGY_SPEED:g}"
    return "fast"


# --------------------------------------------------------------------------
# fault injection on the USB link


@dataclass
class LineDrop:
    """Drop the ``occurrence``-th line (1-based) equal to ``text`` on its way
    from a board to the host, as a line lost on the link would be. Lines are
    counted from the host's first byte on the port on, so that the boot
    banner, which no host sees, does not count."""

    text: str
    occurrence: int
    seen: int = 0
    dropped: int = 0

    @classmethod
    def parse(cls, spec: str) -> "LineDrop":
        text, sep, n = spec.rpartition(":")
        if not sep or not text or not n.isdigit() or int(n) < 1:
            raise ExternalError(f"--drop-line expects TEXT:N with N >= 1 (e.g. m-ready:5), got {spec!r}")
        return cls(text, int(n))


class Trace:
    """A wire log of every host port: one line per chunk of bytes, with the
    simulated time (s), the wall time since the start (s), the port, the
    direction (``>`` host to board, ``<`` board to host) and the bytes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fh = open(self.path, "w", encoding="utf-8", buffering=1 << 16)
        self.wall0 = time.monotonic()
        self.fh.write("# sim_s wall_s port dir bytes (tinytwin external --trace)\n")

    def write(self, twin, port: str, direction: str, data: bytes) -> None:
        if self.fh.closed:
            return
        self.fh.write(f"{twin.now / 1e9:14.6f} {time.monotonic() - self.wall0:10.3f} {port:<9} {direction} {data!r}\n")

    def close(self) -> None:
        self.fh.close()


def _launcher_pty_class():
    from ..transport import PtyPort

    class LauncherPty(PtyPort):
        """A pty that can log its traffic (``--trace``) and lose whole lines on
        their way to the host (``--drop-line``)."""

        def __init__(self, *args, drops: Sequence[LineDrop] = (), trace: Optional[Trace] = None, **kwargs):
            self.trace = trace
            self._on_host_bytes = None
            super().__init__(*args, **kwargs)
            self.drops = list(drops)
            self._line = bytearray()
            self.host_spoke = False

        # the device's handler for host bytes, called in the simulation at the
        # simulated time the bytes arrive: logged there, so that the trace
        # shows that time
        @property
        def on_host_bytes(self):
            return self._on_host_bytes

        @on_host_bytes.setter
        def on_host_bytes(self, handler):
            if handler is None or self.trace is None:
                self._on_host_bytes = handler
                return

            def traced(data, _handler=handler):
                if self.twin is not None:
                    self.trace.write(self.twin, self.name, ">", data)
                _handler(data)

            self._on_host_bytes = traced

        def read_available(self):
            data = super().read_available()
            if data:
                self.host_spoke = True
            return data

        def write_to_host(self, data: bytes) -> None:
            if self.drops:
                data = self._drop_lines(data)
            if data and self.trace is not None and self.twin is not None:
                self.trace.write(self.twin, self.name, "<", data)
            super().write_to_host(data)

        def _drop_lines(self, data: bytes) -> bytes:
            out = bytearray()
            for b in data:
                self._line.append(b)
                if b == 0x0A:  # a line is complete: pass it on or lose it
                    line = bytes(self._line)
                    self._line.clear()
                    text = line.rstrip(b"\r\n").decode("latin-1")
                    lost = False
                    for d in self.drops if self.host_spoke else ():
                        if text == d.text:
                            d.seen += 1
                            if d.seen == d.occurrence:
                                d.dropped += 1
                                lost = True
                    if not lost:
                        out += line
            return bytes(out)

    return LauncherPty


# --------------------------------------------------------------------------
# the bench


@dataclass
class HostSide:
    """One board port the host can open."""

    role: str  # dut, interface, power
    board: str  # key of USB_IDENTITIES
    port: object  # a PtyPort
    baud: int

    @property
    def device(self) -> str:
        return self.port.device

    def ports_entry(self) -> dict:
        usb = USB_IDENTITIES[self.board]
        return {
            "device": self.port.device,
            "role": self.role,
            "board": self.board,
            "vid": usb.vid,
            "pid": usb.pid,
            "manufacturer": usb.manufacturer,
            "product": usb.product,
            "serial_number": usb.serial_number,
            "interface": usb.interface,
            "description": usb.product if usb.interface is None else f"{usb.product} - {usb.interface}",
        }


@dataclass
class ExternalBench:
    """A running twin with its host-side ports and the injection directory."""

    twin: object
    sides: list[HostSide]
    inject_dir: Path
    hide_real_ports: bool = False
    drops: list[LineDrop] = field(default_factory=list)
    objects: dict = field(default_factory=dict)  # dut, rig, ... for tests and reports

    def environment(self, base: Optional[dict] = None) -> dict:
        env = dict(os.environ if base is None else base)
        parts = [str(self.inject_dir)]
        if env.get("PYTHONPATH"):
            parts.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(parts)
        env[PORTS_ENV] = str(self.inject_dir / "ports.json")
        return env

    def write_injection(self) -> None:
        self.inject_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SITECUSTOMIZE, self.inject_dir / "sitecustomize.py")
        config = {
            "generator": "tinytwin external",
            "hide_real_ports": self.hide_real_ports,
            "ports": [s.ports_entry() for s in self.sides],
        }
        (self.inject_dir / "ports.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    def close(self) -> None:
        try:
            self.twin.close()
        finally:
            shutil.rmtree(self.inject_dir, ignore_errors=True)


def _build_dut(cfg: TwinConfig, *, engine, timing, drops, trace):
    from .dut import build_dut_bench

    bench = build_dut_bench(cfg, engine=engine, timing=timing)
    pty = _launcher_pty_class()
    port = bench.bridge.attach(pty("dut", initial_baud=bench.dut.uart.baud, drops=drops, trace=trace))
    side = HostSide("dut", "l4r5zi", port, bench.dut.uart.baud)
    return bench.twin, [side], {"dut": bench.dut, "bridge": bench.bridge}


def _build_rig(cfg: TwinConfig, *, interface, engine, timing, drops, trace, h573_flash_baud):
    from ..ioman.actions import HOST_BAUD
    from .rig import build_rig

    if cfg.baud is not None:
        raise ExternalError("--dut-baud applies to the performance bench; in --energy the DUT runs the energy firmware's 9600 baud")
    rig = build_rig(
        cfg,
        interface=interface,
        emon="lpm01a",
        dir=None,
        engine=engine,
        timing=timing,
        h573_flash_baud=h573_flash_baud if interface == "h573" else None,
    )
    try:
        # the rig's own ptys are replaced by ours (same devices behind them),
        # which can log their traffic and lose lines
        pty = _launcher_pty_class()
        for old in (rig.io_port, rig.emon_port):
            rig.twin.remove_port(old)
            old.close()
        rig.io_port = rig.io_bridge.attach(pty("io", initial_baud=HOST_BAUD, drops=drops, trace=trace))
        rig.emon_port = rig.emon.attach(pty("emon", initial_baud=EMON_BAUD, trace=trace))
        sides = [
            HostSide("interface", INTERFACES[interface], rig.io_port, HOST_BAUD),
            HostSide("power", "lpm01a", rig.emon_port, EMON_BAUD),
        ]
    except BaseException:
        rig.close()
        raise
    return rig.twin, sides, {"rig": rig, "dut": rig.dut}


def open_bench(
    cfg: TwinConfig,
    *,
    energy: bool = False,
    interface: str = "h573",
    hide_real_ports: bool = False,
    drops: Sequence[LineDrop] = (),
    h573_flash_baud: Optional[int] = None,
    trace: Optional[Path] = None,
    engine=None,
    timing=None,
    log: Callable[[str], None] = lambda msg: None,
) -> ExternalBench:
    """Build and start the twin for ``cfg`` (``energy``: the rig with
    ``interface``); write the injection directory. ``engine`` and ``timing``
    replace what ``cfg`` would build."""
    if interface not in INTERFACES:
        raise ExternalError(f"--interface must be one of {', '.join(INTERFACES)} (got {interface!r})")
    drops = list(drops)
    tracer = Trace(trace) if trace is not None else None
    try:
        if energy:
            twin, sides, objects = _build_rig(
                cfg, interface=interface, engine=engine, timing=timing, drops=drops, trace=tracer,
                h573_flash_baud=h573_flash_baud,
            )
        else:
            if cfg.sd_card is not None:
                raise ExternalError("--sd-card is the interface board's SD card: it needs --energy (the bench with the H573)")
            twin, sides, objects = _build_dut(cfg, engine=engine, timing=timing, drops=drops, trace=tracer)
    except BaseException:
        if tracer is not None:
            tracer.close()
        raise
    if tracer is not None:
        twin.on_close(tracer.close)
    inject_dir = Path(tempfile.mkdtemp(prefix="tinytwin-external-"))
    bench = ExternalBench(twin, sides, inject_dir, hide_real_ports=hide_real_ports, drops=drops, objects=objects)
    try:
        bench.write_injection()
        twin.log = log
        twin.start()
    except BaseException:
        bench.close()
        raise
    return bench


# --------------------------------------------------------------------------
# the child process


def run_child(command: Sequence[str], env: dict) -> int:
    """Run ``command`` with our cwd and standard streams; return its exit
    status as a shell reports it (128 + N for a signal N).

    SIGTERM and SIGHUP sent to the launcher are passed on to the child.
    SIGINT is not: Ctrl-C in a terminal reaches the child directly (same
    process group), and the launcher waits for the child to finish.
    """
    try:
        proc = subprocess.Popen(list(command), env=env)
    except FileNotFoundError:
        raise ExternalError(f"command not found: {command[0]!r}") from None
    except PermissionError:
        raise ExternalError(f"cannot execute {command[0]!r}: permission denied") from None

    def forward(signum, frame):
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, forward if sig != signal.SIGINT else signal.SIG_IGN)
        except ValueError:  # not the main thread (embedded use): leave signals alone
            break
    try:
        rc = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - rc if rc < 0 else rc


def run_external(
    command: Sequence[str],
    cfg: TwinConfig,
    *,
    speed: Optional[str] = None,
    energy: bool = False,
    interface: str = "h573",
    hide_real_ports: bool = False,
    drop_lines: Sequence[str] = (),
    h573_flash_baud: Optional[int] = None,
    trace: Optional[Path] = None,
    engine=None,
    timing=None,
    log: Callable[[str], None] = lambda msg: print(f"tinytwin: {msg}", file=sys.stderr, flush=True),
) -> int:
    """Start the twin for ``cfg``, run ``command`` against it, tear down;
    the command's exit status. ``speed`` (text, e.g. ``auto``; see
    :func:`resolve_speed`) replaces ``cfg.speed`` when given."""
    if not command:
        raise ExternalError("no command given; put it after --, e.g. tinytwin external --model kws01 -- python main.py --mode p")
    auto = speed is not None and speed.strip().lower() == "auto"
    if speed is not None:
        chosen = resolve_speed(speed, command)
        if auto and cfg.model.strip().lower() == "sww01" and runner_mode(command) == "e":
            # the runner's stream step sleeps 0.25 s of host time inside the
            # energy window: only realtime gives the board's window
            chosen = "realtime"
        try:
            cfg = cfg.replace(speed=chosen)
        except ConfigError as exc:
            raise ExternalError(f"--speed: {exc}") from None
    drops = [LineDrop.parse(s) for s in drop_lines]
    mode = runner_mode(command)
    if mode == "e" and not energy:
        log("note: the command asks for energy mode (--mode e) but the bench has no LPM01A; add --energy")
    elif energy and mode in ("p", "a") and cfg.model.strip().lower() != "sww01":
        log("note: --energy runs the energy-mode firmware (no m-lap-us lines, 9600 baud behind the interface board)")
    if energy and cfg.model.strip().lower() == "sww01" and cfg.sd_card is None:
        log("note: no --sd-card DIR: the interface board's SD card holds no file, so `play` fails")
    bench = open_bench(
        cfg,
        energy=energy,
        interface=interface,
        hide_real_ports=hide_real_ports,
        drops=drops,
        h573_flash_baud=h573_flash_baud,
        trace=trace,
        engine=engine,
        timing=timing,
        log=log,
    )
    try:
        for side in bench.sides:
            usb = USB_IDENTITIES[side.board]
            log(f"{side.role}: {side.board} (USB {usb.describe()}) on {side.device}, {side.baud} baud")
        log(f"speed {cfg.speed}{' (auto)' if auto else ''}; running: {' '.join(command)}")
        rc = run_child(command, bench.environment())
    finally:
        bench.close()
    for d in drops:
        log(f"--drop-line {d.text}:{d.occurrence}: {d.seen} seen, {d.dropped} dropped")
    for exc in getattr(bench.twin, "errors", []):
        log(f"warning: the simulation raised {exc!r}")
    return rc


# --------------------------------------------------------------------------
# CLI


def register(app) -> None:
    """Add the ``external`` command to a Typer app."""
    import typer

    from ..config import twin_options

    @app.command(
        "external",
        context_settings={"allow_interspersed_args": False},
    )
    @twin_options(speed_default=None, power=True)
    def external(
        cfg: TwinConfig,
        command: list[str] = typer.Argument(..., metavar="-- COMMAND...", help="the host program to run, after --"),
        energy: bool = typer.Option(False, "--energy", help="the energy bench: LPM01A + interface board + DUT with the energy-mode firmware"),
        interface: str = typer.Option("h573", "--interface", help="interface board for --energy: h573 (STM32H573I-DK) or arduino"),
        speed: str = typer.Option(
            "auto",
            "--speed",
            help=f"auto (fast; {PERFORMANCE_SPEED:g}x when the command has --mode p, {ENERGY_SPEED:g}x with --mode e), realtime, fast, or a factor such as 4",
        ),
        dut_baud: Optional[int] = typer.Option(None, "--dut-baud", help="the DUT firmware's UART baud (default: the firmware's own)"),
        drop_line: list[str] = typer.Option([], "--drop-line", help="lose the N-th line TEXT on its way to the host, e.g. m-ready:5 (repeatable)"),
        hide_real_ports: bool = typer.Option(False, "--hide-real-ports", help="list only the twin's ports (not real serial ports) to the command"),
        trace: Optional[Path] = typer.Option(None, "--trace", help="log every byte on every board port, with simulated and wall time, to this file"),
        h573_flash_baud: Optional[int] = typer.Option(None, "--h573-flash-baud", help="--energy --interface h573: the DUT baud left in the interface board's flash by an earlier setbaud (default: erased, i.e. 9600)"),
    ) -> None:
        """Run a host program written for the real boards (e.g. mlcommons/tiny's
        benchmark/runner/main.py) against the twin, unchanged."""
        try:
            rc = run_external(
                command,
                cfg.replace(baud=dut_baud),
                speed=speed,
                energy=energy,
                interface=interface,
                hide_real_ports=hide_real_ports,
                drop_lines=drop_line,
                h573_flash_baud=h573_flash_baud,
                trace=trace,
            )
        except TinytwinError as exc:  # the launcher's, a model's, a profile's: one message
            typer.echo(f"tinytwin external: {exc}", err=True)
            raise typer.Exit(2)
        raise typer.Exit(rc)
