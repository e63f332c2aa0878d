"""The energy bench as one twin: DUT (energy-mode firmware), IO manager, EMON.

::

    host ── pty dir/io ──(USB-serial, 115200)── IO manager ──(UART, 9600)── DUT
    host ── pty dir/emon ───────────────────────── EMON ──(power, D7 timestamp)──┘

* The DUT runs the energy-mode firmware (9600 baud, timestamps on its GPIO
  instead of ``m-lap-us`` lines) and is unpowered until the EMON switches
  its supply on (``emon power on`` in EnergyRunner terms).
* The IO manager is either the EEMBC Arduino UNO (``interface="arduino"``,
  for the EnergyRunner) or the MLCommons STM32H573I-DK interface board
  (``interface="h573"``, for the mlcommons/tiny runner); see
  :mod:`emulator.ioman`. Its host side is a pseudo-terminal at ``dir/io``.
* The EMON is the ST LPM01A (:mod:`emulator.emon.lpm01a`), on its own
  pseudo-terminal ``dir/emon``: it powers the DUT, samples its current and
  sees the DUT's timestamp GPIO (D7).

All devices share one simulated clock (:class:`emulator.sim.Twin`).
"""
from __future__ import annotations

import signal
from typing import Optional
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TinytwinError
from .dut import load_engine
from ..dut.device import Dut
from ..emon import EMONS
from ..power.model import PowerModel
from ..dut.timing import DutTiming, timing_for
from ..ioman import INTERFACES, IoManagerDevice, make_io_manager
from ..ioman.actions import HOST_BAUD
from ..sim import Speed, Twin
from ..hw.usb_bridge import HostBridge
from ..transport import PtyPort



class RigError(TinytwinError):
    """The rig cannot be built as asked; the message says why."""


@dataclass
class Rig:
    twin: Twin
    dut: Dut
    ioman: IoManagerDevice
    io_bridge: HostBridge
    io_port: PtyPort
    emon: object | None = None
    emon_port: PtyPort | None = None
    dir: Path | None = None
    interface: str = "arduino"
    notes: list[str] = field(default_factory=list)
    _closed: bool = False

    @property
    def io_path(self) -> str:
        return str(self.io_port.link or self.io_port.device)

    @property
    def emon_path(self) -> str | None:
        if self.emon_port is None:
            return None
        return str(self.emon_port.link or self.emon_port.device)

    def describe(self) -> list[str]:
        """What to tell a user: where the devices are."""
        lines = [f"io ({self.interface}): {self.io_port.device}" + (f" (link {self.io_port.link})" if self.io_port.link else "")]
        if self.emon_port is not None:
            lines.append(
                f"emon (lpm01a): {self.emon_port.device}" + (f" (link {self.emon_port.link})" if self.emon_port.link else "")
            )
        lines.append(
            f"dut: model {self.dut.profile.name}, energy-mode firmware at {self.dut.uart.baud} baud behind the IO manager; "
            f"speed {self.twin.speed}"
        )
        lines.extend(self.notes)
        return lines

    def start(self) -> "Rig":
        """Run the twin in a background thread."""
        self.twin.start()
        return self

    def close(self) -> None:
        """Stop the twin, close the ptys, remove the symlinks."""
        if self._closed:
            return
        self._closed = True
        self.twin.close()


def _attach_emon(kind: str, twin: Twin, dut: Dut, link: Path | None, power_profile: str | Path | None = None):
    """Build the EMON named ``kind``, wired to ``dut``, on a pty at ``link``;
    returns (emon, port)."""
    if kind not in EMONS:
        raise RigError(f"unknown EMON {kind!r}: choose one of {', '.join(EMONS)}")
    model = None
    if power_profile is not None:
        try:
            model = PowerModel.load(power_profile)
        except (OSError, ValueError, KeyError) as exc:
            raise RigError(
                f"cannot use the power profile {power_profile}: {exc}; give a JSON written by "
                "`tinytwin calibrate --energy ... --power-out FILE`"
            ) from None
    emon = EMONS[kind](twin, dut, power_model=model)
    port = emon.attach(PtyPort("emon", link=link))
    return emon, port


