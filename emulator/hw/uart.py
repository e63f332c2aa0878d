"""Simulated UARTs.

A :class:`SerialEndpoint` is one side of a serial line as a device sees it: it
has its own configured baud rate, it transmits bytes that take
``bits_per_char`` bit-times each (start + 8 data + stop = 10 by default), and
it receives what the other side sends. Two endpoints are joined with
:func:`connect`.

Timing rules (all in simulated ns):

* a transmission queues behind the endpoint's previous one (a UART shifts one
  character at a time); :meth:`SerialEndpoint.send` returns an event that
  fires when the last character has been shifted out, which is what a blocking
  ``printf`` on the firmware waits for;
* the receiver gets each character when its stop bit ends. Delivery is grouped
  into segments to keep the simulation cheap: a segment ends after any byte in
  the receiver's :attr:`~SerialEndpoint.split_after` set (the DUT's ``%``
  terminator) and at the end of a transmission, and each segment is delivered
  at the arrival time of its last byte. With ``per_byte=True`` (realtime
  pacing) every byte is its own segment.
* if sender and receiver bauds differ by more than the UART's tolerance, the
  receiver gets what its UART would sample: see :func:`resample`.

While bytes are on the wire the twin counts as busy (see :mod:`emulator.sim`),
so in fast mode transfer time costs no wall time.

On the twin's direct path (:attr:`emulator.sim.Twin.direct`),
:meth:`SerialEndpoint.send_now` delivers a transmission at once instead of
scheduling it: the same segments at the same simulated times, the clock moved
to each with :meth:`~emulator.sim.Twin.jump`.
"""
from __future__ import annotations

import math
import re
from typing import Callable

from simpy.events import URGENT

from ..sim import S, Twin

#: relative baud mismatch a UART receiver tolerates (oversampling by 16)
BAUD_TOLERANCE = 0.025


def char_ns(baud: float, bits_per_char: int = 10) -> float:
    return bits_per_char * S / baud


def resample(data: bytes, tx_baud: float, rx_baud: float) -> bytes:
    """What a receiver at ``rx_baud`` decodes from ``data`` sent at ``tx_baud``
    (the bytes of :func:`resample_timed`)."""
    if abs(tx_baud - rx_baud) <= BAUD_TOLERANCE * rx_baud:
        return bytes(data)
    return bytes(b for b, _ in resample_timed(data, tx_baud, rx_baud))


def resample_timed(data: bytes, tx_baud: float, rx_baud: float) -> list[tuple[int, float]]:
    """What a receiver at ``rx_baud`` decodes from ``data`` sent back to back
    at ``tx_baud``: each byte with the time (s after the first start bit) at
    which the receiver has it (its stop-bit sample).

    Both sides use 8N1. The line is idle-high; the receiver waits for a falling
    edge (start bit), samples the 8 data bits and the stop bit at the middle of
    each of *its* bit periods, and hunts for the next start bit right after.
    A missing stop bit (framing error) still yields a byte, as an STM32 USART
    does (the FE flag is set but RDR holds the value).
    """
    if not data:
        return []
    bits: list[int] = []
    for b in data:
        bits.append(0)
        bits.extend((b >> i) & 1 for i in range(8))
        bits.append(1)
    n = len(bits)
    tb_tx = 1.0 / tx_baud
    tb_rx = 1.0 / rx_baud

    def level(t: float) -> int:
        k = int(t / tb_tx)
        return bits[k] if 0 <= k < n else 1

    out: list[tuple[int, float]] = []
    t = 0.0
    end = n * tb_tx
    # step through looking for falling edges with a fine resolution
    step = min(tb_tx, tb_rx) / 16
    prev = 1
    while t < end:
        cur = level(t)
        if prev == 1 and cur == 0:
            # start bit detected at t; sample middle of the start bit first
            if level(t + tb_rx / 2) != 0:
                prev = cur
                t += step
                continue
            value = 0
            for i in range(8):
                if level(t + tb_rx * (1.5 + i)):
                    value |= 1 << i
            t += tb_rx * 9.5  # the stop-bit sample; then hunt again
            out.append((value, t))
            prev = level(t)
            continue
        prev = cur
        t += step
    return out


