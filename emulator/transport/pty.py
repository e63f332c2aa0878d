"""A real pseudo-terminal as a twin's serial port (:class:`PtyPort`).

Any program opens its slave device by path (we also symlink it at a stable
path such as ``/tmp/tinytwin/dut``). We keep only the master open: a host
closing and reopening the port finds the same device, with the state a board
keeps and the line settings it left, and what the device prints while no host
has the port open is dropped, as when nobody listens on a board's USB serial
port. The baud rate the host configures on the slave is visible to us and is
honoured (a mismatch garbles the bytes, as on a real UART).

How we learn the host's baud without asking at every transfer (Linux): the
master is in packet mode (``TIOCPKT``) and the slave's termios carry the
``EXTPROC`` flag, so the kernel announces every change of the slave's
settings to the master with a ``TIOCPKT_IOCTL`` status byte, in order with
the data (a change made before a write is read before that write's bytes);
we read the baud once per announcement. ``EXTPROC`` tells the line
discipline that input processing is done elsewhere, which changes nothing
while the host's settings are raw (every serial program's, and ours); if a
host asks for canonical mode, signals, echo or character mapping, we take the
flag off again (so its line discipline works as on any tty) and from then on
ask for the baud at every transfer, as we do where packet mode is missing and
when a host clears the flag itself. (Taking the flag off rewrites the slave's
settings; a second change by the host within those few microseconds would be
lost.)
"""
from __future__ import annotations

import fcntl
import os
import select
import struct
import sys
import termios
import tty
from pathlib import Path

from .base import HostPort, TransportError

_TCGETS2 = 0x802C542A
_TCSETS2 = 0x402C542B
_BOTHER = 0o010000
_TIOCPKT = 0x5420
_TIOCPKT_IOCTL = 0x40
_EXTPROC = 0o200000  # (Linux's c_lflag bit; Python's termios does not name it)
#: settings under which the line discipline processes input (the kernel's
#: condition for a non-raw tty): with EXTPROC set it would not
_COOKED_IFLAG = termios.ISTRIP | termios.IGNCR | termios.ICRNL | termios.INLCR | termios.IXON | termios.PARMRK | getattr(termios, "IUCLC", 0)
_COOKED_LFLAG = termios.ICANON | termios.ISIG | termios.ECHO
_ANNOUNCE = sys.platform.startswith("linux")

_SPEEDS = {getattr(termios, name): int(name[1:]) for name in dir(termios) if name.startswith("B") and name[1:].isdigit()}
_CODES = {v: k for k, v in _SPEEDS.items()}
_U32 = struct.Struct("I")
_I32 = struct.Struct("i")

_TERMIOS2 = bytes(64)  # struct termios2 (44 bytes), with room to spare


def tty_baud(fd: int) -> int | None:
    """The output baud rate configured on a tty."""
    try:
        buf = fcntl.ioctl(fd, _TCGETS2, _TERMIOS2)
    except OSError:
        buf = None
    if buf is not None:
        baud = _termios2_baud(buf)
        if baud is not None:
            return baud
    try:
        attrs = termios.tcgetattr(fd)
    except termios.error:
        return None
    return _SPEEDS.get(attrs[5])


def _termios2_baud(buf: bytes) -> int | None:
    """The output baud of a ``struct termios2`` (``None``: not set there)."""
    cflag = _U32.unpack_from(buf, 8)[0]
    ospeed = _U32.unpack_from(buf, 40)[0]
    return ospeed if cflag & _BOTHER or ospeed else None


def set_tty_baud(fd: int, baud: int) -> None:
    code = _CODES.get(baud)
    if code is None:
        return
    attrs = termios.tcgetattr(fd)
    attrs[4] = attrs[5] = code
    termios.tcsetattr(fd, termios.TCSANOW, attrs)



