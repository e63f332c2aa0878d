"""Host side of the IO manager that sits between the host and a DUT in energy mode.

In energy mode the DUT is powered by the EMON and its UART is not connected
to the host; an interface board relays it:

* ``arduino``: the EEMBC "IO Manager" (Arduino UNO, io-manager 1.0.3), used
  with the EEMBC EnergyRunner. ``name`` answers ``m-name-io``; ``dut <cmd>``
  answers ``m-dut-passthrough(<cmd>)`` and ``m-ready`` at once and sends
  ``<cmd>%`` to the DUT; every line the DUT sends, whenever it sends it, comes
  as ``[dut]: <line>``. Its command buffer is 64 characters (``dut db <hex>``
  must fit) and arguments are split on spaces (at most 10).
* ``h573``: the MLCommons interface board (STM32H573I-DK) used by the
  mlcommons/tiny runner. ``name`` answers ``tinyML Enhanced Interface
  Board``; ``dut <cmd>`` answers ``m-dut-passthrough(<cmd>)``, ``m-ready``, then
  relays the DUT's lines as ``[dut]: <line>`` up to the DUT's ``m-ready``,
  and waits for that line for as long as it takes. It queues whatever the DUT
  sends between commands (at most 100 bytes), so the first command after the
  DUT's boot banner would get the stale banner: ``setbaud <N>`` resets the
  board (clearing the queue) and sets the DUT-side baud; ``checkbaud``
  reports it.

Both end each command of their own with ``m-ready``; a DUT command is complete
with ``[dut]: m-ready``. :class:`IoManagerClient` sends one command at a
time, logs every line, and returns the DUT's lines without the prefix.
"""
from __future__ import annotations

import time
from typing import Callable

from .errors import DeviceError, DeviceTimeout
from .lines import SerialLines
from .protocol import BOOT_LINES

HOST_BAUD = 115200
#: the reference firmware's energy-mode baud (DUT side of the IO manager)
DUT_ENERGY_BAUD = 9600
INTERFACES = ("arduino", "h573")
#: what each board answers to ``name``
NAMES = {"m-name-io": "arduino", "tinyML Enhanced Interface Board": "h573"}
#: bytes per ``db`` command behind an IO manager: ``dut db `` + 52 hex digits
#: fits the Arduino's 64-character command buffer (the mlcommons runner sends
#: 26 bytes a command when a power board is in use)
DB_CHUNK_BYTES = 26
DUT_PREFIX = "[dut]: "
READY = "m-ready"


class IoManagerError(DeviceError):
    """The IO manager answered wrongly or not at all."""


