"""Energy monitors: instruments that power the DUT and measure its energy.

Each is a board like the IO managers: a pure protocol core (bytes in, actions
out) and a device on the twin's clock that integrates the DUT's supply power.
:data:`EMONS` names them for the benches.
"""
from .lpm01a import Lpm01a

#: the energy monitors a bench can use, by the name the CLI takes
EMONS = {"lpm01a": Lpm01a}

__all__ = ["EMONS", "Lpm01a"]