class PtyPort(HostPort):
    """A pseudo-terminal; the host opens :attr:`device` (or the symlink).

    We do not keep the slave open ourselves: the master then reports a hang-up
    whenever no host has the port open, and what the device prints meanwhile is
    dropped, as a board's output is when nobody listens on its USB serial
    port (otherwise the next program to open the port would read stale
    lines). The line settings (raw mode, baud) persist between openings, and
    the baud the host sets is read through the master.
    """

    def __init__(self, name: str, link: str | os.PathLike | None = None, initial_baud: int | None = None):
        master, slave = os.openpty()
        tty.setraw(slave)
        tty.setraw(master)
        if initial_baud:
            set_tty_baud(slave, initial_baud)
        #: the host's setting changes are announced on the master (see the
        #: module docstring); else the baud is asked for at every transfer
        self.announced = _ANNOUNCE and _announce_changes(master, slave)
        self._packet = self.announced  # the master's reads start with a status byte
        self.device = os.ttyname(slave)
        os.close(slave)
        super().__init__(name, master)
        self.dropped = 0
        self._baud: int | None = tty_baud(master)
        self._baud_turn = -1  # the twin's turn in which _baud was read
        # asked before a write unless the twin's poll of this turn saw the
        # host end open: does a host have the slave open?
        self._hup_poll = select.poll()
        self._hup_poll.register(master, select.POLLIN)
        self.link: Path | None = None
        if link is not None:
            try:
                self.link = make_link(Path(link), self.device)
            except TransportError:
                os.close(master)
                raise

    def host_connected(self) -> bool:
        twin = self.twin
        if twin is not None and self.open_turn == twin.turn:
            return True  # seen open a moment ago (this turn of the twin's loop)
        try:
            for _, ev in self._hup_poll.poll(0):
                if ev & select.POLLHUP:
                    return False
        except (OSError, ValueError):
            return False
        if twin is not None:
            # asked once per turn, as the loop's own poll is: a device that
            # prints byte by byte (a UART at its baud) does not ask again for
            # each byte of the turn
            self.open_turn = twin.turn
        return True

    def host_baud(self) -> int | None:
        """The baud rate the host set: as of its last announced change (the
        twin's loop reads the announcement before any byte the host wrote
        after it), or else read once per turn of the twin's loop (the host
        changes it before it writes, and what it wrote is read, which starts
        a new reading, before it is handed on)."""
        twin = self.twin
        if twin is None:
            return tty_baud(self.fd)
        if self.announced:
            return self._baud
        if self._baud_turn != twin.turn:
            self._baud = tty_baud(self.fd)
            self._baud_turn = twin.turn
        return self._baud

    def read_available(self) -> bytes | None:
        if not self.announced:
            self._baud_turn = -1  # what the host sent may follow a baud change
        read = HostPort.read_available
        while True:
            data = read(self)
            if not data or not self._packet:
                return data
            if not data[0]:  # TIOCPKT_DATA: what the host wrote
                return data[1:]
            if data[0] & _TIOCPKT_IOCTL and self.announced:  # the host changed its settings
                self._settings_changed()
            # (other status bytes: the host flushed a queue, flow control)

    def _settings_changed(self) -> None:
        try:
            buf = fcntl.ioctl(self.fd, _TCGETS2, _TERMIOS2)
        except OSError:
            self.announced = False
            return
        self._baud = _termios2_baud(buf)
        iflag, lflag = struct.unpack_from("I8xI", buf, 0)
        if not lflag & _EXTPROC:
            self.announced = False  # the host took the flag off: ask at every transfer
        elif iflag & _COOKED_IFLAG or lflag & _COOKED_LFLAG:
            # the host wants its input processed: a plain tty's line discipline
            self.announced = False
            try:
                fcntl.ioctl(self.fd, _TCSETS2, buf[:12] + _U32.pack(lflag & ~_EXTPROC) + buf[16:])
            except OSError:
                pass

    def on_read_error(self) -> bytes | None:
        # EIO: no host has the slave open right now; the port stays
        return b""

    def write_to_host(self, data: bytes) -> None:
        twin = self.twin
        if not (twin is not None and self.open_turn == twin.turn) and not self.host_connected():
            self.dropped += len(data)
            return
        HostPort.write_to_host(self, data)

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        if self.link is not None:
            try:
                if self.link.is_symlink() and os.readlink(self.link) == self.device:
                    self.link.unlink()
            except OSError:
                pass