class SerialEndpoint:
    """One side of a UART line, owned by a device (or a host port)."""

    def __init__(
        self,
        twin: Twin,
        name: str,
        baud: int,
        *,
        bits_per_char: int = 10,
        split_after: bytes = b"",
        receiver: Callable[[bytes], None] | None = None,
    ):
        self.twin = twin
        self.name = name
        self.baud = baud
        self.bits_per_char = bits_per_char
        self.split_after = frozenset(split_after)
        self._split_re = re.compile(b"[" + re.escape(bytes(sorted(self.split_after))) + b"]") if split_after else None
        self.receiver = receiver
        self.peer: SerialEndpoint | None = None
        self.per_byte = not twin.speed.is_fast
        self._tx_free_at = 0  # ns: when the transmitter finishes its queue
        self.tx_bytes = 0
        self.rx_bytes = 0
        #: optional tap for tracing: called with (direction, data, time_ns)
        self.tap: Callable[[str, bytes, int], None] | None = None
        #: optional hook run before each reception (e.g. to pick up a baud
        #: rate the host has changed)
        self.before_rx: Callable[[], None] | None = None
        #: the receiver only hands bytes on (to host ports) and schedules
        #: nothing: a sender on the direct path may deliver several segments
        #: to it and carry on (see :meth:`send_now`)
        self.instant_receiver = False

    @property
    def char_time_ns(self) -> float:
        return char_ns(self.baud, self.bits_per_char)

    def tx_idle_at(self) -> int:
        return max(self._tx_free_at, self.twin.now)

    def send(self, data: bytes):
        """Transmit ``data``; returns a SimPy event fired when the last
        character has left the shift register."""
        twin = self.twin
        env = twin.env
        data = bytes(data)
        if not data:
            return env.timeout(0)
        now = int(env.now)
        start, done_ns, arrival = self.line_times(len(data), now)
        ct = self.bits_per_char * S / self.baud  # char_ns()
        self._tx_free_at = done_ns
        self.tx_bytes += len(data)
        if self.tap:
            self.tap("tx", data, now)
        peer = self.peer
        last = None
        if peer is not None and peer.before_rx is not None:
            peer.before_rx()  # the receiver's baud as of now (a host may have changed it)
        if peer is not None and abs(self.baud - peer.baud) > BAUD_TOLERANCE * peer.baud:
            # a baud mismatch: the receiver decodes the whole transmission
            # as one waveform, byte by byte as its UART gets them
            for at_s, seg in self._garbled_segments(data, peer):
                ev = env.timeout(max(0, int(round(start + at_s * S - now))))
                ev.callbacks.append(_Delivery(peer, seg, None))
        elif peer is not None:
            # Deliveries come before the completion: at the instant the last
            # character arrives, the receiver has it before the sender's next
            # step runs (which may be a long computation that must not hold
            # back the bytes already on the wire in realtime mode).
            segments = self._segments(data, peer)
            last = segments.pop()
            for seg_end, seg in segments:
                ev = env.timeout(max(0, int(round(start + seg_end * ct - now))))
                ev.callbacks.append(_Delivery(peer, seg, self.baud))
            if arrival != done_ns:
                # (rounding tie: the last byte's arrival is 1 ns off the end)
                ev = env.timeout(arrival - now)
                ev.callbacks.append(_Delivery(peer, last[1], self.baud))
                last = None
        finished = env.timeout(max(0, done_ns - now))
        if last is not None:
            # the last segment arrives when the transmission ends: one event
            # (same instant, same place in the queue: nothing is scheduled
            # between them) delivers it, then ends the busy period
            finished.callbacks.append(_Delivery(peer, last[1], self.baud))
        # While bytes are on the wire the twin is busy: until the last
        # character has been shifted out (and received).
        return twin.busy_until(finished)

    def line_times(self, n: int, now: int) -> tuple[int, int, int]:
        """A transmission of ``n`` characters handed over at ``now`` (ns),
        behind what is queued: when its first character starts, when its
        last stop bit ends, and when the receiver has its last character
        (the same instant but for a rounding tie), all in ns. The one place
        of this arithmetic (:meth:`send`, :meth:`send_now`, and the DUT's
        express lane, :mod:`emulator.dut.express`)."""
        free = self._tx_free_at
        start = free if free > now else now
        done = start + n * (self.bits_per_char * S / self.baud)
        return start, int(round(done)), now + int(round(done - now))

    def send_now(self, data: bytes) -> int | None:
        """:meth:`send` on the twin's direct path: the receiver gets the same
        segments at the same simulated times, at once (the clock jumps to
        each); returns when the last character has left the shift register
        (ns), for the caller to jump to. Returns ``None``, having done
        nothing, when the twin is not on the direct path or the transmission
        would reach the receiver in several pieces that may start more work
        (then :meth:`send` schedules it)."""
        twin = self.twin
        peer = self.peer
        if not twin.direct or peer is None:
            return None
        env = twin.env
        now = env._now
        n = len(data)
        if not n:
            return now
        if peer.before_rx is not None:
            peer.before_rx()
        start, done_ns, arrival = self.line_times(n, now)
        baud = self.baud
        rx_baud = peer.baud
        if baud == rx_baud and not (self.per_byte or peer.per_byte):
            split = peer._split_re
            if split is None or (m := split.search(data)) is None or m.end() == n:
                # the usual case, one command or one line: one segment, at the end
                self._tx_free_at = done_ns
                self.tx_bytes += n
                if self.tap:
                    self.tap("tx", bytes(data), now)
                if env._queue:
                    env.jump(arrival)
                else:
                    env._now = arrival
                peer._receive(data, baud, synced=True)  # (its before_rx ran above, at this instant)
                if env._now < done_ns:
                    self._busy_until(done_ns)
                return done_ns
        ct = self.bits_per_char * S / baud
        if baud != rx_baud and abs(baud - rx_baud) > BAUD_TOLERANCE * rx_baud:
            deliveries = [
                (now + max(0, int(round(start + at_s * S - now))), seg, None)
                for at_s, seg in self._garbled_segments(data, peer)
            ]
        else:
            segments = self._segments(data, peer)
            deliveries = [(now + max(0, int(round(start + e * ct - now))), seg, baud) for e, seg in segments[:-1]]
            deliveries.append((arrival, segments[-1][1], baud))
        if len(deliveries) > 1 and not peer.instant_receiver:
            return None
        self._tx_free_at = done_ns
        self.tx_bytes += n
        if self.tap:
            self.tap("tx", bytes(data), now)
        jump = env.jump
        for at, seg, seg_baud in deliveries:
            jump(at)
            peer._receive(seg, seg_baud)
        if env._now < done_ns:
            self._busy_until(done_ns)
        return done_ns

    def _busy_until(self, t: int) -> None:
        """On the direct path, after the receiver has its bytes: the line
        stays busy until the last stop bit at ``t`` (a garbled reception, or a
        rounding tie, ends earlier), as the stepped path's busy period does."""
        env = self.twin.env
        if env._queue:
            self.twin.busy_until(env.timeout(t - env._now))
        else:
            env.jump(t)

    def _segments(self, data: bytes, peer: "SerialEndpoint") -> list[tuple[int, bytes]]:
        n = len(data)
        if self.per_byte or peer.per_byte:
            return [(i + 1, data[i : i + 1]) for i in range(n)]
        splits = peer._split_re
        if splits is None:
            return [(n, data)]
        out = []
        begin = 0
        for m in splits.finditer(data):
            end = m.end()
            out.append((end, data[begin:end]))
            begin = end
        if begin < n:
            out.append((n, data[begin:]))
        return out

    def _garbled_segments(self, data: bytes, peer: "SerialEndpoint") -> list[tuple[float, bytes]]:
        """(arrival s after the transmission's start, bytes) of what ``peer``
        decodes from ``data`` at its own baud, grouped as :meth:`_segments`
        groups bytes (per byte in realtime pacing, else after a split byte
        and at the end)."""
        decoded = resample_timed(data, self.baud, peer.baud)
        out: list[tuple[float, bytes]] = []
        seg = bytearray()
        per_byte = self.per_byte or peer.per_byte
        for i, (b, at) in enumerate(decoded):
            seg.append(b)
            if per_byte or b in peer.split_after or i == len(decoded) - 1:
                out.append((at, bytes(seg)))
                seg.clear()
        return out

    def _receive(self, data: bytes, tx_baud: int | None, synced: bool = False) -> None:
        """Bytes from the peer; ``tx_baud=None``: already as this UART decodes
        them; ``synced``: :attr:`before_rx` has just run."""
        if tx_baud is not None:
            if self.before_rx is not None and not synced:
                self.before_rx()
            if tx_baud != self.baud and abs(tx_baud - self.baud) > BAUD_TOLERANCE * self.baud:
                data = resample(data, tx_baud, self.baud)
        if not data:
            return
        self.rx_bytes += len(data)
        if self.tap:
            self.tap("rx", data, self.twin.now)
        if self.receiver is not None:
            self.receiver(data)


