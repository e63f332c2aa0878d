"""The bench set-ups a runner meets, as one description: :class:`BenchSetup`.

A real MLPerf Tiny bench is one of a handful of wirings, and a runner has to
cope with each (``../shared/research/runner_paths_js220.md`` B.1-B.2):

==========================  ====================================================
set-up                      what is connected
==========================  ====================================================
DUT alone                   the DUT's own USB (ST-LINK VCP), performance or
                            accuracy firmware (``interface="none"``)
energy bench                interface board + LPM01A, the DUT's energy-mode
                            firmware behind the board, supplied by the LPM01A
perf firmware behind H573   the H573 interface board relays a DUT running the
                            performance/accuracy firmware (``firmware=
                            "performance"``): the mlcommons runner uses the
                            interface whenever one is present (``setbaud
                            115200``)
interface, no EMON          ``emon="none"``: nothing measures or switches the
                            DUT's supply; it is powered from the start
JS220 / both                ``emon="js220"``: a Joulescope JS220 in series with
                            the DUT's bench supply (``supply_v``); ``"both"``:
                            the JS220 in series with the LPM01A's output
DUT's USB still plugged in  ``dut_usb``: the DUT's ST-LINK VCP is offered too,
                            on the same UART the interface board relays
DUT with an STLINK-V3       ``dut_stlink="v3"``: the DUT's VCP enumerates as
                            0483:374E, the H573's identity (NUCLEO-U575ZI-Q
                            and other newer Nucleos)
==========================  ====================================================

``tinytwin rig`` and ``tinytwin external`` take these as options
(``--interface``, ``--firmware``, ``--emon``, ``--dut-usb``, ``--dut-stlink``,
``--supply-v``); :func:`emulator.benches.rig.build_rig` builds them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..errors import ConfigError

INTERFACES = ("none", "h573", "arduino")
EMONS = ("none", "lpm01a", "js220", "both")
FIRMWARES = ("energy", "performance")
#: the DUT's debugger and the USB identity of its virtual COM port
STLINKS = {"v2-1": "l4r5zi", "v3": "l4r5zi-stlink-v3"}
#: the range of a bench supply a JS220 measures (the DUT's VDD range)
SUPPLY_RANGE_V = (1.71, 3.6)
#: the DUT supply of a bench without an LPM01A: the reference results' 1.8 V
DEFAULT_SUPPLY_V = 1.8


def _choice(name: str, value, choices) -> str:
    v = "none" if value is None else str(value).strip().lower()
    if v not in choices:
        raise ConfigError(f"unknown {name} {value!r}: choose one of {', '.join(choices)} (--{name})")
    return v


@dataclass(frozen=True)
class BenchSetup:
    """Which boards a bench has and how they are wired (module docstring).

    ``interface="none"`` is the DUT alone on its own USB. ``firmware`` is the
    DUT's build: ``energy`` (9600 baud, GPIO timestamps) or ``performance``
    (115200 or the model's baud, ``m-lap-us`` lines; also used for
    accuracy). ``emon``: which instruments measure the DUT's supply.
    """

    interface: str = "h573"
    firmware: str = "energy"
    emon: str = "lpm01a"
    dut_usb: bool = False
    dut_stlink: str = "v2-1"
    supply_v: float = DEFAULT_SUPPLY_V

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "interface", _choice("interface", self.interface, INTERFACES))
        set_(self, "firmware", _choice("firmware", self.firmware, FIRMWARES))
        set_(self, "emon", _choice("emon", self.emon, EMONS))
        set_(self, "dut_stlink", _choice("dut-stlink", self.dut_stlink, tuple(STLINKS)))
        lo, hi = SUPPLY_RANGE_V
        if not lo <= float(self.supply_v) <= hi:
            raise ConfigError(f"--supply-v must be within {lo:g}-{hi:g} V (the DUT's supply range), got {self.supply_v}")
        if self.interface == "none":
            set_(self, "dut_usb", True)  # the DUT alone is reached through its own USB

    @classmethod
    def resolve(
        cls,
        *,
        energy: bool,
        interface: Optional[str] = None,
        firmware: Optional[str] = None,
        emon: Optional[str] = None,
        dut_usb: bool = False,
        dut_stlink: str = "v2-1",
        supply_v: Optional[float] = None,
    ) -> "BenchSetup":
        """The set-up the command-line options describe. ``energy`` (the
        ``--energy`` flag) is the energy bench: interface board (H573 unless
        given), energy firmware, LPM01A unless ``emon`` says otherwise.
        Without it: the DUT alone with the performance firmware, unless an
        ``interface`` is given (then the performance firmware behind it)."""
        if energy:
            interface = interface or "h573"
            firmware = firmware or "energy"
            emon = emon or "lpm01a"
        else:
            interface = interface or "none"
            firmware = firmware or "performance"
            emon = emon or "none"
        return cls(interface=interface, firmware=firmware, emon=emon, dut_usb=dut_usb, dut_stlink=dut_stlink,
                   supply_v=DEFAULT_SUPPLY_V if supply_v is None else supply_v)

    # -- what it implies ----------------------------------------------------------------
    @property
    def energy_firmware(self) -> bool:
        return self.firmware == "energy"

    @property
    def lpm01a(self) -> bool:
        return self.emon in ("lpm01a", "both")

    @property
    def js220(self) -> bool:
        return self.emon in ("js220", "both")

    @property
    def dut_supply(self) -> str:
        """Who powers the DUT: ``lpm01a`` (off until ``pwr on``), else
        ``supply`` (a bench supply or its USB: on from the start)."""
        return "lpm01a" if self.lpm01a else "supply"

    @property
    def dut_board(self) -> str:
        """The USB identity (key of ``USB_IDENTITIES``) of the DUT's VCP."""
        return STLINKS[self.dut_stlink]

    def describe(self) -> str:
        parts = ["DUT alone" if self.interface == "none" else f"{self.interface} interface board",
                 f"{self.firmware} firmware"]
        if self.emon != "none":
            parts.append({"lpm01a": "LPM01A", "js220": f"JS220 on a {self.supply_v:g} V supply",
                          "both": "LPM01A with a JS220 in series"}[self.emon])
        elif self.interface != "none":
            parts.append("no energy monitor")
        if self.dut_usb and self.interface != "none":
            parts.append("the DUT's own USB also plugged in")
        if self.dut_stlink == "v3":
            parts.append("DUT VCP with the STLINK-V3 identity 0483:374E")
        return ", ".join(parts)