def _announce_changes(master: int, slave: int) -> bool:
    """Set EXTPROC on the slave, then packet mode on the master (in that
    order: no announcement of our own setting); whether both took."""
    try:
        buf = fcntl.ioctl(slave, _TCGETS2, _TERMIOS2)
        lflag = _U32.unpack_from(buf, 12)[0]
        fcntl.ioctl(slave, _TCSETS2, buf[:12] + _U32.pack(lflag | _EXTPROC) + buf[16:])
        if not _U32.unpack_from(fcntl.ioctl(slave, _TCGETS2, _TERMIOS2), 12)[0] & _EXTPROC:
            return False
        fcntl.ioctl(master, _TIOCPKT, _I32.pack(1))
    except OSError:
        return False
    return True


def make_link(link: Path, target: str) -> Path:
    """Create ``link`` -> ``target``, replacing a stale symlink; refuse a link
    that a live twin holds; fail clearly."""
    link = link.expanduser()
    try:
        link.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TransportError(
            f"cannot create the directory {link.parent} for --link: {exc.strerror}; "
            "choose a --link path in a writable directory (e.g. /tmp/tinytwin/dut)"
        ) from None
    if link.is_symlink():
        holder = None if _readlink(link) == target else link_holder(link)
        if holder is not None:
            raise TransportError(
                f"--link {link} belongs to a twin that is still running ({holder}); stop that twin "
                "first, or choose another path"
            )
        link.unlink()
    elif link.exists():
        raise TransportError(
            f"--link {link} exists and is not a symlink; remove it or choose another path "
            "(e.g. /tmp/tinytwin/dut)"
        )
    try:
        link.symlink_to(target)
    except OSError as exc:
        raise TransportError(
            f"cannot create the symlink {link}: {exc.strerror}; choose a --link path in a writable directory"
        ) from None
    return link


#: words in a command line that make a process a twin (``tinytwin dut``,
#: ``python -m emulator.cli rig``, a test or script that imports the emulator)
_TWIN_WORDS = ("tinytwin", "emulator")


def link_holder(link: Path) -> str | None:
    """``process PID (command line)`` of the live twin whose pty ``link``
    points to, or ``None`` when the link is stale: its pty is gone, or its
    number now belongs to a program that is no twin (a terminal opened since).
    A pty in this process counts as a live twin."""
    target = _readlink(link)
    if target is None:
        return None
    name = os.path.basename(target)
    if os.path.dirname(target) != "/dev/pts" or not name.isdigit() or not os.path.exists(target):
        return None
    pid = pty_master_holder(int(name))
    if pid is None:
        return None
    cmd = _cmdline(pid)
    if pid != os.getpid() and not any(w in cmd for w in _TWIN_WORDS):
        return None
    return f"process {pid}" + (f": {cmd}" if cmd else "")


def pty_master_holder(index: int) -> int | None:
    """The id of a process holding the master of ``/dev/pts/<index>`` (Linux:
    ``/proc/PID/fdinfo`` names the pty of each ``/dev/ptmx`` descriptor), or
    ``None``."""
    want = f"tty-index:\t{index}\n"
    try:
        pids = [d for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return None
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") not in ("/dev/ptmx", "/dev/pts/ptmx"):
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii", errors="replace") as fh:
                    if want in fh.read():
                        return int(pid)
            except OSError:
                continue
    return None


def _readlink(link: Path) -> str | None:
    try:
        return os.readlink(link)
    except OSError:
        return None


def _cmdline(pid: int, limit: int = 120) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = " ".join(fh.read().replace(b"\0", b" ").decode(errors="replace").split())
    except OSError:
        return ""
    return cmd if len(cmd) <= limit else cmd[: limit - 3] + "..."
