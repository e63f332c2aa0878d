"""The Joulescope JS220: an ammeter/voltmeter in series with the DUT's supply,
sampling current, voltage and its GPI0 input (the DUT's timestamp GPIO) at
2 Msps, read by the host through Jetperch's driver. Its side of the driver
link as a protocol core (:mod:`.core`) and the instrument on the twin's clock
(:mod:`.device`); the host side is the stand-in ``pyjoulescope_driver`` in
``emulator/benches/inject``."""
from .core import Js220Core, SAMPLE_ID_RATE
from .device import Js220

__all__ = ["Js220", "Js220Core", "SAMPLE_ID_RATE"]
