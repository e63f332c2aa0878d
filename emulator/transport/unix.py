"""A Unix-domain socket as a twin's port (:class:`UnixListener`): reachable
only through the file system, never from another machine. Each connection
becomes a :class:`~emulator.transport.tcp.SocketPort` handed to ``attach``
(the board part that serves it), as :class:`TcpListener` does for TCP."""
from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Callable

from .base import HostPort, TransportError
from .tcp import SocketListener


def bind_unix(path: str | os.PathLike, what: str) -> socket.socket:
    """A listening Unix socket at ``path`` (a stale socket file is replaced;
    anything else there is an error naming the fix)."""
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TransportError(f"cannot create the directory {path.parent} for {what}: {exc.strerror}") from None
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise TransportError(f"{what}: {path} exists and is not a socket; remove it or choose another path")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # nobody listens: a stale socket of a twin that is gone
        else:
            raise TransportError(f"{what}: {path} is in use by a running twin; stop it or choose another path")
        finally:
            probe.close()
    # bound and listening under a temporary name, then moved into place: a
    # client that sees the path can connect at once
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        sock.bind(str(tmp))
        os.chmod(tmp, 0o600)  # the user's own programs only
        sock.listen(4)
        os.replace(tmp, path)
    except OSError as exc:
        sock.close()
        try:
            tmp.unlink()
        except OSError:
            pass
        why = exc.strerror or str(exc)
        if "too long" in why:  # AF_UNIX's sun_path: 108 bytes on Linux, 104 on macOS
            why += (f" (a Unix socket's path holds at most 103-107 bytes; binding it takes "
                    f"{len(os.fsencode(str(tmp)))}: choose a shorter folder for it: TMPDIR for tinytwin external, "
                    "--dir for tinytwin rig, or a shorter --control path)")
        raise TransportError(f"{what}: cannot listen on {path}: {why}") from None
    return sock


class UnixListener(SocketListener):
    """A listening Unix socket; accepted connections are attached with
    ``attach(port)`` (which adds them to the twin). Closing it removes the
    socket file."""

    def __init__(self, name: str, path: str | os.PathLike, attach: Callable[[HostPort], object]):
        self.path = Path(path).expanduser()
        super().__init__(name, bind_unix(self.path, name), attach)

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        try:
            self.path.unlink()
        except OSError:
            pass


__all__ = ["UnixListener", "bind_unix"]
