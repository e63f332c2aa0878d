"""Control of a running twin: faults and bench actions on demand.

* :mod:`.tap`: :class:`PortTap`, the one hook on each host port's wire (trace,
  ``--drop-line``, dropped/garbled/delayed bytes and lines);
* :mod:`.bench`: :class:`BenchControl`, the operations (press RESET,
  power-cycle, brown-out, hang, unplug/replug, arm a fault, stale EMON
  stream, jump the µs timer, the bench's state), run in the simulation
  thread at a defined simulated time;
* :mod:`.server`: the control socket and ``tinytwin ctl``'s client;
* :mod:`.plan`: fault plans (``--faults plan.yaml``);
* :mod:`.cli`: ``tinytwin ctl``.

See ``firmware_api_spec/faults.md`` for every fault: what a real bench does,
how to trigger it, and what the runners do.
"""
from .bench import BenchControl, ControlError, Plug
from .plan import FaultPlan
from .server import CONTROL_ENV, ControlClient, ControlServer
from .tap import LineDrop, PortTap, Trace

__all__ = ["BenchControl", "CONTROL_ENV", "ControlClient", "ControlError", "ControlServer", "FaultPlan", "LineDrop", "Plug",
           "PortTap", "Trace"]
