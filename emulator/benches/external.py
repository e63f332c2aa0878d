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
JS220              16D0:10BA    the other energy monitor (USB only: pyusb finds it)
=================  ===========  ================================================

The launcher

1. builds the twin for a :class:`~emulator.benches.setups.BenchSetup`: the
   DUT alone (performance/accuracy firmware) or, with ``--energy``, the
   energy rig (LPM01A, interface board, DUT with the energy-mode firmware),
   or another set-up (``--interface``, ``--firmware``, ``--emon``,
   ``--dut-usb``, ``--dut-stlink``), and gives each board the host can reach
   a real pseudo-terminal (:class:`emulator.transport.PtyPort`; a JS220 a
   Unix socket for its driver), each with its tap
   (:class:`emulator.control.tap.PortTap`: ``--trace``, ``--drop-line``,
   faults);
2. writes ``ports.json`` and a copy of :mod:`emulator.benches.inject`'s
   ``sitecustomize.py`` (and, with a JS220, its stand-in
   ``pyjoulescope_driver``) into a fresh temporary directory, and prepends
   that directory to the child's ``PYTHONPATH`` (``$TINYTWIN_EXTERNAL_PORTS``
   names the JSON file): the child's ``comports()`` then lists the ptys
   first, with the VID/PID and descriptions above (pyusb's ``find`` the
   JS220). Nothing else is injected, and no file of the program is read,
   copied or changed;
3. serves the control channel (``tinytwin ctl``, ``$TINYTWIN_CONTROL``) and
   installs the fault plan (``--faults``);
4. runs the command in the caller's working directory with the caller's
   stdin/stdout/stderr and returns its exit code;
5. tears the twin down and removes the temporary directory.

Speed: ``--speed auto`` (the default) runs the twin ``fast`` except when the
command runs the mlcommons runner in performance or energy mode (``--mode p``
/ ``--mode e``). In performance mode that runner checks with the host's wall
clock that each performance loop lasted at least 10 s, which a fast twin
finishes in well under a second: the twin then runs
:data:`PERFORMANCE_SPEED` times faster than real time, which keeps every
official performance script above 10 s. In energy mode the runner must read
the LPM01A's sample stream as fast as it comes: :data:`ENERGY_SPEED`; with a
JS220 alone, its per-sample loop must keep up with 1 Msps: :data:`JS220_SPEED`;
for sww01 in energy mode it is realtime, because the runner's ``stream`` step
sleeps 0.25 s of wall time inside the energy window. See
``firmware_api_spec/external_runner.md``.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..config import TwinConfig
from ..control import BenchControl, ControlServer, FaultPlan
from ..control.server import CONTROL_ENV
from ..control.tap import LineDrop, Trace
from ..errors import ConfigError, TinytwinError
from .inject import JOULESCOPE_DRIVER, PORTS_ENV, SITECUSTOMIZE
from .rig import EMON_BAUD, INTERFACE_BOARDS as INTERFACES  # noqa: F401 (re-exported: the launcher's names)
from .setups import HELP, BenchSetup

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

#: speed factor ``--speed auto`` picks for the runner's energy mode with a
#: JS220: the runner adds up the JS220's 1 MHz samples one at a time in
#: Python (power_manager_js220.py). On the development machine it kept up at
#: 1x and fell behind at 2x (edges counted in the wrong window, "Sample fetch
#: failed" as the 30 s stream buffer overran, IndexError); a replica of its
#: loop measured 0.37x real time on a loaded host (research A.2 item 8).
#: 0.5x leaves it margin on a busy host.
JS220_SPEED = 0.5


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
    # a DUT whose debugger is an STLINK-V3 (NUCLEO-U575ZI-Q and newer): the
    # same VID:PID as the H573's
    "l4r5zi-stlink-v3": UsbIdentity(0x0483, 0x374E, "STMicroelectronics", "STLINK-V3", "TINYTWIN0DUT"),
    # USB-only (no serial port): pyusb lists it; its driver link is a socket
    "js220": UsbIdentity(0x16D0, 0x10BA, "Jetperch LLC", "Joulescope JS220", "TWIN0001"),
}


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
    args = []
    for arg in command:  # a shell's -c string (sh -c "python main.py --mode p") is read word by word too
        try:
            args += shlex.split(arg) if " " in arg else [arg]
        except ValueError:
            args.append(arg)
    for i, arg in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else None
        if arg in ("--mode", "-m") and nxt in modes:
            found = nxt
        elif arg.startswith("--mode=") and arg[7:] in modes:
            found = arg[7:]
        elif arg.startswith("-m") and arg[2:].lstrip("=") in modes:  # -mp, -m=p
            found = arg[2:].lstrip("=")
    return found


