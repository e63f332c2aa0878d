"""The LPM01A on the twin's clock (:class:`Lpm01a`): it powers the DUT, sees its
timestamp GPIO on D7 and streams samples of the DUT's supply power integrated
over each sample period; the shell itself is :class:`.core.Lpm01aCore`."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from ...power.model import PowerModel
from ...sim import MS, S, US, Twin
from ...transport.base import HostPort
from .core import Action, Lpm01aCore, Reply, ResetBoard, SetTargetPower, SetVoltage, Settings, StartAcquisition, StopAcquisition, TargetReset
from .stream import ACQUISITION_COMPLETED, PROMPT, TIMESTAMP_EVERY, encode_bin_value, end_record, event_record, format_ascii_value, power_status_record, summary_record, timestamp_record

# --------------------------------------------------------------------------
# the board in the twin


@dataclass
class _Acquisition:
    settings: Settings
    t0: int  # ns: start of sample 0
    period: int  # ns
    n_total: int | None  # None: until stop
    k: int = 0  # next sample to send
    events: list[int] = field(default_factory=list)  # D7 edge times not yet sent
    n_events: int = 0
    vmin: float = math.inf
    vmax: float = 0.0
    gen: int = 0

    def boundary(self, j: int) -> int:
        return self.t0 + j * self.period


class Lpm01a:
    """The PowerShield in the twin: its USB CDC port to the host (any
    :class:`~emulator.sim.HostPort`, see :meth:`attach`), its supply output to
    the DUT and its D7 input on the DUT's timestamp pin.

    Samples are computed lazily from the DUT's piecewise-constant power (state
    changes are recorded as they happen) every ``flush_ms`` of simulated time,
    so a long acquisition costs a few events per second of simulated time, not
    one per sample; streaming does not make the twin busy (in fast mode the
    twin then follows wall time). While an acquisition runs there is always a
    next event: drive the twin with ``run_until_idle(limit_ns)``.

    Not modelled: the static acquisition mode (``acqmode stat`` streams like
    ``dyn``), ``funcmode``, ``currthre`` events on D2/D3, overcurrent, the
    Tx-buffer load (``buff`` is always 00%: the host port buffers instead),
    the duration of a calibration after ``volt``, ``autotest`` and ``range``
    (answered as unknown commands: no source fixes their answers).
    """

    def __init__(
        self,
        twin: Twin,
        dut=None,
        *,
        power_model: PowerModel | None = None,
        name: str = "emon",
        reply_latency_us: float = 500.0,
        flush_ms: float = 10.0,
        core: Lpm01aCore | None = None,
    ):
        self.twin = twin
        self.name = name
        self.core = core or Lpm01aCore()
        self.power_model = power_model or PowerModel.default()
        self.reply_latency_ns = int(round(reply_latency_us * US))
        self.flush_ns = max(1, int(round(flush_ms * MS)))
        self.ports: list[HostPort] = []
        #: called with every chunk of bytes sent to the host (tests, logging)
        self.taps: list[Callable[[bytes], None]] = []
        self.dut = None
        self.powered = True  # USB power (unplugging the board cuts it)
        self.target_on = False
        self.voltage_v = self.core.settings.voltage_mv / 1000
        self.d7_level = 1
        self._hist: list[tuple[int, float]] = [(twin.now, 0.0)]  # (t ns, W)
        self._acq: _Acquisition | None = None
        self._gen = 0
        self._power_gen = 0
        if dut is not None:
            self.connect_dut(dut)

    # -- wiring ------------------------------------------------------------------
    def attach(self, port: HostPort) -> HostPort:
        """Make ``port`` the board's USB CDC port (its baud is ignored)."""
        port.on_host_bytes = self.host_input
        self.ports.append(port)
        self.twin.add_port(port)
        return port

    def connect_dut(self, dut) -> None:
        """Supply ``dut`` (it is the board's only supply: an unpowered EMON
        output switches it off) and listen to its timestamp pin on D7."""
        self.dut = dut
        dut.state_listeners.append(self._on_dut_state)
        dut.timestamp_pin.listeners.append(self._on_d7)
        self.d7_level = dut.timestamp_pin.level
        if getattr(dut, "powered", False) and not self.target_on:
            dut.power_off()
        self._power_changed()

    # -- host side -----------------------------------------------------------------
    def host_input(self, data: bytes) -> None:
        """Bytes from the host: the shell handles them after its latency."""
        self.twin.schedule(self.reply_latency_ns, lambda: self._handle(data), busy=True)

    def _handle(self, data: bytes) -> None:
        if not self.powered:
            return
        core = self.core
        core.feed(data)
        while (actions := core.step()) is not None:
            self._execute(actions)

    def _send(self, data: bytes) -> None:
        if not data:
            return
        self.ports = [p for p in self.ports if not p.closed]
        for p in self.ports:
            p.write_to_host(data)
        for tap in list(self.taps):
            tap(data)

    # -- actions -------------------------------------------------------------------
    def _execute(self, actions: Iterable[Action]) -> None:
        for a in actions:
            if isinstance(a, Reply):
                self._send(a.data)
            elif isinstance(a, SetTargetPower):
                self._set_target(a.on)
            elif isinstance(a, SetVoltage):
                self.voltage_v = a.mv / 1000
                self._power_changed()
            elif isinstance(a, TargetReset):
                self._target_reset(a.seconds)
            elif isinstance(a, StartAcquisition):
                self._start(a.settings)
            elif isinstance(a, StopAcquisition):
                self._stop()
            elif isinstance(a, ResetBoard):
                self._gen += 1
                self._acq = None
                self._set_target(False)
                self.voltage_v = self.core.settings.voltage_mv / 1000
                self._power_changed()

    def _set_target(self, on: bool) -> None:
        self._power_gen += 1  # cancels a pending targrst power-on
        if on == self.target_on:
            return
        self.target_on = on
        if self.dut is not None:
            if on:
                self.dut.power_on()
            else:
                self.dut.power_off()
        self._power_changed()

    def _target_reset(self, seconds: float) -> None:
        self._set_target(False)
        if seconds > 0:
            gen = self._power_gen

            def back_on() -> None:
                if gen == self._power_gen:
                    self.core.target_on = True
                    self._set_target(True)

            self.twin.schedule(seconds * S, back_on)

    # -- power history -------------------------------------------------------------
    def power_now_w(self) -> float:
        """The power drawn from the supply output right now (W)."""
        dut = self.dut
        if not self.target_on or dut is None or not getattr(dut, "powered", True):
            return 0.0
        return self.power_model.power_w(dut.state, self.voltage_v, dut.timing.clock_mhz)

    def _on_dut_state(self, state: str, t: int) -> None:
        self._power_changed(t)

    def _power_changed(self, t: int | None = None) -> None:
        t = self.twin.now if t is None else t
        p = self.power_now_w()
        h = self._hist
        if h[-1][0] == t:
            h[-1] = (t, p)
            if len(h) > 1 and h[-2][1] == p:
                h.pop()
        elif h[-1][1] != p:
            h.append((t, p))
        if self._acq is None and len(h) > 1:
            del h[:-1]

    def _energies(self, a: int, k0: int, k1: int) -> np.ndarray:
        """Energy (J) of samples k0..k1-1 of the acquisition starting at ``a``
        ns with ``period``: exact integrals of the piecewise-constant power."""
        acq = self._acq
        h = self._hist
        starts = np.array([t for t, _ in h], dtype=np.float64)
        powers = np.array([p for _, p in h], dtype=np.float64)
        bounds = np.arange(k0, k1 + 1, dtype=np.float64) * acq.period + acq.t0
        cum = np.concatenate(([0.0], np.cumsum(powers[:-1] * np.diff(starts))))
        idx = np.searchsorted(starts, bounds, side="right") - 1
        idx = np.clip(idx, 0, None)
        e = cum[idx] + powers[idx] * (bounds - starts[idx])
        return np.diff(e) * 1e-9

    def _prune_history(self, t: int) -> None:
        """Forget the power history before ``t`` (keeping the level at ``t``)."""
        h = self._hist
        i = 0
        while i + 1 < len(h) and h[i + 1][0] <= t:
            i += 1
        del h[:i]
        if h[0][0] < t:
            h[0] = (t, h[0][1])

    # -- D7 ----------------------------------------------------------------------------
    def _on_d7(self, level: int, t: int) -> None:
        self.d7_level = level
        core = self.core
        if core.armed and not core.acquiring and level == 1 and self._acq is not None and self._acq.t0 < 0:
            # trigger (rising edge on D7): acquisition starts after trigdelay
            acq = self._acq
            acq.t0 = t + int(round(acq.settings.trigdelay_s * S))
            core.acquisition_started()
            self._begin_stream(acq)
            return
        acq = self._acq
        if acq is None or acq.t0 < 0 or t < acq.t0:
            return
        edge = "fal" if level == 0 else "ris"
        if acq.settings.eventsrc == "d7" and edge == acq.settings.event_edge:
            acq.events.append(t)

    # -- acquisition -------------------------------------------------------------------
    def _start(self, s: Settings) -> None:
        self._gen += 1
        period = S // s.freq_hz
        n_total = None if s.acqtime_s == 0 else max(1, int(round(s.acqtime_s * s.freq_hz)))
        acq = _Acquisition(s, -1, period, n_total, gen=self._gen)
        self._acq = acq
        if s.trigsrc == "sw":
            acq.t0 = self.twin.now + int(round(s.trigdelay_s * S))
            self._begin_stream(acq)

    def _begin_stream(self, acq: _Acquisition) -> None:
        self._prune_history(min(acq.t0, self.twin.now))
        if acq.settings.pwr_status:
            self._send(power_status_record(acq.settings.format, self.target_on))
        self._schedule_flush(acq)

    def _schedule_flush(self, acq: _Acquisition) -> None:
        now = self.twin.now
        done = max(0, (now - acq.t0) // acq.period) if now >= acq.t0 else 0
        # the end of the first sample that completes at least flush_ns from now
        j = max(done + 1, -(-(now + self.flush_ns - acq.t0) // acq.period))
        if acq.n_total is not None:
            j = min(j, acq.n_total)
        at = acq.boundary(j)
        gen = acq.gen

        def tick() -> None:
            if self._acq is acq and acq.gen == gen:
                self._flush(acq)

        self.twin.schedule(max(0, at - now), tick)

    def _flush(self, acq: _Acquisition, final: bool = False) -> None:
        now = self.twin.now
        n_done = max(0, (now - acq.t0) // acq.period) if now >= acq.t0 else 0
        if acq.n_total is not None:
            n_done = min(n_done, acq.n_total)
        if n_done > acq.k:
            self._send(self._encode(acq, acq.k, n_done))
            acq.k = n_done
            self._prune_history(acq.boundary(acq.k))
        if final:
            return
        if acq.n_total is not None and acq.k >= acq.n_total:
            self._finish(acq, by_stop=False)
        else:
            self._schedule_flush(acq)

    def _encode(self, acq: _Acquisition, k0: int, k1: int) -> bytes:
        s = acq.settings
        fmt = s.format
        values = self._energies(acq.t0, k0, k1)
        if s.output == "current":
            values = values / (self.voltage_v * acq.period * 1e-9)
        if len(values):
            acq.vmin = min(acq.vmin, float(values.min()))
            acq.vmax = max(acq.vmax, float(values.max()))
        events = sorted(acq.events)
        ev_idx = [min((t - acq.t0) // acq.period, k1) for t in events]
        keep = [t for t, j in zip(events, ev_idx) if j >= k1]
        ev_by_sample: dict[int, int] = {}
        for j in ev_idx:
            if j < k1:
                ev_by_sample[j] = ev_by_sample.get(j, 0) + 1
        acq.events = keep
        enc = encode_bin_value if fmt == "bin_hexa" else format_ascii_value
        nl = b"" if fmt == "bin_hexa" else b"\r\n"
        parts: list[bytes] = []
        for i, v in enumerate(values.tolist()):
            j = k0 + i
            if j % TIMESTAMP_EVERY == 0:
                parts.append(timestamp_record(fmt, j * 1000 // s.freq_hz))
            for _ in range(ev_by_sample.get(j, 0)):
                acq.n_events += 1
                parts.append(event_record(fmt, acq.n_events))
            parts.append(enc(v) + nl)
        return b"".join(parts)

    def _stop(self) -> None:
        acq = self._acq
        if acq is None:
            return
        if acq.t0 >= 0:
            self._flush(acq, final=True)
        self._finish(acq, by_stop=True)

    def _finish(self, acq: _Acquisition, *, by_stop: bool) -> None:
        s = acq.settings
        fmt = s.format
        out = []
        started = acq.t0 >= 0 and self.twin.now >= acq.t0
        if started:
            # D7 edges after the last whole sample are still reported
            for _ in acq.events:
                acq.n_events += 1
                out.append(event_record(fmt, acq.n_events))
            acq.events = []
            if s.pwr_status:
                out.append(power_status_record(fmt, self.target_on))
            out.append(end_record(fmt))
        if by_stop:
            out.append(PROMPT + b"ack stop\r\n")
        if started:
            vmin = acq.vmin if math.isfinite(acq.vmin) else 0.0
            out.append(summary_record(vmin, acq.vmax))
        out.append(ACQUISITION_COMPLETED)
        self._acq = None
        self._gen += 1
        self._send(b"".join(out))
        self._execute(self.core.acquisition_ended(disarm=by_stop))
        self._prune_history(self.twin.now)
        if s.trigsrc == "d7" and not by_stop and self.core.armed:
            # the trigger stays armed: the next D7 edge starts a new acquisition
            self._start(s)

    @property
    def acquiring(self) -> bool:
        return self._acq is not None

    # -- the board's own power, and what an earlier host left ------------------------
    def power_off(self) -> None:
        """USB unplugged: the board stops; its output (the DUT's supply) goes off."""
        self._execute([ResetBoard()])
        self.core.reset()
        self.powered = False

    def power_on(self) -> None:
        """USB plugged in: the board starts as after reset (not in host control,
        output off)."""
        self.powered = True

    def replay(self, lines: Iterable[str]) -> None:
        """Carry out shell commands as if a host had sent them earlier, their
        answers long gone (e.g. an earlier run that set up an acquisition and
        was killed: the board still streams when the next run opens it)."""
        for line in lines:
            self._execute([a for a in self.core.command(line) if not isinstance(a, Reply)])