#: the help texts of the options (one place for ``rig`` and ``external``)
HELP = {
    "interface": "interface board: h573 (STM32H573I-DK, mlcommons runner), arduino (EEMBC io-manager), or none "
                 "(the DUT alone on its own USB)",
    "firmware": "the DUT's firmware: energy (9600 baud, GPIO timestamps) or performance (also accuracy)",
    "emon": "energy monitor: lpm01a, js220 (Joulescope JS220 on a bench supply), both, or none",
    "dut_usb": "also offer the DUT's own USB (ST-LINK VCP) on a bench with an interface board",
    "dut_stlink": "the DUT's debugger: v2-1 (VCP 0483:374B, NUCLEO-L4R5ZI) or v3 (0483:374E, as the H573's)",
    "supply_v": "the DUT's bench supply when no LPM01A powers it (the JS220 measures it), volts",
    "faults": "a fault plan (YAML): faults to inject at given times or after given commands; see "
              "firmware_api_spec/faults.md",
    "control": "the control socket (a file path) of `tinytwin ctl`",
    "control_tcp": "ALSO serve the control channel on TCP HOST:PORT (reachable from other machines unless HOST is "
                   "127.0.0.1)",
}

__all__ = ["BenchSetup", "DEFAULT_SUPPLY_V", "EMONS", "FIRMWARES", "HELP", "INTERFACES", "STLINKS"]