class RxRegister:
    """A UART's one-byte receive register in front of a CPU that reads it only
    while it polls (the reference firmwares' main loops): a byte that comes
    while the CPU does something else stays in the register if that is
    empty, the ones after it overrun and are lost, and the CPU reads the kept
    one first when it polls again.

    A :class:`SerialEndpoint` delivers a segment at its last byte's arrival,
    its bytes having come back to back (start, 8 data bits, stop: the
    sender's characters; :func:`char_ns` at this UART's baud).
    :meth:`receive` sorts them by their own arrival against the last change of
    the CPU's polling, so that a segment gives what its bytes give one at a
    time at the board's pace (a segment that spans two changes is taken at the
    later one)."""

    __slots__ = ("uart", "polling", "changed_at", "held", "held_when_resumed", "lost")

    def __init__(self, uart: "SerialEndpoint"):
        self.uart = uart
        #: bytes lost to overruns
        self.lost = 0
        self.clear(polling=False)

    def clear(self, polling: bool) -> None:
        """Empty, polling or not, from now (power on, a hang)."""
        self.polling = polling
        self.changed_at = self.uart.twin.env._now
        self.held: int | None = None
        self.held_when_resumed = False

    def stop(self) -> None:
        """The CPU stops polling, now (a command, an interrupt)."""
        if self.polling:
            self.polling = False
            self.changed_at = self.uart.twin.env._now

    def resume(self) -> int | None:
        """The CPU polls again, now; returns the byte the register kept, which
        it reads first."""
        held, self.held = self.held, None
        self.polling = True
        self.changed_at = self.uart.twin.env._now
        self.held_when_resumed = held is not None
        return held

    def receive(self, data: bytes) -> bytes:
        """A segment that has just arrived: the bytes the CPU has read of it,
        in order (polling now: all, but for those that came before it
        resumed; not polling: those that came before it stopped). The others
        are kept in the register or lost."""
        n = len(data)
        k = 0  # how many came before the last change
        if n > 1:
            c = char_ns(self.uart.baud)
            first = self.uart.twin.env._now - (n - 1) * c
            if self.changed_at > first:
                k = min(n - 1, math.ceil((self.changed_at - first) / c))
        if self.polling:
            if not k:
                return data
            if self.held_when_resumed:  # the register was full: they all overran
                self.lost += k
                return data[k:]
            self.lost += k - 1  # the first was kept, and read when the CPU resumed
            return data[:1] + data[k:]
        if self.held is None:
            self.held = data[k]
            self.lost += n - k - 1
        else:
            self.lost += n - k
        return data[:k]


class _Delivery:
    """Callback of the event at which a segment reaches the receiver."""

    __slots__ = ("peer", "data", "tx_baud")

    def __init__(self, peer: SerialEndpoint, data: bytes, tx_baud: int | None):
        self.peer = peer
        self.data = data
        self.tx_baud = tx_baud

    def __call__(self, event) -> None:
        try:
            self.peer._receive(self.data, self.tx_baud)
        except BaseException as exc:
            # a receiver's bug: the sender's callbacks on this event (its
            # busy period, a process waiting for the end of its printf) still
            # run; the error surfaces at the next step, as it did from an
            # event of its own
            env = self.peer.twin.env
            fail = env.event()
            fail.callbacks.append(_Raise(exc))
            env.schedule(fail, URGENT)


class _Raise:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException):
        self.exc = exc

    def __call__(self, event) -> None:
        raise self.exc


def connect(a: SerialEndpoint, b: SerialEndpoint) -> None:
    """Wire two endpoints together (TX of each to RX of the other)."""
    a.peer = b
    b.peer = a
