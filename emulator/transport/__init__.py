"""Host-facing transports: how a host program reaches a simulated serial port.

They are thin: each moves bytes between a file descriptor and the board part
attached to it, nothing else. :class:`HostPort` (``base``) is what they share;
:class:`PtyPort` (``pty``), :class:`TcpListener` and :class:`SocketPort`
(``tcp``) and :class:`UnixListener` (``unix``: reachable through the file
system only) are the kinds; :class:`MemoryPort` (``memory``) has no file
descriptor, for a host in the twin's own process (the ``tinytwin://`` pyserial
URL, which lives in :mod:`emulator.urlhandler`).
"""
from .base import HostPort, TransportError
from .memory import MemoryPort
from .pty import PtyPort, make_link, set_tty_baud, tty_baud
from .tcp import SocketPort, TcpListener
from .unix import UnixListener

__all__ = ["HostPort", "TransportError", "MemoryPort", "PtyPort", "make_link", "set_tty_baud", "tty_baud", "SocketPort",
           "TcpListener", "UnixListener"]
