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

from dataclasses import dataclass, field
from pathlib import Path

from ..config import TwinConfig
from ..dut.device import Dut
from ..dut.timing import DutTiming
from ..emon import EMONS
from ..errors import TinytwinError
from ..hw.usb_bridge import HostBridge
from ..ioman import INTERFACES, IoManagerDevice, make_io_manager
from ..ioman.actions import HOST_BAUD
from ..sim import Twin
from ..transport import PtyPort
from .dut import as_config

#: where ``tinytwin rig`` makes its ``io`` and ``emon`` links by default
DEFAULT_DIR = Path("/tmp/tinytwin")


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


def _attach_emon(kind: str, twin: Twin, dut: Dut, link: Path | None, power_model=None):
    """Build the EMON named ``kind``, wired to ``dut``, on a pty at ``link``;
    returns (emon, port)."""
    if kind not in EMONS:
        raise RigError(f"unknown EMON {kind!r}: choose one of {', '.join(EMONS)}")
    emon = EMONS[kind](twin, dut, power_model=power_model)
    port = emon.attach(PtyPort("emon", link=link))
    return emon, port


def build_rig(
    cfg: TwinConfig | str,
    *,
    interface: str = "arduino",
    emon: str | None = "lpm01a",
    dir: str | Path | None = DEFAULT_DIR,
    ioman_timestamp: bool = False,
    h573_flash_baud: int | None = None,
    engine=None,
    timing: DutTiming | None = None,
    **fields,
) -> Rig:
    """Assemble the energy rig for ``cfg`` in one twin (not yet running:
    call :meth:`Rig.start`, or drive ``rig.twin`` yourself).

    ``cfg`` is a :class:`~emulator.config.TwinConfig`, or a model name with
    TwinConfig's fields as keywords. The DUT always runs the energy-mode
    firmware at its own baud (``cfg.baud`` must be unset).
    ``dir`` is where the symlinks ``io`` and ``emon`` to the pseudo-terminals
    are made (``None``: no symlinks). ``emon=None`` leaves the EMON out (the
    DUT then stays unpowered unless you call ``rig.dut.power_on()``).
    ``ioman_timestamp`` also wires the DUT's timestamp GPIO to the Arduino's
    D3 (the EnergyRunner debug hookup: ``m-lap-us-`` lines from ``io``).
    ``engine`` and ``timing`` replace what the configuration would build.
    ``model="sww01"`` builds the streaming-wakeword bench instead
    (:func:`emulator.benches.sww01.build_rig`; ``cfg.sd_card`` is its SD card
    directory, ``cfg.timing_profile`` its sww01 timing profile).
    """
    from .sww01 import build_rig as build_sww01_rig, is_sww01

    cfg = as_config(cfg, **fields)
    if is_sww01(cfg.model):
        return build_sww01_rig(models_dir=cfg.models_dir, interface=interface, emon=emon, speed=cfg.speed, dir=dir,
                               backend=cfg.backend, engine=engine, timing_profile=cfg.timing_profile,
                               h573_flash_baud=h573_flash_baud, honour_host_baud=cfg.honour_host_baud,
                               power_profile=cfg.power_profile, sd_card=cfg.sd_card)
    if cfg.sd_card is not None:
        raise RigError("--sd-card is for the streaming-wakeword bench (--model sww01)")
    if interface not in INTERFACES:
        raise RigError(f"unknown interface {interface!r}: choose one of {', '.join(INTERFACES)}")
    if emon and emon not in EMONS:
        raise RigError(f"unknown EMON {emon!r}: choose one of {', '.join(EMONS)}")
    if cfg.baud is not None:
        raise RigError("the rig's DUT runs the energy firmware at its own baud (9600); leave the baud unset")
    if ioman_timestamp and interface != "arduino":
        raise RigError("ioman_timestamp: only the Arduino io-manager has a timestamp input (D3)")
    power_model = cfg.power_model() if emon else None
    if engine is None:
        engine = cfg.engine()
    if timing is None:
        timing = cfg.timing(engine)
    base = Path(dir).expanduser() if dir is not None else None
    twin = Twin(cfg.speed)
    dut = Dut(twin, engine, timing, energy_mode=True, powered=False, timer_start_us=cfg.timer_start_us)
    kwargs = {"flash_baud": h573_flash_baud} if interface == "h573" else {}
    ioman = make_io_manager(interface, twin, name="io", **kwargs)
    ioman.connect_dut(dut.uart)
    if ioman_timestamp:
        ioman.attach_timestamp(dut.timestamp_pin)
    bridge = HostBridge(twin, ioman.host_uart, "io", honour_host_baud=cfg.honour_host_baud)
    ports: list[PtyPort] = []
    try:
        io_port = bridge.attach(PtyPort("io", link=base / "io" if base else None, initial_baud=HOST_BAUD))
        ports.append(io_port)
        rig = Rig(twin=twin, dut=dut, ioman=ioman, io_bridge=bridge, io_port=io_port, dir=base, interface=interface)
        if emon:
            rig.emon, rig.emon_port = _attach_emon(emon, twin, dut, base / "emon" if base else None, power_model)
            if rig.emon_port is not None:
                ports.append(rig.emon_port)
    except BaseException:
        for p in ports:
            p.close()
        twin.close()
        raise
    return rig


def register(app) -> None:
    """Mount ``tinytwin rig`` on the typer ``app``."""
    import typer

    from ..cli import fail, serve_until_signal
    from ..config import twin_options

    @app.command("rig")
    @twin_options(speed_default="realtime", power=True)
    def rig(
        cfg: TwinConfig,
        dir: Path = typer.Option(DEFAULT_DIR, "--dir", help="where to make the symlinks io and emon"),
        interface: str = typer.Option("arduino", "--interface", help="arduino (EEMBC EnergyRunner) or h573 (mlcommons/tiny runner)"),
        emon: str = typer.Option("lpm01a", "--emon", help="the energy monitor: " + ", ".join(EMONS)),
    ) -> None:
        """Serve the energy bench: DUT (energy-mode firmware; sww01: the streaming-wakeword firmware with --interface h573 --sd-card DIR) behind an IO manager, powered by an EMON."""
        try:
            bench = build_rig(cfg, interface=interface, emon=emon, dir=dir)
        except TinytwinError as exc:  # a bad name, a missing model, a busy path
            fail(str(exc))
        serve_until_signal(bench.twin, [*bench.describe(), "Ctrl-C to stop"], on_close=bench.close)


__all__ = ["Rig", "RigError", "build_rig", "register"]
