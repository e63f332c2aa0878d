"""Energy monitors: instruments that measure the DUT's supply.

Each is a board like the IO managers: a pure protocol core (bytes in, actions
out) and a device on the twin's clock that integrates the DUT's supply power
(:mod:`emulator.power.model`) over its samples:

* :class:`Lpm01a` (ST X-NUCLEO-LPM01A): powers the DUT, streams energy
  samples over a serial port, reports D7 (timestamp) edges;
* :class:`Js220` (Joulescope JS220): in series with a supply, streams current
  and voltage at 2 Msps and its GPI0 input over USB (host side: the real
  ``joulescope`` package on tinytwin's stand-in driver).

:data:`EMONS` names them for the benches.
"""
from .js220 import Js220
from .lpm01a import Lpm01a

#: the energy monitors a bench can use, by the name the CLI takes
EMONS = {"lpm01a": Lpm01a, "js220": Js220}

__all__ = ["EMONS", "Js220", "Lpm01a"]
