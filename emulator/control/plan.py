"""Fault plans: the faults of ``tinytwin ctl``, scheduled when the twin starts
(``--faults plan.yaml`` of ``tinytwin rig`` / ``tinytwin external``).

A plan is a YAML (or JSON) file::

    faults:
      - do: garble              # an operation of tinytwin ctl
        port: dut               # its arguments, by name
        direction: to-board
        count: 1
        when: {port: dut, after_command: 100}   # after the host's 100th command on dut
      - do: drop-line
        port: io
        direction: to-host
        when: {port: io, after_line: "[dut]: m-ready", count: 6}
      - do: reset
        when: {at_s: 30}        # at 30 s of simulated time
      - do: stream-emon         # no when: as the twin starts

``when`` is one of:

* ``{at_s: T}``: at simulated time T (seconds since the twin was built);
* ``{after_command: N, port: P}``: as the host's N-th command on port P
  leaves the host, before the board has it (counted from the twin's start;
  a command ends with ``%`` on a DUT or interface port, with a line end on
  the LPM01A): a reset, hang or unplug keeps that command from the board;
* ``{after_line: TEXT, count: N, port: P}``: right after the board's N-th
  line equal to TEXT on port P (``count`` defaults to 1), counting the lines
  a host could see (a pty no host has opened drops them uncounted);

``port`` in ``when`` defaults to the fault's own ``port``. Each fault fires
once, in the simulation thread; what it did is logged and kept in the
control's ``history``. A fault armed by a trigger applies from the next line
(or command) on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import ConfigError
from .bench import BenchControl, ControlError, check_args


@dataclass
class Fault:
    """One entry of a plan."""

    op: str
    args: dict
    when: dict = field(default_factory=dict)
    index: int = 0
    fired: bool = False
    result: Optional[dict] = None

    def describe(self) -> str:
        args = " ".join(f"{k}={v}" for k, v in self.args.items())
        when = ", ".join(f"{k}={v}" for k, v in self.when.items()) or "at start"
        return f"#{self.index} {self.op} {args} ({when})".replace("  ", " ")


@dataclass
class FaultPlan:
    faults: list[Fault]
    path: Optional[Path] = None

    @classmethod
    def load(cls, path: str | Path) -> "FaultPlan":
        """Read and check a plan file; errors name the file and the entry."""
        path = Path(path).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the fault plan {path}: {exc.strerror}") from None
        return cls.parse(text, path)

    @classmethod
    def parse(cls, text: str, path: Optional[Path] = None) -> "FaultPlan":
        import yaml

        where = str(path) if path else "the fault plan"
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where} is not valid YAML: {exc}") from None
        if isinstance(data, list):
            data = {"faults": data}
        if not isinstance(data, dict) or not isinstance(data.get("faults"), list):
            raise ConfigError(f"{where}: expected a mapping with a list 'faults:' (see firmware_api_spec/faults.md)")
        faults = []
        for i, entry in enumerate(data["faults"], start=1):
            if not isinstance(entry, dict) or "do" not in entry:
                raise ConfigError(f"{where}: fault #{i} needs 'do: <operation>' (e.g. do: reset)")
            entry = dict(entry)
            op = str(entry.pop("do")).replace("_", "-")
            when = entry.pop("when", None) or {}
            if not isinstance(when, dict):
                raise ConfigError(f"{where}: fault #{i} ({op}): 'when' must be a mapping, e.g. {{at_s: 10}}")
            fault = Fault(op, entry, _check_when(where, i, op, when, entry), i)
            faults.append(fault)
        plan = cls(faults, path)
        plan.check()
        return plan

    def check(self) -> None:
        """Refuse unknown operations and arguments before anything starts."""
        probe = BenchControl(twin=None, dut=None)
        ops = probe.ops()
        where = str(self.path) if self.path else "the fault plan"
        for f in self.faults:
            fn = ops.get(f.op)
            if fn is None:
                raise ConfigError(f"{where}: fault #{f.index}: unknown operation {f.op!r}; choose one of {', '.join(ops)}")
            try:
                check_args(f.op, fn, f.args)
            except ControlError as exc:
                raise ConfigError(f"{where}: fault #{f.index}: {exc}") from None

    # -- on a bench ---------------------------------------------------------------------------
    def install(self, control: BenchControl) -> None:
        """Arm every fault's trigger on ``control``'s bench (call before the
        twin runs, or from its thread)."""
        for f in self.faults:
            port = f.when.get("port") or f.args.get("port")
            if "at_s" in f.when:
                delay = float(f.when["at_s"]) * 1e9 - control.twin.now
                control.twin.schedule(max(0.0, delay), lambda f=f: self._fire(control, f))
            elif "after_command" in f.when:
                tap = self._tap(control, f, port)
                n = int(f.when["after_command"])

                tap.on_command.append(self._once(tap.on_command, lambda count, n=n: count == n, control, f))
            elif "after_line" in f.when:
                tap = self._tap(control, f, port)
                text, n = str(f.when["after_line"]), int(f.when.get("count", 1))
                seen = [0]

                def nth(line: str, text=text, n=n, seen=seen) -> bool:
                    if line != text:
                        return False
                    seen[0] += 1
                    return seen[0] == n

                tap.on_line.append(self._once(tap.on_line, nth, control, f))
            else:
                control.twin.schedule(0, lambda f=f: self._fire(control, f))

    def _once(self, callbacks: list, due, control: BenchControl, f: Fault):
        """A tap callback that fires ``f`` when ``due(value)`` and then leaves
        ``callbacks`` (a tap with no trigger waiting is passive again)."""

        def callback(value) -> None:
            if due(value):
                if callback in callbacks:
                    callbacks.remove(callback)
                self._fire(control, f)

        return callback

    def _tap(self, control: BenchControl, f: Fault, port: Optional[str]):
        plug = control.plugs.get(port or "")
        if plug is None:
            raise ConfigError(
                f"fault #{f.index} ({f.op}) waits for port {port!r}, which this bench does not have "
                f"(it has {', '.join(control.plugs) or 'none'})"
            )
        return plug.tap

    def _fire(self, control: BenchControl, f: Fault) -> None:
        if f.fired:
            return
        f.fired = True
        try:
            f.result = control._run(f.op, control.ops()[f.op], dict(f.args))
            control.twin.log(f"fault plan: {f.describe()}: done at {f.result['sim_s']:.6f} s")
        except (ControlError, ConfigError) as exc:
            f.result = {"error": str(exc)}
            control.twin.log(f"fault plan: {f.describe()}: {exc}")
        except Exception as exc:  # a fault must never take the simulation down with it
            f.result = {"error": f"{type(exc).__name__}: {exc}"}
            control.twin.log(f"fault plan: {f.describe()}: failed: {f.result['error']}")

    def report(self) -> list[str]:
        return [f"{f.describe()}: " + ("not reached" if not f.fired else
                                        ((f.result or {}).get("error") or f"at {(f.result or {}).get('sim_s', 0):.3f} s"))
                for f in self.faults]


def _check_when(where: str, i: int, op: str, when: dict, args: dict) -> dict:
    keys = set(when)
    allowed = [{"at_s"}, {"after_command", "port"}, {"after_line", "count", "port"}]
    if keys and not any(keys <= a and keys & a - {"port", "count"} for a in allowed):
        raise ConfigError(
            f"{where}: fault #{i} ({op}): 'when' takes at_s, after_command (+ port) or after_line (+ count, port); "
            f"got {', '.join(sorted(keys))}"
        )
    try:
        if "at_s" in when and not 0 <= float(when["at_s"]) < float("inf"):
            raise ValueError
        if "after_command" in when and int(when["after_command"]) < 1:
            raise ValueError
        if "count" in when and int(when["count"]) < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: fault #{i} ({op}): at_s must be >= 0 and the counts >= 1") from None
    if ("after_command" in when or "after_line" in when) and not (when.get("port") or args.get("port")):
        raise ConfigError(f"{where}: fault #{i} ({op}): say which port to count on (when: {{port: dut, ...}})")
    return dict(when)


def load_plan(path: Any) -> Optional[FaultPlan]:
    return None if path is None else FaultPlan.load(path)


__all__ = ["Fault", "FaultPlan", "load_plan"]
