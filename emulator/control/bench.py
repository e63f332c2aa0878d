"""Operations on a running bench: :class:`BenchControl`.

Every operation is carried out in the simulation thread
(:meth:`emulator.sim.Twin.call`), so it happens at one defined simulated time
(returned as ``sim_s``), between two steps of the devices. The same
operations are reached from Python (``control.call("reset")`` or the
methods), from ``tinytwin ctl`` over the control socket
(:mod:`emulator.control.server`), and from a fault plan
(:mod:`emulator.control.plan`).

The board parts a bench exposes are :class:`Plug` s: one per USB cable a
host can reach (``dut``, ``io``, ``emon``, ``js220``), each with its
:class:`~emulator.control.tap.PortTap`, a way to make a fresh host port for
the board (a replug comes back on a new pseudo-terminal, as a replugged
board may come back as another ``/dev/ttyACM*``), and the board's power if
that cable powers it.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..errors import ConfigError, TinytwinError
from .tap import DIRECTIONS, KINDS, PortTap, direction

TIMER_WRAP = 2**32
#: what an earlier mlcommons runner leaves an LPM01A doing when it is killed
#: mid-run (its setup, power_on and start; power_manager_lpm.py)
STALE_STREAM = ("htc", "acqtime inf", "trigdelay 0", "trigsrc sw", "eventsrc d7 fal", "output energy",
                "format ascii_dec", "freq 1k", "pwr on nostatus", "start")


class ControlError(TinytwinError):
    """An operation cannot be carried out on this bench; the message says why."""


@dataclass
class Plug:
    """One USB connection of the bench (see the module docstring).

    ``make(tap)`` builds a host port for the board, attaches it (with
    ``tap`` as its hook) and returns it; ``power(on)`` switches what this
    cable powers (None: nothing). ``listing`` is what ``ports.json`` says of
    it (the launcher rewrites it on a replug)."""

    name: str
    board: str
    make: Callable[[PortTap], object]
    tap: PortTap
    power: Optional[Callable[[bool], None]] = None
    port: object = None
    plugged: bool = True
    baud: Optional[int] = None

    @property
    def device(self) -> Optional[str]:
        p = self.port
        if p is None:
            return None
        return str(getattr(p, "device", None) or getattr(p, "path", ""))


@dataclass
class BenchControl:
    """The operations of ``tinytwin ctl`` on one bench (module docstring)."""

    twin: object
    dut: object
    plugs: dict[str, Plug] = field(default_factory=dict)
    ioman: object = None
    lpm01a: object = None
    js220: object = None
    #: who powers the DUT: "lpm01a" (its output), "usb" (the DUT's own USB
    #: cable, the ``dut`` plug), "supply" (a bench supply, always on)
    dut_supply: str = "supply"
    #: called after a plug changed (unplugged, replugged)
    on_plug: list[Callable[[Plug], None]] = field(default_factory=list)
    #: every operation carried out: {"op", "args", "sim_s", "result"}
    history: list[dict] = field(default_factory=list)

    # -- entry points ----------------------------------------------------------------------
    def ops(self) -> dict[str, Callable]:
        return {name.replace("_", "-"): getattr(self, f"op_{name}") for name in OPS}

    def call(self, op: str, **args) -> dict:
        """Carry out ``op`` (e.g. ``"reset"``, ``"drop"``) with ``args`` in the
        simulation thread; returns its result with ``sim_s``. Raises
        :class:`ControlError` naming the fix."""
        fn = self.ops().get(str(op).replace("_", "-"))
        if fn is None:
            raise ControlError(f"unknown operation {op!r}: choose one of {', '.join(self.ops())}")
        check_args(op, fn, args)
        return self.twin.call(lambda: self._run(op, fn, args))

    def _run(self, op: str, fn: Callable, args: dict) -> dict:
        try:
            result = fn(**args) or {}
        except ConfigError as exc:
            raise ControlError(str(exc)) from None
        except (TypeError, ValueError, OverflowError) as exc:  # a bad value that got this far
            raise ControlError(f"{op}: {exc}") from None
        out = {"op": op, "sim_s": self.twin.now / 1e9, **result}
        self.history.append({"op": op, "args": dict(args), "sim_s": out["sim_s"], "result": result})
        if len(self.history) > 1000:
            del self.history[:-1000]
        return out

    # -- the DUT ------------------------------------------------------------------------------
    def _dut_supply_on(self) -> bool:
        if self.dut_supply == "lpm01a":
            lpm = self.lpm01a
            return bool(lpm is not None and lpm.powered and lpm.target_on)
        if self.dut_supply == "usb":
            plug = self.plugs.get("dut")
            return plug is None or plug.plugged
        return True

    def op_reset(self) -> dict:
        """Press the DUT's RESET button: the firmware boots again (if powered)."""
        if not self.dut.powered:
            return {"done": False, "note": "the DUT is not powered: RESET does nothing"}
        self.dut.reset()
        return {"done": True, "note": "the DUT reboots (boot banner follows)"}

    def _supply_dip(self, ms: float, what: str) -> dict:
        if not ms > 0:
            raise ControlError(f"{what}: the duration must be > 0 ms, got {ms}")
        if not self.dut.powered:
            return {"done": False, "note": "the DUT is not powered"}
        self.dut.power_off()

        def back() -> None:
            if self._dut_supply_on():
                self.dut.power_on()

        self.twin.schedule(ms * 1e6, back)
        return {"done": True, "note": f"the DUT's supply drops for {ms:g} ms; the firmware then boots again"}

    def op_power_cycle(self, off_ms: float = 100.0) -> dict:
        """Cut the DUT's supply for ``off_ms``, then restore it."""
        return self._supply_dip(float(off_ms), "power-cycle")

    def op_brown_out(self, ms: float = 1.0) -> dict:
        """The supply sags below the brown-out level for ``ms``: the MCU's
        BOR holds it in reset, then it boots again."""
        return self._supply_dip(float(ms), "brown-out")

    def op_hang(self, board: str = "dut") -> dict:
        """The firmware of ``board`` (``dut`` or ``io``) stops answering until
        reset (the DUT) or power-cycled (either)."""
        if board == "dut":
            if not hasattr(self.dut, "hang"):
                raise ControlError("hang: this DUT's firmware (sww01) has no hang to trigger; use power-cycle or reset")
            if not self.dut.powered:
                return {"done": False, "note": "the DUT is not powered"}
            self.dut.hang()
            return {"done": True, "note": "the DUT's firmware hangs; press RESET (tinytwin ctl reset) to recover"}
        if board == "io":
            if self.ioman is None:
                raise ControlError("this bench has no interface board")
            self.ioman.hang()
            return {"done": True, "note": "the interface board hangs; unplug and replug it (tinytwin ctl unplug io)"}
        raise ControlError(f"hang: board must be dut or io, got {board!r}")

    def op_timer(self, to_us: Optional[int] = None, by_us: Optional[int] = None) -> dict:
        """Jump the DUT's 32-bit µs timer to ``to_us`` (or by ``by_us``)."""
        if (to_us is None) == (by_us is None):
            raise ControlError("timer: give exactly one of to_us (a value) or by_us (a jump)")
        if not hasattr(self.dut, "timer_us"):
            raise ControlError("timer: this DUT's firmware (sww01) has no µs timer of the benchmark API")
        if not self.dut.powered:
            return {"done": False, "note": "the DUT is not powered"}
        now = self.dut.timer_us()
        target = int(to_us) if to_us is not None else now + int(by_us)
        self.dut.timer_jump_us = (self.dut.timer_jump_us + target - now) % TIMER_WRAP  # until the next reset
        return {"done": True, "timer_us": self.dut.timer_us(), "was_us": now}

    # -- USB connections ------------------------------------------------------------------------
    def _plug(self, port: str) -> Plug:
        plug = self.plugs.get(port)
        if plug is None:
            raise ControlError(f"no port {port!r} on this bench: choose one of {', '.join(self.plugs) or '(none)'}")
        return plug

    def op_unplug(self, port: str) -> dict:
        """Pull the USB cable of ``port``: the host's port disappears (its
        reads fail) and what the cable powers goes off."""
        plug = self._plug(port)
        if not plug.plugged:
            return {"done": False, "note": f"{port} is already unplugged"}
        plug.plugged = False
        if plug.power is not None:
            plug.power(False)
        old, plug.port = plug.port, None
        if old is not None:
            self.twin.remove_port(old)
        for fn in list(self.on_plug):
            fn(plug)
        return {"done": True, "note": f"{port} unplugged" + (" (the board is off)" if plug.power else "")}

    def op_replug(self, port: str) -> dict:
        """Plug ``port`` in again: a new host port appears and the board
        powered by it boots."""
        plug = self._plug(port)
        if plug.plugged:
            return {"done": False, "note": f"{port} is plugged in", "device": plug.device}
        plug.port = plug.make(plug.tap)
        plug.plugged = True
        if plug.power is not None:
            plug.power(True)
        for fn in list(self.on_plug):
            fn(plug)
        return {"done": True, "device": plug.device}

    def _fault(self, port: str, dir_: str, kind: str, count: int) -> dict:
        plug = self._plug(port)
        plug.tap.arm(dir_, kind, int(count))
        return {"done": True, "armed": plug.tap.wires[direction(dir_)].armed()}

    def op_drop(self, port: str, direction: str, count: int = 1) -> dict:
        """Lose the next ``count`` bytes on ``port`` in ``direction``."""
        return self._fault(port, direction, "drop", count)

    def op_garble(self, port: str, direction: str, count: int = 1) -> dict:
        """Flip one bit in each of the next ``count`` bytes."""
        return self._fault(port, direction, "garble", count)

    def op_drop_line(self, port: str, direction: str, count: int = 1) -> dict:
        """Lose the next ``count`` whole lines (commands, to the board)."""
        return self._fault(port, direction, "drop-line", count)

    def op_garble_line(self, port: str, direction: str, count: int = 1) -> dict:
        """Flip one bit in one byte of each of the next ``count`` lines."""
        return self._fault(port, direction, "garble-line", count)

    def op_delay(self, port: str, direction: str, ms: float) -> dict:
        """From now on, bytes on ``port`` in ``direction`` arrive ``ms``
        later (a USB latency; 0 ends it)."""
        self._plug(port).tap.set_delay(direction, float(ms))
        return {"done": True}

    def op_clear(self, port: Optional[str] = None) -> dict:
        """Disarm the faults (and delays) of ``port`` (every port if None)."""
        for plug in [self._plug(port)] if port else self.plugs.values():
            plug.tap.clear()
        return {"done": True}

    # -- energy monitors -------------------------------------------------------------------------
    def op_stream_emon(self) -> dict:
        """The LPM01A streams samples as an earlier run left it (host control,
        1 kHz energy samples, supply on, acquisition running): the next run
        finds a port full of samples ("Power Manager did not acknowledge")."""
        lpm = self.lpm01a
        if lpm is None:
            raise ControlError("this bench has no LPM01A (a JS220 only streams while a host has it open)")
        if not lpm.powered:
            return {"done": False, "note": "the LPM01A is unplugged"}
        lpm.replay(STALE_STREAM)
        return {"done": True, "acquiring": lpm.acquiring}

    def op_js220_loss(self, ms: float, in_ms: float = 0.0) -> dict:
        """The JS220 loses ``ms`` of its stream (USB frames dropped: the
        host's stream buffer fills the gap with NaN), ``in_ms`` from now."""
        if self.js220 is None:
            raise ControlError("this bench has no JS220")
        if not float(ms) > 0 or float(in_ms) < 0:
            raise ControlError("js220-loss: ms must be > 0 and in_ms >= 0")
        self.js220.lose(float(ms), float(in_ms))
        return {"done": True}

    # -- state -------------------------------------------------------------------------------------
    def op_state(self) -> dict:
        """Everything a bench user might want to know right now."""
        dut = self.dut
        out: dict = {
            "speed": str(self.twin.speed),
            "dut": {
                "powered": dut.powered, "state": str(dut.state), "hung": dut.hung, "commands": dut.commands,
                "overrun_lost": dut.overrun_lost, "timer_us": dut.timer_us() if dut.powered else None,
                "model": dut.profile.name, "baud": dut.uart.baud, "firmware": "energy" if dut.energy_mode else "performance",
                "supply": self.dut_supply,
            },
        }
        io = self.ioman
        if io is not None:
            out["io"] = {"kind": type(io).__name__, "powered": io.powered, "running": io.running, "hung": io.hung,
                         "boots": io.boots, "dut_baud": io.dut_uart.baud}
        lpm = self.lpm01a
        if lpm is not None:
            out["lpm01a"] = {"powered": lpm.powered, "host_control": lpm.core.host_control, "target_on": lpm.target_on,
                             "voltage_v": lpm.voltage_v, "acquiring": lpm.acquiring}
        if self.js220 is not None:
            out["js220"] = self.js220.state()
        out["ports"] = {
            name: {"plugged": p.plugged, "device": p.device, "board": p.board, "tap": p.tap.state()}
            for name, p in self.plugs.items()
        }
        return out


