"""The Joulescope JS220 on the twin's clock (:class:`Js220`).

The JS220 is an ammeter and voltmeter in series with the DUT's supply: it
does not power anything (the mlcommons runner's ``power_on``/``power_off``
are no-ops for it), it samples current and voltage at 2 Msps (the host asks
for 1 Msps), and its general-purpose input GPI0, wired to the DUT's
timestamp GPIO, is sampled with them. The runner reads GPI0 as the
``current_lsb`` field and counts its *rising* edges (the LPM01A reports the
falling ones, ``eventsrc d7 fal``).

What it measures comes from the same power model and the same DUT state
line as the LPM01A's (:mod:`emulator.power.model`): the device records the
DUT's supply current and voltage as piecewise-constant levels whenever the
DUT's state changes, and sends them, with the GPI edges, as breakpoints every
``flush_ms`` of simulated time while streaming (:mod:`.core`). The host side
turns them into 1 Msps samples, each the exact average over its period, so
the sum of current x voltage over the samples between two edges is the
energy the DUT drew there, as an LPM01A's samples are.

Faults a real one has, on demand: :meth:`lose` drops the next stretch of the
stream (USB frames lost: the host's stream buffer fills the gap with NaN);
unplugging (:meth:`power_off`) ends the host's session.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

from ...power.model import PowerModel
from ...sim import MS, S, Twin
from ...transport.base import HostPort
from .core import GPI_VALUE, SAMPLE_ID_RATE, Closed, Js220Core, Opened, QueryGpi, Reply, SetStreaming, encode

#: ns of simulated time per sample id (2 Msps)
NS_PER_ID = S / SAMPLE_ID_RATE


class Js220:
    """The JS220 in the twin: host sessions over :meth:`attach`-ed ports,
    current/voltage from the DUT's power, GPI0 on the DUT's timestamp pin.

    ``supply_v``: the voltage of the supply the JS220 sits in series with, a
    number or a callable (a JS220 behind an LPM01A measures the LPM01A's
    output: 0 while it is off).
    """

    def __init__(
        self,
        twin: Twin,
        dut=None,
        *,
        power_model: PowerModel | None = None,
        supply_v: float | Callable[[], float] = 1.8,
        name: str = "js220",
        flush_ms: float = 10.0,
        serial_number: str = "TWIN0001",
        reply_latency_us: float = 250.0,
    ):
        self.twin = twin
        self.name = name
        self.core = Js220Core(serial_number)
        self.serial_number = serial_number
        self.power_model = power_model or PowerModel.default()
        self._supply = supply_v if callable(supply_v) else (lambda v=float(supply_v): v)
        self.flush_ns = max(1, int(round(flush_ms * MS)))
        self.reply_latency_ns = int(round(reply_latency_us * 1000))
        self.ports: list[HostPort] = []
        self.session: HostPort | None = None
        self.dut = None
        self.powered = True
        self.t0 = twin.now  # sample id 0: the instrument's power-up
        self.streaming = False
        self._k = 0  # the next sample id to send
        self._gen = 0
        self._lose_ids = 0
        self.lost_ids = 0
        self.sent_ids = 0
        self._hist: list[tuple[int, float, float]] = [(twin.now, 0.0, 0.0)]  # (t ns, A, V)
        self._gpi: list[tuple[int, int]] = [(twin.now, 0)]  # (t ns, GPI bits)
        if dut is not None:
            self.connect_dut(dut)

    # -- wiring --------------------------------------------------------------------------
    def attach(self, port: HostPort) -> HostPort:
        """A host connection (the driver's link, see :mod:`.core`)."""
        port.on_host_bytes = functools.partial(self._host_input, port)
        self.ports.append(port)
        self.twin.add_port(port)
        return port

    def connect_dut(self, dut) -> None:
        """Measure ``dut``'s supply; GPI0 on its timestamp pin."""
        self.dut = dut
        dut.state_listeners.append(lambda state, t: self.supply_changed(t))
        dut.timestamp_pin.listeners.append(self._on_gpi0)
        self._gpi = [(self.twin.now, self._bits(dut.timestamp_pin.level))]
        self.supply_changed()

    @staticmethod
    def _bits(gpi0: int) -> int:
        return 1 if gpi0 else 0  # GPI1 is not wired: it reads 0

    def _on_gpi0(self, level: int, t: int) -> None:
        self._gpi.append((t, self._bits(level)))
        if not self.streaming and len(self._gpi) > 1:
            del self._gpi[:-1]

    # -- what it measures -------------------------------------------------------------------
    def level(self) -> tuple[float, float]:
        """(current A, voltage V) on the measured rail now."""
        v = float(self._supply())
        dut = self.dut
        if v <= 0 or dut is None or not getattr(dut, "powered", True):
            return 0.0, max(v, 0.0)
        p = self.power_model.power_w(dut.state, v, dut.timing.clock_mhz)
        return p / v, v

    def supply_changed(self, t: int | None = None) -> None:
        """The DUT's state or the supply changed: record the new level."""
        t = self.twin.now if t is None else t
        amps, volts = self.level()
        h = self._hist
        if h[-1][0] == t:
            h[-1] = (t, amps, volts)
        elif h[-1][1:] != (amps, volts):
            h.append((t, amps, volts))
        if not self.streaming and len(h) > 1:
            del h[:-1]

    def sample_id(self, t: int | None = None) -> float:
        """The JS220's sample counter at ``t`` (2 Msps since power-up)."""
        return ((self.twin.now if t is None else t) - self.t0) / NS_PER_ID

    # -- host side ----------------------------------------------------------------------------
    def _host_input(self, port: HostPort, data: bytes) -> None:
        self.twin.schedule(self.reply_latency_ns, lambda: self._handle(port, data), busy=True)

    def _handle(self, port: HostPort, data: bytes) -> None:
        if not self.powered or port.closed:
            return
        if self.session is not None and self.session is not port and self.session.closed:
            # the host that had it open went away without closing it (its
            # process died): the OS released the USB interface, and the next
            # open connects afresh
            self._session_lost()
        core = self.core
        if self.session is not None and self.session is not port and not self.session.closed and core.is_open:
            # another host holds the device open: this one only gets "in use"
            other = Js220Core(self.serial_number)
            other.is_open = True
            other.feed(data)
            while (acts := other.step()) is not None:
                for a in acts:
                    if isinstance(a, Reply):
                        port.write_to_host(a.data)
            return
        core.feed(data)
        while (actions := core.step()) is not None:
            for a in actions:
                if isinstance(a, Reply):
                    port.write_to_host(a.data)
                elif isinstance(a, Opened):
                    self.session = port
                elif isinstance(a, Closed):
                    self.session = None
                elif isinstance(a, SetStreaming):
                    self._set_streaming(bool(a.topics))
                elif isinstance(a, QueryGpi):
                    port.write_to_host(encode({"op": "publish", "topic": GPI_VALUE, "value": self._gpi[-1][1]}))

    def _set_streaming(self, on: bool) -> None:
        if on == self.streaming:
            return
        self._gen += 1
        self.streaming = on
        if on:
            self._k = int(math.floor(self.sample_id())) & ~1
            self.supply_changed()
            self._schedule()

    def _schedule(self) -> None:
        gen = self._gen
        self.twin.schedule(self.flush_ns, lambda: gen == self._gen and self._flush())

    def _flush(self) -> None:
        session = self.session
        if session is None or session.closed or not self.powered:
            self._session_lost()
            return
        k0 = self._k
        k1 = int(math.floor(self.sample_id())) & ~1
        self._schedule()
        if k1 <= k0:
            return
        self._k = k1
        if self._lose_ids:
            gone = min(self._lose_ids, k1 - k0)
            self._lose_ids -= gone
            self.lost_ids += gone
            k0 += gone
        if k1 > k0:
            session.write_to_host(encode(self._chunk(k0, k1)))
            self.sent_ids += k1 - k0
        self._prune(self.t0 + k1 * NS_PER_ID)

    def _chunk(self, k0: int, k1: int) -> dict:
        t_of = self.sample_id
        t0 = self.t0 + k0 * NS_PER_ID
        t1 = self.t0 + k1 * NS_PER_ID
        cur: list[list[float]] = []
        vol: list[list[float]] = []
        for t, amps, volts in self._hist:
            if t >= t1:
                break
            s = max(t_of(t), float(k0))
            if cur and cur[-1][0] == s:
                cur[-1][1], vol[-1][1] = amps, volts
            else:
                cur.append([s, amps])
                vol.append([s, volts])
        gpi: list[list[int]] = []
        for t, bits in self._gpi:
            if t >= t1:
                break
            s = max(math.ceil(t_of(t) - 1e-9), k0) if t > t0 else k0
            if s >= k1:
                break
            if gpi and gpi[-1][0] >= s:
                gpi[-1] = [gpi[-1][0], bits]
            else:
                gpi.append([s, bits])
        return {"op": "data", "k0": k0, "k1": k1, "i": cur, "v": vol, "gpi": gpi}

    def _prune(self, t: float) -> None:
        for h in (self._hist, self._gpi):
            i = 0
            while i + 1 < len(h) and h[i + 1][0] <= t:
                i += 1
            del h[:i]

    def _session_lost(self) -> None:
        self.session = None
        self.core.reset()
        self._gen += 1
        self.streaming = False

    # -- faults and power -------------------------------------------------------------------
    def lose(self, ms: float, in_ms: float = 0.0) -> None:
        """Lose ``ms`` of the stream (USB frames dropped), from the next frame
        on, or from the first frame ``in_ms`` from now."""
        if in_ms > 0:
            self.twin.schedule(in_ms * MS, lambda: self.lose(ms))
            return
        self._lose_ids += int(round(ms * SAMPLE_ID_RATE / 1000))

    def power_off(self) -> None:
        """Unplugged: the host's session ends."""
        self.powered = False
        self._session_lost()
        for p in self.ports:
            if not p.closed and self.twin is not None:
                self.twin.remove_port(p)
        self.ports.clear()

    def power_on(self) -> None:
        """Plugged in again: a fresh instrument (its sample counter restarts)."""
        if self.powered:
            return
        self.powered = True
        self.t0 = self.twin.now
        self._hist = [(self.twin.now, *self.level())]
        self._gpi = [(self.twin.now, self._bits(self.dut.timestamp_pin.level) if self.dut else 0)]

    def state(self) -> dict:
        return {
            "powered": self.powered,
            "open": self.core.is_open,
            "streaming": self.streaming,
            "sample_id": int(self.sample_id()),
            "sent_s": self.sent_ids / SAMPLE_ID_RATE,
            "lost_s": self.lost_ids / SAMPLE_ID_RATE,
            "pending_loss_s": self._lose_ids / SAMPLE_ID_RATE,
            "supply_v": float(self._supply()),
        }


__all__ = ["Js220"]