class IoManagerClient(SerialLines):
    """An IO manager on a serial port.

    ``log(who, lines)`` gets every line: ``host>io`` for what is sent, ``io``
    for what is received. ``on_wait`` is called about every 0.2 s while
    waiting for an answer (a progress bar, a health check that may raise).
    """

    def __init__(
        self,
        port: str,
        log: Callable[[str, list[str]], None] | None = None,
        *,
        interface: str | None = None,
        timeout: float = 5.0,
        on_wait: Callable[[], None] | None = None,
        opener=None,
    ):
        if interface is not None and interface not in INTERFACES:
            raise IoManagerError(f"--interface must be one of {', '.join(INTERFACES)}, got {interface!r}")
        self.port = port
        self.kind = interface
        self.timeout = float(timeout)
        self.on_wait = on_wait
        self._log = log or (lambda who, lines: None)
        self._opener = opener
        self._ser = None
        self._buf = bytearray()
        self.name: str | None = None
        self.version: str | None = None
        #: lines the DUT sent outside any command (boot banner, ...)
        self.unsolicited: list[str] = []
        #: the DUT's boot banner went by since :meth:`take_reboot` (it reset)
        self.reboot_seen = False

    # -- port -----------------------------------------------------------------------
    def open(self) -> None:
        if self._opener is None:
            from .link import open_serial

            self._ser = open_serial(self.port, HOST_BAUD)
        else:
            self._ser = self._opener(self.port, HOST_BAUD)

    def close(self) -> None:
        self._close_port()

    # -- bytes and lines (runner.lines.SerialLines) ------------------------------------
    def _port_label(self) -> str:
        return f"the IO manager port {self.port}"

    def _not_open_message(self) -> str:
        return f"the IO manager port {self.port} is not open"

    def _io_error(self, message: str) -> Exception:
        return IoManagerError(message)

    def _log_sent(self, text: str) -> None:
        self._log("host>io", [text])

    def _log_line(self, line: str) -> None:
        self._log("io", [line])
        if line.startswith(DUT_PREFIX) and line[len(DUT_PREFIX):] in BOOT_LINES:
            self.reboot_seen = True

    def take_reboot(self) -> bool:
        """Whether the DUT's boot banner went by since the last call."""
        seen, self.reboot_seen = self.reboot_seen, False
        return seen

    def read_line(self, deadline: float) -> str | None:
        """The next non-empty line, or ``None`` at ``deadline`` (monotonic)."""
        return self._read_line(deadline)

    def _drained(self, line: str) -> None:
        # DUT lines that arrive outside a command are kept in `unsolicited`
        if line.startswith(DUT_PREFIX):
            self.unsolicited.append(line[len(DUT_PREFIX):])

    def take_pending(self) -> None:
        """Consume what has already arrived (without waiting): DUT lines go
        to :attr:`unsolicited`, all are logged."""
        self._read_now()
        while b"\n" in self._buf:
            line = self.read_line(0.0)
            if line is None:
                break
            if line.startswith(DUT_PREFIX):
                self.unsolicited.append(line[len(DUT_PREFIX):])

    # -- the board's own commands ---------------------------------------------------------
    def command(self, cmd: str, timeout: float | None = None, ready_at_end: bool = False) -> list[str]:
        """An IO manager command; its lines up to (without) ``m-ready``.
        DUT lines that arrive meanwhile are set aside. ``ready_at_end``: the
        answer may end with ``m-ready`` appended to its last line (the H573's
        ``print_dutycycle``); that line is returned without it."""
        limit = self.timeout if timeout is None else timeout
        self._write(cmd + "%")
        lines: list[str] = []
        while True:
            line = self.read_line(time.monotonic() + limit)
            if line is None:
                got = f"; got {lines!r}" if lines else "; nothing received"
                card = (" An H573 with no SD card, or whose card was pulled, stops answering: is a card inserted?"
                        if self.kind == "h573" else "")
                raise DeviceTimeout(
                    f"the IO manager on {self.port} did not answer '{cmd}%' within {limit:g} s{got} "
                    f"(is it powered, on this port, at 115200 baud?){card}"
                )
            if line.startswith(DUT_PREFIX):
                self.unsolicited.append(line[len(DUT_PREFIX):])
                continue
            if line == READY:
                return lines
            if ready_at_end and line.endswith(READY):
                lines.append(line[: -len(READY)])
                return lines
            lines.append(line)

    def sync(self, attempts: int = 2) -> None:
        """``%`` alone: both boards answer ``m-ready`` (the UNO after ``e-?``)."""
        for _ in range(attempts):
            try:
                self.command("", timeout=self.timeout)
                self.drain(quiet=0.05, limit=0.5)
                return
            except DeviceTimeout:
                continue
        raise DeviceTimeout(
            f"the IO manager on {self.port} does not answer: no 'm-ready' to '%' within {self.timeout:g} s "
            "(is it powered, on this port? a H573 board waiting for a silent DUT needs a reset; one with no SD "
            "card inserted stops answering)"
        )

    def identify(self) -> str:
        """Which board this is (``name``); checked against the kind asked for."""
        answer = self.command("name")
        found = None
        for line in answer:
            if line in NAMES:
                found = NAMES[line]
                self.name = line
        if found is None:
            raise IoManagerError(
                f"the device on {self.port} answered 'name%' with {answer!r}: not an IO manager this runner "
                f"knows (Arduino io-manager: 'm-name-io'; H573 interface board: 'tinyML Enhanced Interface Board')"
            )
        if self.kind is not None and self.kind != found:
            raise IoManagerError(
                f"--interface {self.kind} was given but the board on {self.port} is the {found} IO manager "
                f"(it answered {self.name!r} to 'name%')"
            )
        self.kind = found
        if found == "arduino":
            for line in self.command("version"):
                if line.startswith("m-version-"):
                    self.version = line[len("m-version-"):]
        return found

    def reset_dut_side(self, baud: int = DUT_ENERGY_BAUD, boot_wait: float = 5.0) -> None:
        """H573: ``setbaud`` (the board restarts: its stale DUT queue is
        emptied) and ``checkbaud`` until it answers with ``baud``."""
        if self.kind != "h573":
            return
        answer = self.command(f"setbaud {baud}")
        if not any(ln.startswith("set baud to:") for ln in answer):
            raise IoManagerError(f"the H573 board on {self.port} did not confirm 'setbaud {baud}': {answer!r}")
        end = time.monotonic() + boot_wait
        last: list[str] | str = "nothing"
        while time.monotonic() < end:
            time.sleep(0.1)  # the board restarts; bytes sent meanwhile are lost
            try:
                answer = self.command("checkbaud", timeout=1.0)
            except DeviceTimeout:
                continue
            last = answer
            if f"baud is: {baud}" in answer:
                self.drain(quiet=0.05, limit=0.5)
                return
        raise IoManagerError(
            f"the H573 board on {self.port} did not come back at {baud} baud on its DUT side after 'setbaud' "
            f"(last answer to 'checkbaud': {last!r})"
        )

    # -- the DUT, through the board ---------------------------------------------------------
    def wait_dut_ready(self, timeout: float) -> list[str] | None:
        """Arduino: wait for the DUT's ``m-ready`` relayed unasked (its boot
        banner ends with it). Returns the DUT lines, or ``None`` at timeout."""
        end = time.monotonic() + timeout
        lines: list[str] = []
        while True:
            line = self.read_line(end)
            if line is None:
                return None
            if line.startswith(DUT_PREFIX):
                text = line[len(DUT_PREFIX):]
                self.unsolicited.append(text)
                lines.append(text)
                if text == READY:
                    return lines

    def dut(self, cmd: str, timeout: float | None = None, gap: Callable[[str], float | None] | None = None) -> list[str]:
        """Send ``dut <cmd>``; return the DUT's answer lines up to (without)
        its ``m-ready``. ``timeout`` is the longest wait for each next line;
        ``gap(line)`` may return a longer wait for the line after ``line``."""
        limit = self.timeout if timeout is None else timeout
        self.take_pending()
        self._write(f"dut {cmd}%")
        echo = f"m-dut-passthrough({cmd})"
        io_ready = passed = False
        lines: list[str] = []
        wait = limit
        start = time.monotonic()
        while True:
            line = self.read_line(time.monotonic() + wait)
            if line is None:
                if not passed:
                    raise DeviceTimeout(
                        f"the IO manager on {self.port} did not pass 'dut {cmd[:40]}' on to the DUT "
                        f"within {wait:.1f} s (no '{echo[:60]}')"
                    )
                got = f"; last DUT line: {lines[-1]!r}" if lines else "; no line from the DUT"
                hint = (
                    " (the H573 board now waits for the DUT's m-ready until it is reset)" if self.kind == "h573" else ""
                )
                raise DeviceTimeout(
                    f"no answer from the DUT to '{cmd[:40]}{'...' if len(cmd) > 40 else ''}' through the IO manager "
                    f"on {self.port} within {wait:.1f} s (after {time.monotonic() - start:.1f} s{got}){hint}"
                )
            wait = limit
            if line.startswith(DUT_PREFIX):
                text = line[len(DUT_PREFIX):]
                if not passed:
                    # still the DUT's earlier output (the Arduino relays whenever)
                    self.unsolicited.append(text)
                    continue
                if text == READY:
                    return lines
                lines.append(text)
                if gap is not None:
                    g = gap(text)
                    if g is not None:
                        wait = max(limit, g)
                continue
            if line == echo:
                passed = True
                continue
            if line == READY and passed and not io_ready:
                io_ready = True
                continue
            if line.startswith("e-"):
                raise IoManagerError(
                    f"the IO manager on {self.port} refused 'dut {cmd[:40]}': {line}"
                    + (" (its command buffer holds 64 characters)" if len(cmd) + 4 > 63 else "")
                )
            # anything else from the board itself (m-lap-us-... with D3 wired): logged, ignored