#: the operations, by method name (the CLI and plans spell them with '-')
OPS = ("state", "reset", "power_cycle", "brown_out", "hang", "timer", "unplug", "replug", "drop", "garble",
       "drop_line", "garble_line", "delay", "clear", "stream_emon", "js220_loss")


def check_args(op: str, fn: Callable, args: dict) -> None:
    """Refuse arguments ``fn`` does not take (or a missing one), naming them."""
    sig = inspect.signature(fn)
    params = sig.parameters
    unknown = sorted(set(args) - set(params))
    if unknown:
        raise ControlError(f"{op}: unknown argument {', '.join(unknown)}; it takes {', '.join(params) or 'none'}")
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in args]
    if missing:
        raise ControlError(f"{op}: missing {', '.join(missing)}")
    if "direction" in args and str(args["direction"]) not in DIRECTIONS:
        try:
            args["direction"] = direction(args["direction"])
        except ConfigError as exc:
            raise ControlError(f"{op}: {exc}") from None
    for name, value in list(args.items()):  # numbers as the operation takes them, checked now
        kind = str(params[name].annotation)
        want = int if kind in ("int", "Optional[int]", "int | None") else (
            float if kind in ("float", "Optional[float]", "float | None") else None)
        if want is None or value is None or (isinstance(value, want) and not isinstance(value, bool)):
            continue
        try:
            number = want(value) if not isinstance(value, bool) else None
            if number is None or (want is float and not math.isfinite(number)):
                raise ValueError
            if want is int and isinstance(value, float) and value != number:
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise ControlError(f"{op}: {name} must be {'an integer' if want is int else 'a number'}, "
                               f"got {value!r}") from None
        args[name] = number


def describe_ops() -> list[str]:
    """One line per operation: its name, arguments and what it does."""
    lines = []
    for name in OPS:
        fn = getattr(BenchControl, f"op_{name}")
        params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
        spec = " ".join(p.name if p.default is inspect.Parameter.empty else f"[{p.name}={p.default}]" for p in params)
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        lines.append(f"{name.replace('_', '-')} {spec}".rstrip() + f": {doc}")
    return lines


__all__ = ["BenchControl", "ControlError", "KINDS", "OPS", "Plug", "STALE_STREAM", "check_args", "describe_ops"]
