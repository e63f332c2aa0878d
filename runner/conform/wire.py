"""The bytes on the wire, with their times: what ``tinytwin conform`` sends and
receives, kept exchange by exchange for the report and the transcript.

:class:`Wire` wraps any open pyserial port (a board, a twin's pty, a pyserial
URL). It writes bytes and reads answers; every chunk read is stamped with the
host's monotonic clock, so each line of an answer has an arrival time.
Nothing here knows a protocol: when an answer is complete is said by the
caller (:class:`AnswerShape`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

READ_POLL_S = 0.005


@dataclass
class Exchange:
    """One write and the answer read after it (``sent`` may be empty: an
    answer nobody asked for, such as a boot banner)."""

    kind: str  # boot, sync, identify, prepare, setup, send, timing, teardown, probe
    sent: bytes
    t_sent: float
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    #: why the reading stopped: complete, quiet, silence, deadline, no-answer
    ended: str = ""
    note: str = ""
    #: bytes written while the answer was read (e.g. input sent to a busy board), with their time
    injected: list[tuple[float, bytes]] = field(default_factory=list)

    @property
    def received(self) -> bytes:
        return b"".join(c for _, c in self.chunks)

    def lines(self) -> list[tuple[float, bytes]]:
        """The complete lines received (each with its line end) and an
        unterminated tail, with the time (s after the write) the line's last
        byte arrived."""
        out: list[tuple[float, bytes]] = []
        cur = bytearray()
        for t, chunk in self.chunks:
            start = 0
            while True:
                nl = chunk.find(b"\n", start)
                if nl < 0:
                    cur += chunk[start:]
                    break
                cur += chunk[start : nl + 1]
                out.append((t - self.t_sent, bytes(cur)))
                cur.clear()
                start = nl + 1
        if cur:
            t = self.chunks[-1][0] if self.chunks else self.t_sent
            out.append((t - self.t_sent, bytes(cur)))
        return out

    def text_lines(self) -> list[str]:
        """The lines as text, without their line ends (Latin-1)."""
        return [line.rstrip(b"\n").rstrip(b"\r").decode("latin-1") for _, line in self.lines()]

    def duration(self) -> float:
        return (self.chunks[-1][0] - self.t_sent) if self.chunks else 0.0


@dataclass
class AnswerShape:
    """When an answer is complete.

    * ``ready``: how many answer-ending lines (``m-ready``, a relayed
      ``[dut]: m-ready``) the answer has; ``lines``: how many lines it has in
      all (``None``: unknown). Once both are there and the line has been
      quiet for ``quiet`` s, the answer is complete.
    * A board that leaves out the ending line: once the other lines are
      there, ``ready_grace`` s of quiet end the answer.
    * ``silence``: the longest quiet time between two lines; ``gap(line)``
      may allow longer after a given line (an inference run).
    * ``no_answer``: an answer that is expected to be empty is awaited this
      long.
    * ``deadline``: the longest the whole answer may take.
    """

    ready: int = 1
    lines: int | None = None
    quiet: float = 0.1
    ready_grace: float = 0.3
    silence: float = 5.0
    no_answer: float = 0.5
    deadline: float = 120.0
    ready_lines: frozenset[bytes] = frozenset({b"m-ready"})
    gap: Callable[[bytes], float | None] | None = None


class Wire:
    """An open pyserial port, read and written with timestamps."""

    def __init__(self, ser, log: list[Exchange] | None = None):
        self.ser = ser
        self.log: list[Exchange] = log if log is not None else []
        self._pending = bytearray()  # received and not yet given to an exchange

    def close(self) -> None:
        try:
            self.ser.close()
        except Exception:
            pass

    # -- raw I/O -----------------------------------------------------------------
    def write(self, data: bytes) -> float:
        """Write ``data`` (all of it); returns the time the write returned."""
        if data:
            self.ser.write(data)
            try:
                self.ser.flush()
            except Exception:
                pass
        return time.monotonic()

    def _read_some(self, wait: float) -> bytes:
        self.ser.timeout = max(0.0, min(wait, READ_POLL_S)) if wait > 0 else 0
        try:
            n = self.ser.in_waiting
        except Exception:
            n = 0
        return self.ser.read(n if n > 0 else 1)

    def discard_input(self) -> bytes:
        """Whatever has arrived and was not read (returned, and forgotten)."""
        out = bytearray(self._pending)
        self._pending.clear()
        while True:
            data = self._read_some(0)
            if not data:
                return bytes(out)
            out += data

    # -- exchanges ------------------------------------------------------------------
    def exchange(
        self,
        kind: str,
        data: bytes,
        shape: AnswerShape,
        *,
        note: str = "",
        on_line: Callable[[bytes, "Exchange"], bytes | None] | None = None,
    ) -> Exchange:
        """Write ``data`` and read its answer as ``shape`` says. ``on_line``
        is called with each complete line; bytes it returns are written at
        once (input sent while the board is busy)."""
        ex = Exchange(kind, data, 0.0, note=note)
        ex.t_sent = self.write(data)
        self._read_answer(ex, shape, on_line)
        self.log.append(ex)
        return ex

    def listen(self, kind: str, shape: AnswerShape, first_byte_wait: float, note: str = "") -> Exchange:
        """Read what the board says unasked (a boot banner): wait up to
        ``first_byte_wait`` s for a first byte, then read as ``shape`` says."""
        ex = Exchange(kind, b"", time.monotonic(), note=note)
        end = ex.t_sent + first_byte_wait
        while not self._pending:
            left = end - time.monotonic()
            if left <= 0:
                ex.ended = "no-answer"
                self.log.append(ex)
                return ex
            data = self._read_some(left)
            if data:
                self._pending += data
        self._read_answer(ex, shape, None)
        self.log.append(ex)
        return ex

    def _read_answer(self, ex: Exchange, shape: AnswerShape, on_line) -> None:
        start = ex.t_sent
        last_rx = start
        hard_end = start + shape.deadline
        lines_done = 0
        ready_seen = 0
        partial = bytearray()
        allowed = shape.silence
        waiting_long = False  # the last line announced a long silence (an inference run)
        expected_empty = shape.ready == 0 and shape.lines == 0
        others_needed = None if shape.lines is None else shape.lines - shape.ready
        while True:
            if self._pending:
                data = bytes(self._pending)
                self._pending.clear()
            else:
                data = self._read_some(READ_POLL_S)
            now = time.monotonic()
            if data:
                ex.chunks.append((now, data))
                last_rx = now
                partial += data
                while True:
                    nl = partial.find(b"\n")
                    if nl < 0:
                        break
                    line = bytes(partial[: nl + 1])
                    del partial[: nl + 1]
                    lines_done += 1
                    bare = line.rstrip(b"\n").rstrip(b"\r")
                    if bare in shape.ready_lines:
                        ready_seen += 1
                    allowed, waiting_long = shape.silence, False
                    if shape.gap is not None:
                        g = shape.gap(bare)
                        if g is not None:
                            allowed, waiting_long = max(allowed, g), True
                    if on_line is not None:
                        extra = on_line(bare, ex)
                        if extra:
                            ex.injected.append((self.write(extra), extra))
            quiet = now - last_rx
            if expected_empty:
                if not ex.chunks and now - start >= shape.no_answer:
                    ex.ended = "no-answer"
                    return
                if ex.chunks and quiet >= max(shape.quiet, shape.no_answer):
                    ex.ended = "quiet"
                    return
            elif not partial:
                enough_lines = shape.lines is None or lines_done >= shape.lines
                if shape.ready and ready_seen >= shape.ready and enough_lines and quiet >= shape.quiet:
                    ex.ended = "complete"
                    return
                if not shape.ready and lines_done and enough_lines and quiet >= shape.quiet:
                    ex.ended = "complete"
                    return
                # a board that leaves out the ending line: the other lines are
                # there, and nothing more comes
                if (
                    shape.ready
                    and lines_done
                    and not waiting_long
                    and (others_needed is None or lines_done - ready_seen >= others_needed)
                    and quiet >= shape.ready_grace
                ):
                    ex.ended = "quiet"
                    return
            if not ex.chunks and now - start >= max(allowed, shape.no_answer) and not expected_empty:
                ex.ended = "silence" if shape.ready or shape.lines else "no-answer"
                return
            if ex.chunks and quiet >= allowed:
                ex.ended = "silence"
                return
            if now >= hard_end:
                ex.ended = "deadline"
                return