def build_rig(
    model: str,
    *,
    models_dir: str | Path | None = None,
    interface: str = "arduino",
    emon: str | None = "lpm01a",
    speed: str | float | Speed = "fast",
    dir: str | Path | None = "/tmp/tinytwin",
    backend: str = "tflm",
    io_profile: str | None = None,
    engine=None,
    timing: DutTiming | None = None,
    timing_profile: str | Path | None = None,
    clock_mhz: float | None = None,
    timer_start_us: int = 0,
    ioman_timestamp: bool = False,
    h573_flash_baud: int | None = None,
    honour_host_baud: bool = True,
    power_profile: str | Path | None = None,
    sd_card: str | Path | None = None,
) -> Rig:
    """Assemble the energy rig for ``model`` in one twin (not yet running:
    call :meth:`Rig.start`, or drive ``rig.twin`` yourself).

    ``dir`` is where the symlinks ``io`` and ``emon`` to the pseudo-terminals
    are made (``None``: no symlinks). ``emon=None`` leaves the EMON out (the
    DUT then stays unpowered unless you call ``rig.dut.power_on()``).
    ``ioman_timestamp`` also wires the DUT's timestamp GPIO to the Arduino's
    D3 (the EnergyRunner debug hookup: ``m-lap-us-`` lines from ``io``).
    ``model="sww01"`` builds the streaming-wakeword bench instead
    (:func:`emulator.benches.sww01.build_rig`; ``sd_card`` is its SD card
    directory, ``timing_profile`` its sww01 timing profile).
    """
    from .sww01 import build_rig as build_sww01_rig, is_sww01

    if is_sww01(model):
        return build_sww01_rig(models_dir=models_dir, interface=interface, emon=emon, speed=speed, dir=dir,
                               backend=backend, engine=engine, timing_profile=timing_profile,
                               h573_flash_baud=h573_flash_baud, honour_host_baud=honour_host_baud,
                               power_profile=power_profile, sd_card=sd_card)
    if sd_card is not None:
        raise RigError("--sd-card is for the streaming-wakeword bench (--model sww01)")
    if interface not in INTERFACES:
        raise RigError(f"unknown interface {interface!r}: choose one of {', '.join(INTERFACES)}")
    if engine is None:
        engine = load_engine(model, models_dir, backend, io_profile)
    if timing is None:
        timing = timing_for(
            engine.profile.name,
            model_path=getattr(engine, "model_path", None),
            profile=timing_profile,
            clock_mhz=clock_mhz,
            engine=engine,
        )
    base = Path(dir).expanduser() if dir is not None else None
    twin = Twin(speed)
    dut = Dut(twin, engine, timing, energy_mode=True, powered=False, timer_start_us=timer_start_us)
    kwargs = {"flash_baud": h573_flash_baud} if interface == "h573" else {}
    ioman = make_io_manager(interface, twin, name="io", **kwargs)
    ioman.connect_dut(dut.uart)
    if ioman_timestamp:
        if interface != "arduino":
            raise RigError("ioman_timestamp: only the Arduino io-manager has a timestamp input (D3)")
        ioman.attach_timestamp(dut.timestamp_pin)
    bridge = HostBridge(twin, ioman.host_uart, "io", honour_host_baud=honour_host_baud)
    ports: list[PtyPort] = []
    try:
        io_port = bridge.attach(PtyPort("io", link=base / "io" if base else None, initial_baud=HOST_BAUD))
        ports.append(io_port)
        rig = Rig(twin=twin, dut=dut, ioman=ioman, io_bridge=bridge, io_port=io_port, dir=base, interface=interface)
        if emon:
            rig.emon, rig.emon_port = _attach_emon(emon, twin, dut, base / "emon" if base else None, power_profile)
            if rig.emon_port is not None:
                ports.append(rig.emon_port)
    except BaseException:
        for p in ports:
            p.close()
        twin.close()
        raise
    return rig


def rig_command(
    model: str,
    dir: str | Path = "/tmp/tinytwin",
    interface: str = "arduino",
    emon: str = "lpm01a",
    models_dir: str | Path | None = None,
    speed: str = "realtime",
    backend: str = "tflm",
    timing_profile: str | Path | None = None,
    clock_mhz: float | None = None,
    power_profile: str | Path | None = None,
    sd_card: str | Path | None = None,
) -> int:
    """Serve a rig until SIGINT/SIGTERM, printing where its devices are.
    Returns a process exit code."""
    import sys

    try:
        Speed.parse(speed)
        rig = build_rig(model, models_dir=models_dir, interface=interface, emon=emon, speed=speed, dir=dir,
                        backend=backend, timing_profile=timing_profile, clock_mhz=clock_mhz,
                        power_profile=power_profile, sd_card=sd_card)
    except Exception as exc:  # user-facing: a bad name, a missing model, a busy path
        print(f"tinytwin: {exc}", file=sys.stderr, flush=True)
        return 2
    stop = threading.Event()

    def _stop(signum, frame):
        stop.set()
        rig.twin.wake()

    old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    rig.twin.log = lambda msg: print(f"tinytwin: {msg}", file=sys.stderr, flush=True)
    for line in rig.describe():
        print(line, flush=True)
    print("Ctrl-C to stop", flush=True)
    try:
        rig.twin.run(stop)
    finally:
        rig.close()
        for s, h in old.items():
            signal.signal(s, h)
    return 0


def register(app) -> None:
    """Mount ``tinytwin rig`` on the typer ``app``."""

    import typer

    @app.command("rig")
    def rig(
        model: str = typer.Option(..., "--model", "-m", help="kws01, vww01, ic01, ad01, sww01 (with --interface h573 --sd-card DIR), or a path to an int8 .tflite"),
        dir: Path = typer.Option(Path("/tmp/tinytwin"), "--dir", help="where to make the symlinks io and emon"),
        interface: str = typer.Option("arduino", "--interface", help="arduino (EEMBC EnergyRunner) or h573 (mlcommons/tiny runner)"),
        emon: str = typer.Option("lpm01a", "--emon", help="the energy monitor: lpm01a"),
        models_dir: Optional[Path] = typer.Option(None, "--models-dir", help="directory with the .tflite models"),
        speed: str = typer.Option("realtime", "--speed", help="realtime, fast, or a factor such as 10"),
        backend: str = typer.Option("tflm", "--backend", help="tflm or litert"),
        profile: Optional[Path] = typer.Option(None, "--profile", help="timing profile JSON (tinytwin calibrate --measurements; sww01: --sww01-log)"),
        clock_mhz: Optional[float] = typer.Option(None, "--clock-mhz", help="CPU clock for the cycle and power models (default 120)"),
        power_profile: Optional[Path] = typer.Option(None, "--power-profile", help="power profile JSON (tinytwin calibrate --energy); default: fitted to the reference board"),
        sd_card: Optional[Path] = typer.Option(None, "--sd-card", help="sww01: the directory the H573 interface board's SD card holds (the WAV files `play` plays; `ls` lists it)"),
    ) -> None:
        """Serve the energy bench: DUT (energy-mode firmware) behind an IO manager, powered by an EMON."""
        code = rig_command(model, dir, interface, emon, models_dir, speed, backend, profile, clock_mhz, power_profile,
                           sd_card)
        if code:
            raise typer.Exit(code)


__all__ = ["Rig", "RigError", "build_rig", "register", "rig_command"]
