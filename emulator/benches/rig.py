"""The energy bench as one twin: DUT (energy-mode firmware), IO manager, EMON.

::

    host ── pty dir/io ──(USB-serial, 115200)── IO manager ──(UART, 9600)── DUT
    host ── pty dir/emon ───────────────────────── EMON ──(power, D7 timestamp)──┘

* The DUT runs the energy-mode firmware (9600 baud, timestamps on its GPIO
  instead of ``m-lap-us`` lines) and is unpowered until the EMON switches
  its supply on (``emon power on`` in EnergyRunner terms). The other set-ups
  of :mod:`emulator.benches.setups` are built here too: the performance
  firmware behind the interface board, no EMON (a bench supply), a JS220
  (its driver link on the Unix socket ``dir/js220``), the DUT's own USB
  still plugged in (``dir/dut``), the DUT's VCP with the STLINK-V3 identity.
* The IO manager is either the EEMBC Arduino UNO (``interface="arduino"``,
  for the EnergyRunner) or the MLCommons STM32H573I-DK interface board
  (``interface="h573"``, for the mlcommons/tiny runner); see
  :mod:`emulator.ioman`. Its host side is a pseudo-terminal at ``dir/io``.
* The EMON is the ST LPM01A (:mod:`emulator.emon.lpm01a`), on its own
  pseudo-terminal ``dir/emon``: it powers the DUT, samples its current and
  sees the DUT's timestamp GPIO (D7).

All devices share one simulated clock (:class:`emulator.sim.Twin`); every
host port has a :class:`~emulator.control.tap.PortTap` and the bench a
:class:`~emulator.control.BenchControl` (``tinytwin ctl``, fault plans).
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..config import TwinConfig
from ..control import BenchControl, ControlServer, FaultPlan
from ..control.tap import Trace
from ..dut.device import Dut
from ..dut.timing import DutTiming
from ..emon import Js220, Lpm01a
from ..errors import ConfigError, TinytwinError
from ..hw.uart import connect
from ..hw.usb_bridge import HostBridge
from ..ioman import IoManagerDevice, make_io_manager
from ..ioman.actions import HOST_BAUD
from ..sim import Twin
from ..transport import PtyPort
from .dut import as_config
from .setups import DEFAULT_SUPPLY_V, HELP, BenchSetup
from .wiring import make_tap, pty_plug, tee_uart, unix_plug

#: where ``tinytwin rig`` makes its ``io``, ``emon``, ``dut``, ``js220`` and
#: ``ctl`` links by default
DEFAULT_DIR = Path("/tmp/tinytwin")
#: the USB identity of each interface board (keys of external's USB_IDENTITIES)
INTERFACE_BOARDS = {"h573": "stm32h573i-dk", "arduino": "arduino"}
#: what the runners' devices YAML opens the LPM01A's USB CDC port with (the
#: board ignores it)
EMON_BAUD = 3686400


class RigError(TinytwinError):
    """The rig cannot be built as asked; the message says why."""


@dataclass
class Rig:
    twin: Twin
    dut: Dut
    ioman: IoManagerDevice
    io_bridge: HostBridge
    io_port: PtyPort
    emon: object | None = None  # the LPM01A
    emon_port: PtyPort | None = None
    dir: Path | None = None
    interface: str = "arduino"
    notes: list[str] = field(default_factory=list)
    setup: BenchSetup | None = None
    js220: Js220 | None = None
    dut_bridge: HostBridge | None = None
    control: BenchControl | None = None
    server: ControlServer | None = None
    plan: FaultPlan | None = None
    _closed: bool = False

    @property
    def plugs(self) -> dict:
        return self.control.plugs if self.control is not None else {}

    @property
    def io_path(self) -> str:
        port = self.plugs["io"].port if "io" in self.plugs else self.io_port
        return str(port.link or port.device)

    @property
    def emon_path(self) -> str | None:
        plug = self.plugs.get("emon")
        port = plug.port if plug is not None else self.emon_port
        if port is None:
            return None
        return str(port.link or port.device)

    @property
    def dut_port(self) -> PtyPort | None:
        plug = self.plugs.get("dut")
        return plug.port if plug is not None else None

    @property
    def dut_path(self) -> str | None:
        port = self.dut_port
        return None if port is None else str(port.link or port.device)

    @property
    def js220_path(self) -> str | None:
        plug = self.plugs.get("js220")
        return None if plug is None or plug.port is None else str(plug.port.path)

    def describe(self) -> list[str]:
        """What to tell a user: where the devices are."""
        def where(port) -> str:
            return f"{port.device}" + (f" (link {port.link})" if port.link else "")

        lines = [f"io ({self.interface}): {where(self.plugs['io'].port if 'io' in self.plugs else self.io_port)}"]
        emon_plug = self.plugs.get("emon")
        emon_port = emon_plug.port if emon_plug is not None else self.emon_port
        if self.emon is not None and emon_port is not None:
            lines.append(f"emon (lpm01a): {where(emon_port)}")
        if self.js220 is not None:
            lines.append(f"js220: driver link {self.js220_path} (tinytwin external --emon js220 gives it to "
                         "the joulescope package)")
        if self.dut_port is not None:
            lines.append(f"dut (its own USB): {where(self.dut_port)}")
        fw = "energy-mode" if getattr(self.dut, "energy_mode", True) else "performance-mode"
        lines.append(
            f"dut: model {self.dut.profile.name}, {fw} firmware at {self.dut.uart.baud} baud behind the IO manager; "
            f"speed {self.twin.speed}"
        )
        if self.setup is not None:
            lines.append(f"bench: {self.setup.describe()}")
        if self.server is not None and self.server.path is not None:
            lines.append(f"control: tinytwin ctl --socket {self.server.path} state")
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
        if self.server is not None:
            self.server.close()
        self.twin.close()


def build_rig(
    cfg: TwinConfig | str,
    *,
    interface: str = "arduino",
    emon: str | None = "lpm01a",
    dir: str | Path | None = DEFAULT_DIR,
    ioman_timestamp: bool = False,
    h573_flash_baud: int | None = None,
    h573_audio_ppm: float = 0.0,
    engine=None,
    timing: DutTiming | None = None,
    firmware: str = "energy",
    dut_usb: bool = False,
    dut_stlink: str = "v2-1",
    supply_v: float | None = None,
    setup: BenchSetup | None = None,
    trace: Trace | None = None,
    drops=(),
    js220_path: str | Path | None = None,
    **fields,
) -> Rig:
    """Assemble the bench for ``cfg`` in one twin (not yet running: call
    :meth:`Rig.start`, or drive ``rig.twin`` yourself).

    ``cfg`` is a :class:`~emulator.config.TwinConfig`, or a model name with
    TwinConfig's fields as keywords. The bench is described by ``setup`` (a
    :class:`~emulator.benches.setups.BenchSetup`) or by the keywords
    ``interface``, ``firmware`` (``energy``: 9600 baud, ``cfg.baud`` unset;
    ``performance``: the firmware's own baud or ``cfg.baud``), ``emon``
    (``lpm01a``, ``js220``, ``both``, ``"none"``: a bench supply powers the
    DUT from the start; ``None``: no EMON and no supply, the DUT stays
    unpowered until you call ``rig.dut.power_on()``), ``dut_usb``,
    ``dut_stlink`` and ``supply_v``.
    ``dir`` is where the symlinks ``io``, ``emon``, ``dut`` to the
    pseudo-terminals and the JS220's driver socket ``js220`` are made
    (``None``: no symlinks; the socket then goes to ``js220_path`` or a
    temporary directory). ``ioman_timestamp`` also wires the DUT's timestamp
    GPIO to the Arduino's D3 (the EnergyRunner debug hookup: ``m-lap-us-``
    lines from ``io``). ``engine`` and ``timing`` replace what the
    configuration would build; ``trace`` and ``drops`` (``--drop-line``
    rules) go on the ports' taps. ``rig.control`` is the bench's
    :class:`~emulator.control.BenchControl`.
    ``model="sww01"`` builds the streaming-wakeword bench instead
    (:func:`emulator.benches.sww01.build_rig`; ``cfg.sd_card`` is its SD card
    directory, ``cfg.timing_profile`` its sww01 timing profile): the H573
    with an LPM01A or no EMON.
    """
    from .sww01 import build_rig as build_sww01_rig, is_sww01

    cfg = as_config(cfg, **fields)
    powered_from_start = emon is not None
    if setup is None:
        try:
            setup = BenchSetup(interface=interface, firmware=firmware, emon=emon or "none", dut_usb=dut_usb,
                               dut_stlink=dut_stlink, supply_v=supply_v if supply_v is not None else DEFAULT_SUPPLY_V)
        except ConfigError as exc:
            raise RigError(str(exc)) from None
    if is_sww01(cfg.model):
        if setup.emon not in ("lpm01a", "none") or setup.dut_usb or setup.dut_stlink != "v2-1":
            raise RigError("the sww01 bench is the H573 with an LPM01A or no EMON (--emon lpm01a|none); the JS220, "
                           "--dut-usb and --dut-stlink v3 are set-ups of the other models' benches")
        return build_sww01_rig(models_dir=cfg.models_dir, interface=setup.interface,
                               emon=None if setup.emon == "none" or not powered_from_start else "lpm01a",
                               speed=cfg.speed, dir=dir, backend=cfg.backend, engine=engine,
                               timing_profile=cfg.timing_profile, h573_flash_baud=h573_flash_baud,
                               honour_host_baud=cfg.honour_host_baud, power_profile=cfg.power_profile,
                               sd_card=cfg.sd_card, trace=trace, drops=drops, baud=cfg.baud,
                               h573_audio_ppm=h573_audio_ppm)
    if cfg.sd_card is not None:
        raise RigError("--sd-card is for the streaming-wakeword bench (--model sww01)")
    if h573_audio_ppm:
        raise RigError("--h573-audio-ppm is for the streaming-wakeword bench (--model sww01): only it plays audio")
    if setup.interface == "none":
        raise RigError("the rig is a bench with an interface board: choose --interface h573 or arduino "
                       "(the DUT alone is `tinytwin dut`)")
    if setup.energy_firmware and cfg.baud is not None:
        raise RigError("the energy firmware runs at its own baud (9600); leave the baud unset")
    if ioman_timestamp and setup.interface != "arduino":
        raise RigError("ioman_timestamp: only the Arduino io-manager has a timestamp input (D3)")
    power_model = cfg.power_model() if setup.emon != "none" else None
    if engine is None:
        engine = cfg.engine()
    if timing is None:
        timing = cfg.timing(engine)
    base = Path(dir).expanduser() if dir is not None else None
    twin = Twin(cfg.speed)
    dut = Dut(twin, engine, timing, energy_mode=setup.energy_firmware, baud=cfg.baud,
              powered=not setup.lpm01a and powered_from_start, timer_start_us=cfg.timer_start_us)
    kwargs = {"flash_baud": h573_flash_baud} if setup.interface == "h573" else {}
    ioman = make_io_manager(setup.interface, twin, name="io", **kwargs)
    ioman.connect_dut(dut.uart)
    if ioman_timestamp:
        ioman.attach_timestamp(dut.timestamp_pin)
    bridge = HostBridge(twin, ioman.host_uart, "io", honour_host_baud=cfg.honour_host_baud)
    link = (lambda name: base / name) if base else (lambda name: None)
    tmpdir: list[Path] = []
    try:
        plugs = {}
        plugs["io"] = pty_plug("io", INTERFACE_BOARDS[setup.interface], bridge.attach,
                               make_tap("io", trace=trace, drops=drops), link=link("io"), baud=HOST_BAUD,
                               power=lambda on: ioman.power_on() if on else ioman.power_off())
        rig = Rig(twin=twin, dut=dut, ioman=ioman, io_bridge=bridge, io_port=plugs["io"].port, dir=base,
                  interface=setup.interface, setup=setup)
        lpm = None
        if setup.lpm01a:
            lpm = Lpm01a(twin, dut, power_model=power_model)
            plugs["emon"] = pty_plug("emon", "lpm01a", lpm.attach, make_tap("emon", trace=trace), link=link("emon"),
                                     baud=EMON_BAUD, power=lambda on: lpm.power_on() if on else lpm.power_off())
            rig.emon, rig.emon_port = lpm, plugs["emon"].port
        if setup.js220:
            if lpm is not None:
                supply = lambda: lpm.voltage_v if lpm.powered and lpm.target_on else 0.0  # noqa: E731
            else:
                supply = setup.supply_v
            js = Js220(twin, dut, power_model=power_model, supply_v=supply)
            if js220_path is None:
                if base is None:
                    tmpdir.append(Path(tempfile.mkdtemp(prefix="tinytwin-js220-")))
                    js220_path = tmpdir[0] / "js220"
                else:
                    js220_path = base / "js220"
            plugs["js220"] = unix_plug("js220", "js220", twin, js.attach, make_tap("js220", trace=trace),
                                       Path(js220_path), power=lambda on: js.power_on() if on else js.power_off())
            rig.js220 = js
        if setup.dut_usb:
            dut_bridge = HostBridge(twin, dut.uart, "dut", honour_host_baud=cfg.honour_host_baud)
            connect(ioman.dut_uart, dut.uart)  # the interface board stays on the DUT's RX line
            tee_uart(twin, dut.uart, dut_bridge.endpoint)  # ... and the ST-LINK listens to its TX
            plugs["dut"] = pty_plug("dut", setup.dut_board, dut_bridge.attach,
                                    make_tap("dut", trace=trace, drops=drops), link=link("dut"), baud=dut.uart.baud)
            rig.dut_bridge = dut_bridge
        rig.control = BenchControl(twin, dut, plugs, ioman=ioman, lpm01a=lpm, js220=rig.js220,
                                   dut_supply="lpm01a" if setup.lpm01a else "supply")
    except BaseException:
        twin.close()
        for d in tmpdir:
            shutil.rmtree(d, ignore_errors=True)
        raise
    for d in tmpdir:
        twin.on_close(lambda d=d: shutil.rmtree(d, ignore_errors=True))
    return rig


def serve_control(rig_or_bench, *, control_path=None, control_tcp=None, faults=None, log=lambda msg: None):
    """Start the control channel of a built bench (``rig.control``) and
    install a fault plan; returns the server (None without a socket)."""
    control = rig_or_bench.control
    plan = FaultPlan.load(faults) if faults is not None else None
    if plan is not None:
        plan.install(control)
    server = None
    if control_path is not None or control_tcp is not None:
        server = ControlServer(control, control_path, tcp=control_tcp).start()
        if control_tcp is not None and control_tcp[0] not in ("127.0.0.1", "::1", "localhost"):
            log(f"warning: the control channel listens on {control_tcp[0]}:{control_tcp[1]}: other machines can "
                "reach it (use 127.0.0.1 to keep it local)")
    rig_or_bench.server = server
    rig_or_bench.plan = plan
    return server


def register(app) -> None:
    """Mount ``tinytwin rig`` on the typer ``app``."""
    from typing import Optional

    import typer

    from ..cli import fail, parse_hostport, serve_until_signal
    from ..config import twin_options

    @app.command("rig")
    @twin_options(speed_default="realtime", power=True)
    def rig(
        cfg: TwinConfig,
        dir: Path = typer.Option(DEFAULT_DIR, "--dir", help="where to make the symlinks io, emon, dut, the JS220 socket "
                                                            "js220 and the control socket ctl"),
        interface: str = typer.Option("arduino", "--interface", help="arduino (EEMBC EnergyRunner) or h573 (mlcommons/tiny runner)"),
        emon: str = typer.Option("lpm01a", "--emon", help=HELP["emon"]),
        firmware: str = typer.Option("energy", "--firmware", help=HELP["firmware"]),
        dut_usb: bool = typer.Option(False, "--dut-usb", help=HELP["dut_usb"]),
        dut_stlink: str = typer.Option("v2-1", "--dut-stlink", help=HELP["dut_stlink"]),
        supply_v: float = typer.Option(DEFAULT_SUPPLY_V, "--supply-v", help=HELP["supply_v"]),
        h573_flash_baud: Optional[int] = typer.Option(None, "--h573-flash-baud", help="--interface h573: the DUT baud "
                                                      "an earlier setbaud left in the board's flash (default: 9600)"),
        h573_audio_ppm: float = typer.Option(0.0, "--h573-audio-ppm", help="sww01 bench: the error of the H573's "
                                             "audio clock in ppm (default 0: exactly 16 kHz; a real board's runs off "
                                             "by hundreds to thousands, e.g. -2000 makes 32.064 ms frames)"),
        faults: Optional[Path] = typer.Option(None, "--faults", help=HELP["faults"]),
        control: Optional[Path] = typer.Option(None, "--control", help=HELP["control"] + " (default: DIR/ctl)"),
        control_tcp: Optional[str] = typer.Option(None, "--control-tcp", help=HELP["control_tcp"]),
    ) -> None:
        """Serve a bench: DUT behind an IO manager, measured (and powered) by an EMON; `tinytwin ctl` acts on it (sww01: the streaming-wakeword firmware with --interface h573 --sd-card DIR)."""
        tcp = parse_hostport(control_tcp, "--control-tcp") if control_tcp else None
        if interface not in INTERFACE_BOARDS:
            fail(f"unknown interface {interface!r}: choose one of {', '.join(INTERFACE_BOARDS)} (--interface)")
        try:
            setup = BenchSetup(interface=interface, firmware=firmware, emon=emon, dut_usb=dut_usb,
                               dut_stlink=dut_stlink, supply_v=supply_v)
            bench = build_rig(cfg, setup=setup, dir=dir, h573_flash_baud=h573_flash_baud, h573_audio_ppm=h573_audio_ppm)
        except TinytwinError as exc:  # a bad name, a missing model, a busy path
            fail(str(exc))
        try:
            serve_control(bench, control_path=control or dir / "ctl", control_tcp=tcp, faults=faults,
                          log=lambda msg: print(f"tinytwin: {msg}", flush=True))
        except TinytwinError as exc:
            bench.close()
            fail(str(exc))
        serve_until_signal(bench.twin, [*bench.describe(), "Ctrl-C to stop"], on_close=bench.close)


__all__ = ["Rig", "RigError", "build_rig", "register", "serve_control"]
