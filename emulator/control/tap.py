"""What sits on a host port's wire: :class:`PortTap`, the one hook
(:class:`emulator.transport.base.PortHook`) of every port a bench offers.

A tap sees every chunk of bytes that crosses its port, in the simulation
thread at the simulated time it crosses, in both directions:

* ``to-board``: what the host sent, on its way to the board;
* ``to-host``: what the board sends, on its way to the host.

It carries out, per direction, the faults a real USB link and a real bench
have (armed on a running twin by :mod:`emulator.control` or a fault plan):
drop or garble the next N bytes, drop or garble the next line, delay every
byte by a USB latency; and, for ``tinytwin external``, the ``--drop-line
TEXT:N`` rules (the N-th line TEXT to the host is lost) and the ``--trace``
wire log. It counts the host's commands and the board's lines, so that a
fault plan can fire "after the 100th command" (a fault armed that way applies
from the next line or command on, also within the same chunk of bytes).

A garbled byte has one bit flipped (as a bit error on the wire does), chosen
by a generator seeded per port, so a run can be repeated.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..errors import ConfigError

TO_HOST = "to-host"
TO_BOARD = "to-board"
DIRECTIONS = (TO_HOST, TO_BOARD)
#: one-shot faults a tap can arm, per direction
KINDS = ("drop", "garble", "drop-line", "garble-line")
#: a partial line longer than this is not held for line faults (binary data)
MAX_LINE = 4096


def direction(text: str) -> str:
    """``to-host``/``to-board`` (also ``host``/``board``, ``in``/``out`` as
    seen from the host: ``out`` = to the board)."""
    t = str(text).strip().lower()
    aliases = {"to-host": TO_HOST, "host": TO_HOST, "in": TO_HOST, "up": TO_HOST,
               "to-board": TO_BOARD, "board": TO_BOARD, "out": TO_BOARD, "down": TO_BOARD}
    if t not in aliases:
        raise ConfigError(f"direction must be to-host or to-board, got {text!r}")
    return aliases[t]


@dataclass
class LineDrop:
    """Drop the ``occurrence``-th line (1-based) equal to ``text`` on its way
    from a board to the host, as a line lost on the link would be. Lines are
    counted from the host's first byte on the port on, so that the boot
    banner, which no host sees, does not count."""

    text: str
    occurrence: int
    seen: int = 0
    dropped: int = 0

    @classmethod
    def parse(cls, spec: str) -> "LineDrop":
        text, sep, n = spec.rpartition(":")
        if not sep or not text or not n.isdigit() or int(n) < 1:
            raise ConfigError(f"--drop-line expects TEXT:N with N >= 1 (e.g. m-ready:5), got {spec!r}")
        return cls(text, int(n))


class Trace:
    """A wire log of every host port: one line per chunk of bytes, with the
    simulated time (s), the wall time since the start (s), the port, the
    direction (``>`` host to board, ``<`` board to host, ``!`` a fault) and
    the bytes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fh = open(self.path, "w", encoding="utf-8", buffering=1 << 16)
        self.wall0 = time.monotonic()
        self.fh.write("# sim_s wall_s port dir bytes (tinytwin external --trace)\n")

    def write(self, twin, port: str, direction: str, data) -> None:
        if self.fh.closed:
            return
        now = twin.now / 1e9 if twin is not None else 0.0
        self.fh.write(f"{now:14.6f} {time.monotonic() - self.wall0:10.3f} {port:<9} {direction} {data!r}\n")

    def close(self) -> None:
        self.fh.close()


@dataclass
class _Wire:
    """One direction of a tap: armed faults and the line being assembled."""

    drop: int = 0  # bytes still to lose
    garble: int = 0  # bytes still to garble
    drop_line: int = 0  # lines still to lose
    garble_line: int = 0  # lines still to garble
    delay_ns: int = 0
    due: int = 0  # ns: when the last delayed chunk is handed on (keeps order)
    in_flight: int = 0  # delayed chunks not handed on yet
    held: bytearray = field(default_factory=bytearray)  # a partial line kept for line faults
    counting: bytearray = field(default_factory=bytearray)  # the partial line, for counting
    lines: int = 0
    lost_bytes: int = 0
    garbled_bytes: int = 0
    lost_lines: int = 0
    garbled_lines: int = 0

    def armed(self) -> dict:
        return {k: v for k, v in (("drop", self.drop), ("garble", self.garble), ("drop-line", self.drop_line),
                                  ("garble-line", self.garble_line), ("delay_ms", self.delay_ns / 1e6)) if v}


