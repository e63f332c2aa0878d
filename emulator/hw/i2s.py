"""The I2S wires between the interface board (SAI master transmitter) and the
DUT (SAI slave receiver with DMA), on the twin's clock.

:class:`I2sLink` is the wire: while the master plays a stream of ``pairs``
stereo slot pairs at ``rate_hz``, pair ``k`` has been fully shifted in at
``t0 + (k+1)/rate``. Each ``start`` begins a new session; ``stop`` ends the
clock (no bit clock, no frame sync: a slave receives nothing more).

:class:`SaiReceiver` is the DUT's SAI block with its DMA in normal mode, as
the STM32 HAL drives it (``HAL_SAI_Receive_DMA`` / ``HAL_SAI_DMAStop``):

* :meth:`SaiReceiver.arm` starts a transfer of ``n`` pairs; it completes when
  its last pair has arrived, and ``on_complete`` gets the bytes (2 slots of
  int16 per pair, little-endian) at that simulated instant;
* between a completed transfer and the next ``arm`` the SAI stays enabled and
  its FIFO (8 words = 4 pairs) keeps the oldest pairs; later ones are lost
  (overrun). So a DUT that re-arms late (a frame processed in over 32 ms)
  gets 4 stale pairs and then a jump: the device, not the file, decides where
  its frames start;
* a SAI enabled while the master already plays synchronises on the next frame;
* a transfer still open when the master stops stays open and goes on with the
  next stream's first pairs (the DMA knows nothing of files);
* :meth:`SaiReceiver.disable` (``HAL_SAI_DMAStop``) aborts the transfer and
  flushes the FIFO.
"""
from __future__ import annotations

import math
from typing import Callable, Protocol

from ..sim import Twin

PAIR_BYTES = 4  # two 16-bit slots


class PairStream(Protocol):
    pairs: int

    def read(self, n0: int, count: int) -> bytes: ...


class I2sLink:
    """The SCK/FS/SD wires from one master to one slave."""

    def __init__(self, twin: Twin, name: str = "i2s"):
        self.twin = twin
        self.name = name
        self.session = 0
        self.stream: PairStream | None = None
        self.rate_hz = 0.0
        self.t0 = 0
        self.t_stop: float = math.inf
        self.running = False
        self.listeners: list[Callable[[str], None]] = []
        self.sessions_played = 0

    # -- master side ---------------------------------------------------------------------
    def start(self, stream: PairStream, rate_hz: float) -> None:
        """The master starts clocking out ``stream`` now."""
        if rate_hz <= 0:
            raise ValueError("the I2S rate must be > 0")
        self.session += 1
        self.stream = stream
        self.rate_hz = float(rate_hz)
        self.t0 = self.twin.now
        self.t_stop = math.inf
        self.running = True
        self.sessions_played += 1
        for fn in list(self.listeners):
            fn("start")

    def stop(self) -> None:
        """The master stops its clock now."""
        if not self.running:
            return
        self.running = False
        self.t_stop = self.twin.now
        for fn in list(self.listeners):
            fn("stop")

    # -- timing ---------------------------------------------------------------------------------
    def pair_end(self, k: int) -> int:
        """When pair ``k`` of the current session has been received (ns)."""
        return self.t0 + int(round((k + 1) * 1e9 / self.rate_hz))

    def pair_start(self, k: int) -> int:
        return self.t0 + int(round(k * 1e9 / self.rate_hz))

    def total(self) -> int:
        """Pairs of the current session the master clocks out (all of them unless stopped early)."""
        if self.stream is None:
            return 0
        n = self.stream.pairs
        if not self.running and math.isfinite(self.t_stop):
            n = min(n, max(0, int(math.floor((self.t_stop - self.t0) * self.rate_hz / 1e9 + 1e-9))))
        return n

    def received_by(self, t: float) -> int:
        """How many pairs of the session have fully arrived by ``t``."""
        if self.stream is None or t < self.t0:
            return 0
        return min(self.total(), int(math.floor((t - self.t0) * self.rate_hz / 1e9 + 1e-9)))

    def first_starting_at(self, t: float) -> int:
        """The first pair whose frame begins at or after ``t``."""
        if t <= self.t0:
            return 0
        return int(math.ceil((t - self.t0) * self.rate_hz / 1e9 - 1e-9))

    @property
    def clocking(self) -> bool:
        """The bit clock runs now (the master is playing)."""
        return self.running and self.received_by(self.twin.now) < self.total()