def resolve_speed(speed: str, command: Sequence[str], setup: Optional[BenchSetup] = None) -> str:
    """``auto`` -> :data:`PERFORMANCE_SPEED` for the runner's performance
    mode, :data:`ENERGY_SPEED` for its energy mode (:data:`JS220_SPEED` when
    the bench's only EMON is a JS220), else ``fast``; any other value is
    returned unchanged."""
    if speed.strip().lower() != "auto":
        return speed
    mode = runner_mode(command)
    if mode == "p":
        return f"{PERFORMANCE_SPEED:g}"
    if mode == "e":
        if setup is not None and setup.emon == "js220":
            return f"{JS220_SPEED:g}"
        return f"{ENERGY_SPEED:g}"
    return "fast"


# --------------------------------------------------------------------------
# the bench


#: how the runner's devices YAML names each board's role
ROLES = {"dut": "dut", "io": "interface", "emon": "power", "js220": "power"}


@dataclass
class HostSide:
    """One board connection the host can open (a :class:`Plug` of the bench)."""

    role: str  # dut, interface, power
    board: str  # key of USB_IDENTITIES
    port: object  # a PtyPort, or the JS220's UnixListener
    baud: Optional[int]

    @property
    def device(self) -> str:
        return str(getattr(self.port, "device", None) or getattr(self.port, "path", ""))

    @property
    def serial(self) -> bool:
        return hasattr(self.port, "device")

    def ports_entry(self) -> dict:
        usb = USB_IDENTITIES[self.board]
        if not self.serial:  # a USB-only instrument (the JS220): its driver's link
            return {
                "kind": self.board,
                "path": f"u/{self.board}/{usb.serial_number}",
                "socket": self.device,
                "role": self.role,
                "vid": usb.vid,
                "pid": usb.pid,
                "manufacturer": usb.manufacturer,
                "product": usb.product,
                "serial_number": usb.serial_number,
            }
        return {
            "device": self.device,
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
    control: BenchControl
    inject_dir: Path
    setup: BenchSetup
    hide_real_ports: bool = False
    objects: dict = field(default_factory=dict)  # dut, rig, ... for tests and reports
    server: Optional[ControlServer] = None
    plan: Optional[FaultPlan] = None
    drops: list[LineDrop] = field(default_factory=list)
    #: the lock on owner.pid that marks the injection folder as in use
    owner_fd: Optional[int] = None

    @property
    def sides(self) -> list[HostSide]:
        """The connections plugged in now, in the order the host lists them."""
        return [HostSide(ROLES[p.name], p.board, p.port, p.baud) for p in self.control.plugs.values()
                if p.plugged and p.port is not None]

    @property
    def control_path(self) -> Optional[Path]:
        return self.server.path if self.server is not None else None

    def environment(self, base: Optional[dict] = None) -> dict:
        env = dict(os.environ if base is None else base)
        parts = [str(self.inject_dir)]
        if env.get("PYTHONPATH"):
            parts.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(parts)
        env[PORTS_ENV] = str(self.inject_dir / "ports.json")
        if self.control_path is not None:
            env[CONTROL_ENV] = str(self.control_path)
        return env

    def write_injection(self) -> None:
        self.inject_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SITECUSTOMIZE, self.inject_dir / "sitecustomize.py")
        if self.setup.js220:
            shutil.copytree(JOULESCOPE_DRIVER, self.inject_dir / JOULESCOPE_DRIVER.name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        self.write_ports()

    def write_ports(self, _plug=None) -> None:
        """``ports.json``: what the injected modules list (rewritten when a
        board is unplugged or plugged in again)."""
        sides = self.sides
        config = {
            "generator": "tinytwin external",
            "hide_real_ports": self.hide_real_ports,
            "ports": [s.ports_entry() for s in sides if s.serial],
            "usb_devices": [s.ports_entry() for s in sides if not s.serial],
        }
        path = self.inject_dir / "ports.json"
        tmp = path.with_name(".ports.json.tmp")
        tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def close(self) -> None:
        try:
            if self.server is not None:
                self.server.close()
            self.twin.close()
        finally:
            shutil.rmtree(self.inject_dir, ignore_errors=True)
            if self.owner_fd is not None:
                os.close(self.owner_fd)
                self.owner_fd = None


def _build_dut(cfg: TwinConfig, setup: BenchSetup, *, engine, timing, drops, trace):
    from ..control.bench import BenchControl
    from .dut import build_dut_bench
    from .wiring import make_tap, pty_plug

    bench = build_dut_bench(cfg.replace(energy_mode=setup.energy_firmware), engine=engine, timing=timing)
    dut = bench.dut
    try:
        plug = pty_plug("dut", setup.dut_board, bench.bridge.attach, make_tap("dut", trace=trace, drops=drops),
                        baud=dut.uart.baud, power=lambda on: dut.power_on() if on else dut.power_off())
    except BaseException:
        bench.twin.close()
        raise
    control = BenchControl(bench.twin, dut, {"dut": plug}, dut_supply="usb")
    return bench.twin, control, {"dut": dut, "bridge": bench.bridge}


def _build_rig(cfg: TwinConfig, setup: BenchSetup, *, engine, timing, drops, trace, h573_flash_baud, js220_path):
    from .rig import RigError, build_rig

    if cfg.baud is not None and setup.energy_firmware:
        raise ExternalError("--dut-baud applies to the performance firmware; the energy firmware runs at 9600 baud")
    if setup.emon != "none" and setup.interface == "none":
        raise ExternalError("an energy monitor needs an interface board on the bench (--interface h573): "
                            "the runner measures the DUT behind it")
    try:
        rig = build_rig(cfg, setup=setup, dir=None, engine=engine, timing=timing, trace=trace, drops=drops,
                        h573_flash_baud=h573_flash_baud if setup.interface == "h573" else None, js220_path=js220_path)
    except RigError as exc:
        raise ExternalError(str(exc)) from None
    return rig.twin, rig.control, {"rig": rig, "dut": rig.dut}


def open_bench(
    cfg: TwinConfig,
    *,
    energy: bool = False,
    interface: Optional[str] = None,
    setup: Optional[BenchSetup] = None,
    hide_real_ports: bool = False,
    drops: Sequence[LineDrop] = (),
    h573_flash_baud: Optional[int] = None,
    trace: Optional[Path] = None,
    faults: Optional[Path] = None,
    control_path: Optional[Path] = None,
    control_tcp: Optional[tuple[str, int]] = None,
    engine=None,
    timing=None,
    log: Callable[[str], None] = lambda msg: None,
) -> ExternalBench:
    """Build and start the twin for ``cfg`` and ``setup`` (default: the DUT
    alone, or with ``energy`` the energy bench with ``interface``); write the
    injection directory; serve the control channel (``control_path``,
    default ``<injection dir>/ctl``) and install the fault plan ``faults``.
    ``engine`` and ``timing`` replace what ``cfg`` would build."""
    if setup is None:
        try:
            setup = BenchSetup.resolve(energy=energy, interface=interface)
        except ConfigError as exc:
            raise ExternalError(str(exc)) from None
    plan = FaultPlan.load(faults) if faults is not None else None
    drops = list(drops)
    tracer = Trace(trace) if trace is not None else None
    _sweep_stale_inject_dirs()
    inject_dir = Path(tempfile.mkdtemp(prefix=INJECT_PREFIX))
    owner_fd = _own(inject_dir)
    try:
        if setup.interface == "none":
            if setup.emon != "none":
                raise ExternalError("an energy monitor needs an interface board on the bench (--interface h573): "
                                    "the runner measures the DUT behind it")
            if cfg.sd_card is not None:
                raise ExternalError("--sd-card is the interface board's SD card: it needs --energy (the bench with the H573)")
            twin, control, objects = _build_dut(cfg, setup, engine=engine, timing=timing, drops=drops, trace=tracer)
        else:
            twin, control, objects = _build_rig(cfg, setup, engine=engine, timing=timing, drops=drops, trace=tracer,
                                                h573_flash_baud=h573_flash_baud, js220_path=inject_dir / "js220")
    except BaseException:
        if tracer is not None:
            tracer.close()
        shutil.rmtree(inject_dir, ignore_errors=True)
        os.close(owner_fd)
        raise
    if tracer is not None:
        twin.on_close(tracer.close)
    bench = ExternalBench(twin, control, inject_dir, setup, hide_real_ports=hide_real_ports, objects=objects,
                          plan=plan, drops=drops, owner_fd=owner_fd)
    try:
        bench.write_injection()
        control.on_plug.append(bench.write_ports)
        if plan is not None:
            plan.install(control)
        bench.server = ControlServer(control, control_path or inject_dir / "ctl", tcp=control_tcp).start()
        if control_tcp is not None and control_tcp[0] not in ("127.0.0.1", "::1", "localhost"):
            log(f"warning: the control channel listens on {control_tcp[0]}:{control_tcp[1]}: other machines can "
                "reach it (use 127.0.0.1 to keep it local)")
        twin.log = log
        twin.start()
    except BaseException:
        bench.close()
        raise
    return bench


# --------------------------------------------------------------------------
# the child process


INJECT_PREFIX = "tinytwin-external-"
#: the launcher's pid, in its injection folder: a folder whose launcher is gone is stale
OWNER_FILE = "owner.pid"


def _sweep_stale_inject_dirs() -> None:
    """Remove the injection folders of launchers that are gone (a SIGKILL
    leaves its folder: ports.json, the control socket, sitecustomize.py). A
    running launcher holds a lock on its ``owner.pid`` (:func:`_own`): a folder
    whose lock can be taken has no launcher, whatever its pid says (pids are
    reused, and differ between containers sharing /tmp)."""
    import fcntl

    for d in Path(tempfile.gettempdir()).glob(INJECT_PREFIX + "*"):
        try:
            fd = os.open(d / OWNER_FILE, os.O_RDWR)
        except OSError:
            continue  # not ours to judge (no owner file: an older launcher, or one starting now)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its launcher holds it: running
        else:
            shutil.rmtree(d, ignore_errors=True)
        finally:
            os.close(fd)


def _own(inject_dir: Path) -> int:
    """Write our pid to the folder's ``owner.pid`` and hold a lock on it for
    as long as we live (the fd is closed with the folder, or by the kernel)."""
    import fcntl

    fd = os.open(inject_dir / OWNER_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, str(os.getpid()).encode())
    os.set_inheritable(fd, False)
    return fd


def _handle(sig: int, handler) -> object:
    """Set ``handler`` for ``sig`` unless the signal is ignored (``nohup``:
    the command must inherit that); returns the previous handler, or None
    when nothing was set. ValueError outside the main thread."""
    current = signal.getsignal(sig)
    if current == signal.SIG_IGN:
        return None
    return signal.signal(sig, handler)


@contextlib.contextmanager
def _terminate_as_exit():
    """SIGTERM or SIGHUP while the bench starts or runs (outside the child's
    wait, which forwards them) ends the launcher through its cleanup, not
    around it; during the teardown itself they are ignored. An ignored signal
    (``nohup``) stays ignored."""
    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            old = _handle(sig, stop)
        except ValueError:  # not the main thread: leave signals alone
            break
        if old is not None:
            previous[sig] = old
    try:
        yield lambda: [signal.signal(sig, signal.SIG_IGN) for sig in previous]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _terminal_foreground() -> bool:
    """Whether this process runs in the foreground process group of its
    controlling terminal (where Ctrl-C signals the whole group), whatever its
    standard input is."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False  # no controlling terminal
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def run_child(command: Sequence[str], env: dict) -> int:
    """Run ``command`` with our cwd and standard streams; return its exit
    status as a shell reports it (128 + N for a signal N).

    SIGTERM and SIGHUP sent to the launcher are passed on to the child (an
    ignored one, as under ``nohup``, stays ignored for both). In the
    foreground of a terminal, Ctrl-C reaches the child directly (same process
    group) and the launcher waits for it to finish. Anywhere else SIGINT sent
    to the launcher (a CI supervisor's, ``kill -INT``) is passed on. The child
    stays in the launcher's process group, so that a supervisor that kills the
    group kills it too; one that signals the whole group with SIGINT
    (``timeout -s INT``) then delivers it to the child twice.
    """
    foreground = _terminal_foreground()
    try:
        proc = subprocess.Popen(list(command), env=env)
    except FileNotFoundError:
        raise ExternalError(f"command not found: {command[0]!r}") from None
    except PermissionError:
        raise ExternalError(f"cannot execute {command[0]!r}: permission denied") from None
    except OSError as exc:  # e.g. a script without a #! line (ENOEXEC)
        raise ExternalError(f"cannot execute {command[0]!r}: {exc.strerror or exc}") from None

    def forward(signum, frame):
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            try:
                old = _handle(sig, signal.SIG_IGN if sig == signal.SIGINT and foreground else forward)
            except ValueError:  # not the main thread (embedded use): leave signals alone
                break
            if old is not None:
                previous[sig] = old
        rc = proc.wait()
    except BaseException:  # a signal before the forwarding was in place, or an error: no child left behind
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise
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
    interface: Optional[str] = None,
    setup: Optional[BenchSetup] = None,
    hide_real_ports: bool = False,
    drop_lines: Sequence[str] = (),
    h573_flash_baud: Optional[int] = None,
    trace: Optional[Path] = None,
    faults: Optional[Path] = None,
    control_path: Optional[Path] = None,
    control_tcp: Optional[tuple[str, int]] = None,
    engine=None,
    timing=None,
    log: Callable[[str], None] = lambda msg: print(f"tinytwin: {msg}", file=sys.stderr, flush=True),
) -> int:
    """Start the twin for ``cfg`` and ``setup`` (or ``energy``/``interface``,
    see :meth:`BenchSetup.resolve`), run ``command`` against it, tear down;
    the command's exit status. ``speed`` (text, e.g. ``auto``; see
    :func:`resolve_speed`) replaces ``cfg.speed`` when given."""
    if not command:
        raise ExternalError("no command given; put it after --, e.g. tinytwin external --model kws01 -- python main.py --mode p")
    if setup is None:
        try:
            setup = BenchSetup.resolve(energy=energy, interface=interface)
        except ConfigError as exc:
            raise ExternalError(str(exc)) from None
    auto = speed is not None and speed.strip().lower() == "auto"
    if speed is not None:
        chosen = resolve_speed(speed, command, setup)
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
    sww01 = cfg.model.strip().lower() == "sww01"
    if mode == "e" and setup.emon == "none":
        log("note: the command asks for energy mode (--mode e) but the bench has no energy monitor; add --energy "
            "(or --emon lpm01a|js220)")
    elif setup.energy_firmware and mode in ("p", "a") and not sww01:
        log("note: the DUT runs the energy-mode firmware (no m-lap-us lines, 9600 baud behind the interface board)")
    if setup.dut_usb and setup.interface != "none":
        log("note: the DUT's own USB is plugged in too: the mlcommons runner then talks to the DUT directly, "
            "not through the interface board (--dut-usb)")
    if sww01 and setup.interface != "none" and cfg.sd_card is None:
        log("note: no --sd-card DIR: the interface board's SD card holds no file, so `play` fails")
    with _terminate_as_exit() as tearing_down:
        bench = open_bench(
            cfg,
            setup=setup,
            hide_real_ports=hide_real_ports,
            drops=drops,
            h573_flash_baud=h573_flash_baud,
            trace=trace,
            faults=faults,
            control_path=control_path,
            control_tcp=control_tcp,
            engine=engine,
            timing=timing,
            log=log,
        )
        try:
            log(f"bench: {setup.describe()}")
            for side in bench.sides:
                usb = USB_IDENTITIES[side.board]
                how = f"{side.baud} baud" if side.serial else "driver link (pyusb lists it; the joulescope package opens it)"
                log(f"{side.role}: {side.board} (USB {usb.describe()}) on {side.device}, {how}")
            log(f"control: tinytwin ctl --socket {bench.control_path} state")
            log(f"speed {cfg.speed}{' (auto)' if auto else ''}; running: {' '.join(command)}")
            rc = run_child(command, bench.environment())
            listed = (bench.inject_dir / "listed").exists()
        finally:
            tearing_down()
            bench.close()
    if 0 < rc <= 128 and not listed:  # (over 128: stopped by a signal, not a failure of its own)
        log("note: the command failed without ever listing the serial ports through tinytwin's injection; if it "
            "was meant to find the twin's boards, it never saw them: does the Python it runs have pyserial (and "
            "the joulescope package for a JS220)? is it run with -I, -E or -S (which skip the injected "
            "sitecustomize), or through a wrapper that drops PYTHONPATH?")
    for d in drops:
        log(f"--drop-line {d.text}:{d.occurrence}: {d.seen} seen, {d.dropped} dropped")
    if bench.plan is not None:
        for line in bench.plan.report():
            log(f"fault plan: {line}")
    for exc in getattr(bench.twin, "errors", []):
        log(f"warning: the simulation raised {exc!r}")
    return rc


# --------------------------------------------------------------------------
# CLI


def register(app) -> None:
    """Add the ``external`` command to a Typer app."""
    import typer

    from ..cli import parse_hostport
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
        interface: Optional[str] = typer.Option(None, "--interface", help=HELP["interface"] + " (default: h573 with --energy, else none)"),
        firmware: Optional[str] = typer.Option(None, "--firmware", help=HELP["firmware"] + " (default: energy with --energy)"),
        emon: Optional[str] = typer.Option(None, "--emon", help=HELP["emon"] + " (default: lpm01a with --energy, else none)"),
        dut_usb: bool = typer.Option(False, "--dut-usb", help=HELP["dut_usb"]),
        dut_stlink: str = typer.Option("v2-1", "--dut-stlink", help=HELP["dut_stlink"]),
        supply_v: Optional[float] = typer.Option(None, "--supply-v", help=HELP["supply_v"] + " (default 1.8)"),
        speed: str = typer.Option(
            "auto",
            "--speed",
            help=f"auto (fast; {PERFORMANCE_SPEED:g}x when the command has --mode p, {ENERGY_SPEED:g}x with --mode e, "
                 f"{JS220_SPEED:g}x with --mode e and a JS220, realtime for sww01 with --mode e), realtime, fast, or a factor such as 4",
        ),
        dut_baud: Optional[int] = typer.Option(None, "--dut-baud", help="the DUT firmware's UART baud (default: the firmware's own)"),
        drop_line: list[str] = typer.Option([], "--drop-line", help="lose the N-th line TEXT on its way to the host, e.g. m-ready:5 (repeatable)"),
        hide_real_ports: bool = typer.Option(False, "--hide-real-ports", help="list only the twin's ports to the command (not the machine's real serial ports nor its USB instruments)"),
        trace: Optional[Path] = typer.Option(None, "--trace", help="log every byte on every board port, with simulated and wall time, to this file"),
        h573_flash_baud: Optional[int] = typer.Option(None, "--h573-flash-baud", help="--interface h573: the DUT baud left in the interface board's flash by an earlier setbaud (default: erased, i.e. 9600)"),
        faults: Optional[Path] = typer.Option(None, "--faults", help=HELP["faults"]),
        control: Optional[Path] = typer.Option(None, "--control", help=HELP["control"] + " (default: in the launcher's temporary directory; printed)"),
        control_tcp: Optional[str] = typer.Option(None, "--control-tcp", help=HELP["control_tcp"]),
    ) -> None:
        """Run a host program written for the real boards (e.g. mlcommons/tiny's
        benchmark/runner/main.py) against the twin, unchanged."""
        tcp = parse_hostport(control_tcp, "--control-tcp") if control_tcp else None
        try:
            setup = BenchSetup.resolve(energy=energy, interface=interface, firmware=firmware, emon=emon,
                                       dut_usb=dut_usb, dut_stlink=dut_stlink, supply_v=supply_v)
            rc = run_external(
                command,
                cfg.replace(baud=dut_baud),
                speed=speed,
                setup=setup,
                hide_real_ports=hide_real_ports,
                drop_lines=drop_line,
                h573_flash_baud=h573_flash_baud,
                trace=trace,
                faults=faults,
                control_path=control,
                control_tcp=tcp,
            )
        except TinytwinError as exc:  # the launcher's, a model's, a profile's: one message
            typer.echo(f"tinytwin external: {exc}", err=True)
            raise typer.Exit(2)
        raise typer.Exit(rc)
