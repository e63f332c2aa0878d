"""The control channel of a running twin: a local socket that ``tinytwin ctl``
(:class:`ControlClient`) talks to.

By default the channel is a Unix-domain socket (a file, mode 0600): only
programs of the same user on the same machine reach it. A TCP address is
used only when asked for explicitly (``--control-tcp HOST:PORT``); the
launcher warns when that address is not the loopback.

The protocol is one JSON object per line each way::

    {"op": "drop", "args": {"port": "dut", "direction": "to-board", "count": 1}}
    {"ok": true, "result": {"op": "drop", "sim_s": 12.345678, ...}}
    {"ok": false, "error": "no port 'xyz' on this bench: choose one of dut, io, emon"}
"""
from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import Optional

from ..errors import TinytwinError
from ..transport.unix import bind_unix
from .bench import BenchControl, ControlError

#: the environment variable ``tinytwin ctl`` reads the socket path from (set
#: for the program ``tinytwin external`` runs)
CONTROL_ENV = "TINYTWIN_CONTROL"
#: where ``tinytwin rig`` listens by default (its --dir) and ``tinytwin ctl`` looks
DEFAULT_SOCKET = Path("/tmp/tinytwin/ctl")
MAX_REQUEST = 1 << 16


class ControlServer:
    """Serves ``control`` on ``path`` (and ``tcp`` if given) from a thread."""

    def __init__(self, control: BenchControl, path: str | os.PathLike | None, tcp: Optional[tuple[str, int]] = None):
        self.control = control
        self.path = Path(path).expanduser() if path is not None else None
        self.socks: list[socket.socket] = []
        if self.path is not None:
            self.socks.append(bind_unix(self.path, "the control socket"))
        if tcp is not None:
            family = socket.AF_INET6 if ":" in tcp[0] else socket.AF_INET
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(tcp)
            except OSError as exc:
                s.close()
                raise ControlError(f"--control-tcp {tcp[0]}:{tcp[1]}: cannot listen: {exc.strerror}") from None
            s.listen(4)
            self.tcp_address = s.getsockname()[:2]
            self.socks.append(s)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> "ControlServer":
        for s in self.socks:
            s.settimeout(0.2)
            t = threading.Thread(target=self._accept, args=(s,), name="tinytwin-control", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _accept(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="tinytwin-control-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(None)
        buf = b""
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                if len(buf) > MAX_REQUEST:
                    self._reply(conn, {"ok": False, "error": "request too long"})
                    return
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        self._reply(conn, self.handle(line))

    def handle(self, line: bytes) -> dict:
        try:
            req = json.loads(line)
            op = req["op"]
            args = req.get("args") or {}
            if not isinstance(args, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": 'a request is one JSON line: {"op": NAME, "args": {...}}'}
        try:
            return {"ok": True, "result": self.control.call(op, **args)}
        except TinytwinError as exc:
            return {"ok": False, "error": str(exc)}
        except TimeoutError as exc:
            return {"ok": False, "error": f"{exc} (is the twin stopping?)"}
        except Exception as exc:  # answer, whatever went wrong: the client must not hang up unanswered
            return {"ok": False, "error": f"{op}: {type(exc).__name__}: {exc}"}

    @staticmethod
    def _reply(conn: socket.socket, msg: dict) -> None:
        try:
            conn.sendall(json.dumps(msg, default=str).encode() + b"\n")
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=1)
        if self.path is not None:
            try:
                self.path.unlink()
            except OSError:
                pass


class ControlClient:
    """``tinytwin ctl``'s side: one request, one answer, per :meth:`call`."""

    def __init__(self, path: str | os.PathLike | None = None, *, tcp: Optional[tuple[str, int]] = None,
                 timeout: float = 15.0):
        self.tcp = tcp
        self.path = None if tcp else Path(path or os.environ.get(CONTROL_ENV) or DEFAULT_SOCKET).expanduser()
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        if self.tcp:
            try:
                return socket.create_connection(self.tcp, timeout=self.timeout)
            except OSError as exc:
                raise ControlError(f"cannot reach the twin's control channel at {self.tcp[0]}:{self.tcp[1]}: "
                                   f"{exc.strerror or exc}") from None
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(str(self.path))
        except OSError as exc:
            s.close()
            raise ControlError(
                f"cannot reach a running twin at {self.path} ({exc.strerror or exc}): start one (tinytwin rig, "
                f"tinytwin external) or give its socket with --socket / ${CONTROL_ENV}"
            ) from None
        return s

    def call(self, op: str, **args) -> dict:
        with self._connect() as s:
            try:
                s.sendall(json.dumps({"op": op, "args": args}).encode() + b"\n")
            except OSError as exc:
                raise ControlError(f"sending '{op}' to the twin failed: {exc.strerror or exc} (has it stopped?)") from None
            buf = b""
            while b"\n" not in buf:
                try:
                    chunk = s.recv(1 << 16)
                except socket.timeout:
                    raise ControlError(f"the twin did not answer '{op}' within {self.timeout:g} s") from None
                except OSError as exc:
                    raise ControlError(f"the control channel failed while waiting for '{op}': {exc.strerror or exc}") from None
                if not chunk:
                    raise ControlError(f"the twin closed the control channel without answering '{op}'")
                buf += chunk
        try:
            reply = json.loads(buf.split(b"\n", 1)[0])
        except ValueError:
            raise ControlError(f"the answer to '{op}' is not the control channel's JSON: is that socket a twin's?") from None
        if not reply.get("ok"):
            raise ControlError(reply.get("error") or "the operation failed")
        return reply["result"]


__all__ = ["CONTROL_ENV", "ControlClient", "ControlServer", "DEFAULT_SOCKET"]