class SaiReceiver:
    """The DUT's SAI slave receiver with its DMA (see the module docstring)."""

    FIFO_PAIRS = 4

    def __init__(self, twin: Twin, link: I2sLink, on_complete: Callable[[bytes], None]):
        self.twin = twin
        self.link = link
        self.on_complete = on_complete
        self.enabled = False  # SAIEN
        self.armed = False  # a DMA transfer is open
        self.session = 0  # link session the cursor refers to
        self.cursor = 0  # the next pair the FIFO would take
        self.need = 0  # pairs still missing in the open transfer
        self.got: list[bytes] = []
        self._gen = 0
        self.transfers = 0
        self.lost_pairs = 0  # pairs lost to FIFO overruns
        link.listeners.append(self._on_link)

    # -- the HAL calls ------------------------------------------------------------------------
    def arm(self, pairs: int) -> None:
        """``HAL_SAI_Receive_DMA`` of ``pairs`` pairs (ignored if one is open: HAL_BUSY)."""
        if self.armed:
            return
        link = self.link
        now = self.twin.now
        if not self.enabled:
            # the SAI starts listening now: it synchronises on the next frame
            self.enabled = True
            self.session = link.session
            self.cursor = link.first_starting_at(now) if link.running else 0
            fifo: list[tuple[int, int]] = []
        else:
            fifo = self._drain_fifo(now)
        self.armed = True
        self.need = pairs
        self.got = []
        for n0, n in fifo:
            self._take(n0, n)
        self._schedule()

    def disable(self) -> None:
        """``HAL_SAI_DMAStop``: transfer aborted, FIFO flushed, SAI disabled."""
        self.armed = False
        self.enabled = False
        self.got = []
        self.need = 0
        self._gen += 1

    # -- internals ----------------------------------------------------------------------------
    def _drain_fifo(self, now: int) -> list[tuple[int, int]]:
        """On re-arming an enabled SAI: the pairs its FIFO kept since the last
        transfer (the first 4 that arrived), and where the DMA goes on."""
        link = self.link
        if self.session != link.session:
            return []
        arrived = link.received_by(now)
        if arrived <= self.cursor:
            return []
        kept = min(self.FIFO_PAIRS, arrived - self.cursor)
        out = [(self.cursor, kept)]
        lost = arrived - self.cursor - kept
        if lost:
            self.lost_pairs += lost
        self.cursor = arrived  # pairs still to come are taken by the DMA directly
        return out

    def _take(self, n0: int, n: int) -> None:
        if n <= 0:
            return
        self.got.append(self.link.stream.read(n0, n))
        self.need -= n

    def completion_at(self) -> int | None:
        """When the open transfer completes (its DMA interrupt), in ns, if the
        stream being played holds its pairs; ``None`` otherwise (nothing open,
        no stream, or too few pairs: what arrives is collected when it stops)."""
        link = self.link
        if not self.armed or self.need <= 0 or link.stream is None or self.session != link.session:
            return None
        last = self.cursor + self.need - 1
        if last < link.total() and link.running:
            return link.pair_end(last)
        return None

    def _schedule(self) -> None:
        """Plan the completion of the open transfer from the link's state."""
        self._gen += 1
        if not self.armed or self.need <= 0:
            if self.armed:
                self._complete(self._gen)
            return
        at = self.completion_at()
        if at is not None:
            gen = self._gen
            self.twin.schedule(max(0, at - self.twin.now), lambda: self._complete(gen))

    def _complete(self, gen: int) -> None:
        if gen != self._gen or not self.armed:
            return
        n = self.need
        if n > 0:
            self._take(self.cursor, n)
            self.cursor += n
        data = b"".join(self.got)
        self.armed = False
        self.got = []
        self.need = 0
        self.transfers += 1
        self.on_complete(data)

    def _on_link(self, what: str) -> None:
        link = self.link
        if what == "start":
            if self.enabled:
                # a new stream: the FIFO / the open transfer go on with its first pairs
                self.session = link.session
                self.cursor = 0
                if self.armed:
                    self._schedule()
        elif what == "stop":
            if self.enabled and self.armed and self.session == link.session:
                # collect what arrived; the transfer stays open for the next stream
                have = link.total() - self.cursor
                if 0 < have < self.need:
                    self._take(self.cursor, have)
                    self.cursor += have
                    self._gen += 1