class PortTap:
    """The hook on one host port (see the module docstring).

    ``terminator``: what ends one of the host's commands on this port
    (``%`` for a DUT or an IO manager, ``\\n`` for an LPM01A). It survives a
    replug: the bench puts the same tap on the new port.
    """

    def __init__(self, name: str, terminator: bytes = b"\n", *, trace: Optional[Trace] = None,
                 drops: list[LineDrop] | tuple = (), seed: int = 0):
        self.name = name
        self.terminator = terminator[-1:] or b"\n"
        self.trace = trace
        self.drops = list(drops)
        self.rng = random.Random(f"{seed}:{name}")
        self.wires = {TO_HOST: _Wire(), TO_BOARD: _Wire()}
        self.host_spoke = False
        self.commands = 0  # the host's commands (terminators) seen
        #: called with the command count after each of the host's commands
        self.on_command: list[Callable[[int], None]] = []
        #: called with each line the board sends (text without its line end)
        self.on_line: list[Callable[[str], None]] = []
        self._fired: list[Callable[[], None]] = []

    # -- arming (in the simulation thread) ---------------------------------------------
    def arm(self, dir_: str, kind: str, count: int = 1) -> None:
        """Arm a one-shot fault: the next ``count`` bytes (``drop``,
        ``garble``) or lines (``drop-line``, ``garble-line``) in ``dir_``."""
        w = self.wires[direction(dir_)]
        if kind not in KINDS:
            raise ConfigError(f"unknown fault {kind!r}: choose one of {', '.join(KINDS)}")
        if int(count) < 1:
            raise ConfigError(f"{kind}: the count must be >= 1, got {count}")
        attr = kind.replace("-", "_")
        setattr(w, attr, getattr(w, attr) + int(count))

    def set_delay(self, dir_: str, ms: float) -> None:
        """Every chunk in ``dir_`` arrives ``ms`` later (0: no delay), in order."""
        if not ms >= 0:
            raise ConfigError(f"delay: milliseconds must be >= 0, got {ms}")
        self.wires[direction(dir_)].delay_ns = int(round(ms * 1e6))

    def clear(self) -> None:
        """Disarm every fault (delays included)."""
        for w in self.wires.values():
            w.drop = w.garble = w.drop_line = w.garble_line = w.delay_ns = 0

    def passive(self) -> bool:
        """Nothing armed, held or waiting: bytes cross unchanged and at once,
        and crossing them sets nothing off (see
        :meth:`emulator.transport.base.PortHook.passive`)."""
        if self.on_command or self.on_line:
            return False
        for w in self.wires.values():
            if w.drop or w.garble or w.drop_line or w.garble_line or w.delay_ns or w.held or w.in_flight:
                return False
        return all(d.seen >= d.occurrence for d in self.drops)

    def state(self) -> dict:
        out = {"host_commands": self.commands}
        for d, w in self.wires.items():
            out[d] = {"lines": w.lines, "armed": w.armed(), "lost_bytes": w.lost_bytes, "garbled_bytes": w.garbled_bytes,
                      "lost_lines": w.lost_lines, "garbled_lines": w.garbled_lines}
        if self.drops:
            out["drop_line_rules"] = [f"{d.text}:{d.occurrence} ({d.seen} seen, {d.dropped} dropped)" for d in self.drops]
        return out

    # -- the hook ------------------------------------------------------------------------
    def from_host(self, port, data: bytes) -> bytes:
        self.host_spoke = True
        return self._pass(port, TO_BOARD, self._through(port, TO_BOARD, data))

    def to_host(self, port, data: bytes) -> bytes:
        return self._pass(port, TO_HOST, self._through(port, TO_HOST, data))

    def _pass(self, port, dir_: str, data: bytes) -> bytes:
        """Bytes that go on now (traced as they cross), or later (delayed, or
        queued behind delayed bytes still on their way: a delay set back to 0
        keeps the order)."""
        w = self.wires[dir_]
        if data and (w.delay_ns or w.in_flight):
            return self._delay(port, dir_, data)
        if data and self.trace is not None:
            self.trace.write(port.twin, self.name, "<" if dir_ == TO_HOST else ">", data)
        return data

    # -- the work --------------------------------------------------------------------------
    def _through(self, port, dir_: str, data: bytes) -> bytes:
        """Count and apply the faults; with triggers waiting, line by line (a
        fault a line triggers applies from the next line, in the same chunk)."""
        if not (self.on_line if dir_ == TO_HOST else self.on_command):
            return self._through_piece(port, dir_, data)
        end = b"\n" if dir_ == TO_HOST else self.terminator
        pieces = data.split(end)
        out = [self._through_piece(port, dir_, piece + end) for piece in pieces[:-1]]
        if pieces[-1]:
            out.append(self._through_piece(port, dir_, pieces[-1]))
        return b"".join(out)

    def _through_piece(self, port, dir_: str, data: bytes) -> bytes:
        w = self.wires[dir_]
        self._count(dir_, w, data)
        if w.drop:
            k = min(w.drop, len(data))
            w.drop -= k
            w.lost_bytes += k
            self._note(port, dir_, f"dropped {data[:k]!r}")
            data = data[k:]
        if w.garble and data:
            k = min(w.garble, len(data))
            w.garble -= k
            bad = bytes(b ^ (1 << self.rng.randrange(8)) for b in data[:k])
            w.garbled_bytes += k
            self._note(port, dir_, f"garbled {data[:k]!r} into {bad!r}")
            data = bad + data[k:]
        if self._line_rules(dir_, w) or w.held:
            data = self._lines(port, dir_, w, data)
        fired, self._fired = self._fired, []
        for fn in fired:
            fn()
        return data

    def _line_rules(self, dir_: str, w: _Wire) -> bool:
        if w.drop_line or w.garble_line:
            return True
        return dir_ == TO_HOST and self.host_spoke and any(d.seen < d.occurrence for d in self.drops)

    def _count(self, dir_: str, w: _Wire, data: bytes) -> None:
        """Count the host's commands and the board's lines (before any fault:
        what the sender sent); queue the callbacks they trigger."""
        if dir_ == TO_BOARD:
            n = data.count(self.terminator)
            for _ in range(n):
                self.commands += 1
                count = self.commands
                for fn in list(self.on_command):
                    self._fired.append(lambda fn=fn, count=count: fn(count))
            return
        if b"\n" not in data:
            if len(w.counting) < MAX_LINE:
                w.counting += data
            return
        *complete, rest = (bytes(w.counting) + data).split(b"\n")
        w.counting = bytearray(rest[:MAX_LINE])
        for raw in complete:
            w.lines += 1
            text = raw.rstrip(b"\r").replace(b"\0", b"").decode("latin-1")
            for fn in list(self.on_line):
                self._fired.append(lambda fn=fn, text=text: fn(text))

    def _lines(self, port, dir_: str, w: _Wire, data: bytes) -> bytes:
        """Apply the line faults: whole lines pass or are lost; a partial line
        is held until its end while a line fault is armed."""
        end = 0x0A if dir_ == TO_HOST else self.terminator[0]
        out = bytearray()
        buf = w.held + data
        w.held = bytearray()
        start = 0
        while True:
            i = buf.find(end, start)
            if i < 0:
                break
            line = bytes(buf[start:i + 1])
            start = i + 1
            out += self._line(port, dir_, w, line)
        rest = buf[start:]
        if rest and self._line_rules(dir_, w) and len(rest) <= MAX_LINE:
            w.held = bytearray(rest)
        else:
            out += rest
        return bytes(out)

    def _line(self, port, dir_: str, w: _Wire, line: bytes) -> bytes:
        if w.drop_line:
            w.drop_line -= 1
            w.lost_lines += 1
            self._note(port, dir_, f"dropped line {line!r}")
            return b""
        if w.garble_line:
            w.garble_line -= 1
            w.garbled_lines += 1
            body = line.rstrip(b"\r\n%") or line
            i = self.rng.randrange(len(body))
            bad = line[:i] + bytes([line[i] ^ (1 << self.rng.randrange(8))]) + line[i + 1:]
            self._note(port, dir_, f"garbled line {line!r} into {bad!r}")
            return bad
        if dir_ == TO_HOST and self.host_spoke and self.drops:
            text = line.rstrip(b"\r\n").decode("latin-1")
            lost = False
            for d in self.drops:
                if text == d.text:
                    d.seen += 1
                    if d.seen == d.occurrence:
                        d.dropped += 1
                        lost = True
            if lost:
                self._note(port, dir_, f"--drop-line: dropped {line!r}")
                return b""
        return line

    def _delay(self, port, dir_: str, data: bytes) -> bytes:
        w = self.wires[dir_]
        twin = port.twin
        if twin is None:
            return data
        due = max(twin.now + w.delay_ns, w.due)
        w.due = due
        w.in_flight += 1
        hand_on = port.emit if dir_ == TO_HOST else port.deliver

        def cross() -> None:
            w.in_flight -= 1
            if getattr(port, "closed", False):
                return  # unplugged meanwhile: the bytes on the cable are lost with it
            if self.trace is not None:
                self.trace.write(twin, self.name, "<" if dir_ == TO_HOST else ">", data)
            hand_on(data)

        twin.schedule(due - twin.now, cross)
        return b""

    def _note(self, port, dir_: str, what: str) -> None:
        if self.trace is not None:
            self.trace.write(port.twin, self.name, "!", f"{dir_}: {what}")


__all__ = ["DIRECTIONS", "KINDS", "LineDrop", "PortTap", "TO_BOARD", "TO_HOST", "Trace", "direction"]
