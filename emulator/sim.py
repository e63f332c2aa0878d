"""The single clock of a twin.

Every device model of a twin (DUT CPU, UARTs, GPIO, IO manager, EMON) lives in
one :class:`simpy.Environment`. Simulated time is an integer number of
nanoseconds (``env.now``); it is the only time the devices know.

Wall time enters only here, at the edge, in :meth:`Twin.run` (the loop that
serves the host ports; its steps are small methods, and the wall-to-simulated
time mapping is the pure :class:`Pacer`):

* host bytes that arrive on a port (a pty master, a socket) are injected at the
  simulated time that corresponds to the moment they arrived;
* simulated events are released no earlier than their wall-clock deadline,
  according to the :class:`Speed`.

Speed modes
-----------
``realtime``
    simulated time advances exactly with wall time (factor 1).
``fast``
    while any device is *busy* (the DUT computing or printing, a UART
    shifting bytes, ...) simulated time runs as fast as the host can compute;
    while every device is idle and waits for the host, simulated time follows
    wall time 1:1, so the gaps between host commands last what they last on a
    bench. Timestamps printed by the DUT are the board's either way.
a number ``k``
    simulated time always runs ``k`` times faster than wall time.

Devices declare busy periods so that they cannot be left open: :meth:`Twin.busy`
(a context manager for a block of a SimPy process), :meth:`Twin.busy_until`
(until an event) and :meth:`Twin.schedule` with ``busy=True``.

The direct path (fast mode)
---------------------------
When host bytes arrive while nothing at all is scheduled, the run loop hands
them to the device at once and :attr:`Twin.direct` is true during that call:
a device may then carry out what follows (the UART transfer, the firmware's
answer) without SimPy events, moving the clock forward itself with
:meth:`Twin.jump` to the exact times the stepped path would reach. Nothing
else can happen in between (nothing is scheduled, and in fast mode a busy
stretch costs no wall time), so the bytes out and every simulated timestamp
are the stepped path's; ``tests/test_direct_path.py`` checks this against the
stepped path (``Twin.allow_direct = False``) on random command streams.
Whatever a device cannot finish that way (an inference) it schedules as
usual. The direct path steps aside while a port's hook (a
:class:`~emulator.control.tap.PortTap`) is not passive: a fault armed on a
wire, a delay, a fault plan's trigger waiting; the stepped path then carries
the bytes through the hook at their exact times.

A host in the same process drives the twin without the run loop and without
a thread: :meth:`Twin.host_input` hands its bytes over at the simulated time of
now, :meth:`Twin.pump` processes what is due, :meth:`Twin.wait_s` says how
long nothing is due (the ``tinytwin://`` URL handler).
"""
from __future__ import annotations

import math
import os
import select
import threading
import time
import traceback
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import simpy

if TYPE_CHECKING:  # pragma: no cover
    from .transport.base import HostPort

US = 1_000
MS = 1_000_000
S = 1_000_000_000

#: how often a hung-up host port (a pty no program has open) is looked at again
HUP_RECHECK_S = 0.02


@dataclass(frozen=True)
class Speed:
    """How simulated time relates to wall time (see module docstring)."""

    factor: float  # simulated seconds per wall second; math.inf for "fast"

    @classmethod
    def parse(cls, text: "str | float | Speed") -> "Speed":
        if isinstance(text, Speed):
            return text
        if isinstance(text, (int, float)):
            value = float(text)
        else:
            t = str(text).strip().lower()
            if t in ("realtime", "real", "rt", "1", "1x"):
                return cls(1.0)
            if t in ("fast", "max", "inf"):
                return cls(math.inf)
            try:
                value = float(t[:-1] if t.endswith("x") else t)
            except ValueError:
                raise ValueError(
                    f"speed must be 'realtime', 'fast' or a factor like '10' (got {text!r})"
                ) from None
        if not value > 0:
            raise ValueError(f"speed factor must be > 0 (got {text!r})")
        return cls(value)

    @property
    def is_fast(self) -> bool:
        return math.isinf(self.factor)

    @property
    def is_realtime(self) -> bool:
        return self.factor == 1.0

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        if self.is_fast:
            return "fast"
        if self.is_realtime:
            return "realtime"
        return f"{self.factor:g}x"


class _Env(simpy.Environment):
    """SimPy's environment, plus the clock step of the direct path."""

    def jump(self, t: int) -> None:
        """Move simulated time to ``t`` (ns); only while nothing is scheduled
        at or before ``t`` (so no event is skipped or reordered)."""
        queue = self._queue
        if t < self._now or (queue and queue[0][0] <= t):
            raise RuntimeError(
                f"the clock cannot jump from {self._now} to {t} ns"
                + (f" past an event due at {queue[0][0]} ns" if queue else "")
            )
        self._now = t


_INF = math.inf


class Pacer:
    """How simulated time follows wall time, as a pure function of an anchor.

    Between two anchors simulated time runs at :attr:`rate` simulated seconds
    per wall second (``math.inf``: as fast as the host computes). The twin
    re-anchors whenever the rate changes (in fast mode: when the bench turns
    busy or idle). Nothing here reads a clock: the caller passes wall times.
    """

    __slots__ = ("speed", "wall", "sim", "rate", "_fast")

    def __init__(self, speed: Speed):
        self.speed = speed
        self._fast = speed.is_fast
        self.wall = 0.0
        self.sim = 0.0
        self.rate = self.rate_for(busy=False)

    def rate_for(self, *, busy: bool) -> float:
        """Fast mode runs flat out while busy and 1:1 while idle; a factor
        always runs at that factor."""
        if self._fast:
            return math.inf if busy else 1.0
        return self.speed.factor

    def anchor(self, wall: float, sim: float, *, busy: bool) -> None:
        """From ``wall`` (s) / ``sim`` (ns) on, run at the rate for ``busy``."""
        self.wall = wall
        self.sim = sim
        self.rate = self.rate_for(busy=busy)

    @property
    def unbounded(self) -> bool:
        """True while simulated time need not wait for wall time."""
        return self.rate == _INF

    def sim_target(self, wall: float) -> float:
        """The simulated time (ns) that wall time ``wall`` corresponds to."""
        rate = self.rate
        if rate == _INF:
            return _INF
        return self.sim + (wall - self.wall) * 1e9 * rate

    def wall_deadline(self, sim_t: float) -> float:
        """The wall time (s) at which simulated time ``sim_t`` is due."""
        rate = self.rate
        if rate == _INF:
            return -_INF
        return self.wall + (sim_t - self.sim) / (1e9 * rate)


_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_POLL_IN_OUT = select.POLLIN | select.POLLOUT
_POLL_GONE = select.POLLHUP | select.POLLERR
_POLL_READ = select.POLLIN | _POLL_GONE


class _Call:
    """A SimPy event callback that calls ``fn(*args)``."""

    __slots__ = ("fn", "args")

    def __init__(self, fn: Callable[..., None], *args: object):
        self.fn = fn
        self.args = args

    def __call__(self, _event: object) -> None:
        self.fn(*self.args)



class _Loop:
    """The run loop's view of the host ports: the poller and what it was told
    (it is only told what changed)."""

    def __init__(self, twin: "Twin"):
        self.twin = twin
        self.poller = select.poll()
        self.poller.register(twin._wake_r, select.POLLIN)
        self.registered: dict[int, int] = {}  # fd -> mask given to the poller
        self.polled: list[HostPort] = []  # the ports, as of `seen`
        self.seen = -1  # the twin's _ports_changed as of `polled`

    def sync_ports(self) -> bool:
        """(Re)register the ports; a hung-up port (a pty nobody has open) is
        left out for a while instead of waking poll() in a loop. Returns
        whether one is left out."""
        twin = self.twin
        registered = self.registered
        if self.seen != twin._ports_changed:
            ports = twin.ports
            self.seen = twin._ports_changed
            self.polled = list(ports.values())
            for fd in list(registered):
                if fd not in ports:
                    try:
                        self.poller.unregister(fd)
                    except (KeyError, ValueError):
                        pass
                    del registered[fd]
        hung = False
        wall_now = None
        for port in self.polled:
            fd = port.fd
            if port.hup_until:
                if wall_now is None:
                    wall_now = time.monotonic()
                if port.hup_until > wall_now:
                    hung = True
                    if fd in registered:
                        self.poller.unregister(fd)
                        del registered[fd]
                    continue
            mask = _POLL_IN_OUT if port.wants_write() else _POLLIN
            if registered.get(fd) != mask:
                if fd in registered:
                    self.poller.modify(fd, mask)
                else:
                    self.poller.register(fd, mask)
                registered[fd] = mask
        return hung

    def service(self, events: list[tuple[int, int]]) -> None:
        """Flush what ports can take and hand what the host sent to the
        simulation, at the simulated time of its arrival."""
        if not events:
            return
        twin = self.twin
        wall = time.monotonic()
        ports = twin.ports
        for fd, ev in events:
            port = ports.get(fd)
            if port is None:
                if fd == twin._wake_r:
                    try:
                        while os.read(fd, 4096):
                            pass
                    except BlockingIOError:
                        pass
                continue
            if ev & _POLLOUT:
                port.flush()
            if ev & _POLL_READ:
                if not ev & _POLL_GONE:
                    port.open_turn = twin.turn  # the host has it open, as of this poll
                data = port.read_available()
                if data is None:
                    twin.remove_port(port)
                elif data:
                    twin._inject(port, data, wall)
                elif ev & _POLL_GONE and not ev & select.POLLIN:
                    port.hup_until = wall + HUP_RECHECK_S


class _BusyCall:
    """A SimPy event callback that calls ``fn()`` and then ends the busy
    period :meth:`Twin.schedule` began for it."""

    __slots__ = ("twin", "fn")

    def __init__(self, twin: "Twin", fn: Callable[[], None]):
        self.twin = twin
        self.fn = fn

    def __call__(self, _event: object) -> None:
        try:
            self.fn()
        finally:
            self.twin._end_busy()


class Twin:
    """One simulated bench: one SimPy environment, its devices, its ports.

    :meth:`run` (or :meth:`start`, in a background thread) drives the
    environment against wall time and services the host ports.
    """

    #: whether the direct path may be taken (see the module docstring); the
    #: oracle test turns it off to compare with the stepped path
    allow_direct = True
    #: whether a device's express lane may take the commonest command (a
    #: fused direct path, see ``HostPort.express``); tests turn it off to
    #: compare with the layers
    allow_express = True

    def __init__(self, speed: "Speed | str | float" = "fast"):
        self.env = _Env()
        self.speed = Speed.parse(speed)
        self._fast = self.speed.is_fast
        self.ports: dict[int, HostPort] = {}
        self._fdless: list[HostPort] = []  # in-process ports (no fd to poll)
        #: true while a device may finish host-triggered work at once
        #: (see :meth:`jump`)
        self.direct = False
        #: bumped each time the run loop looks at the host ports (a port may
        #: keep what it asked the OS for during one turn)
        self.turn = 0
        #: while :meth:`_advance` runs, consecutive output to one port is held
        #: and written together (see :meth:`HostPort.emit`): the port holding it
        self.holding = False
        self.held: HostPort | None = None
        self._ports_changed = 0  # bumped whenever a port is added or removed
        self._busy = 0
        self._calls: deque[Callable[[], None]] = deque()
        self._calls_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop_thread: threading.Thread | None = None  # the thread running run(), if any
        #: held by a call run directly (no loop yet), and taken by run() before it starts: the two
        #: never overlap (a control socket may be up before the loop thread is)
        self._direct_lock = threading.Lock()
        self.pacer = Pacer(self.speed)
        self._reanchor()
        self.errors: list[BaseException] = []
        self.log: Callable[[str], None] = lambda msg: None
        self._closers: list[Callable[[], None]] = []

    # -- time ----------------------------------------------------------------
    @property
    def now(self) -> int:
        """Simulated time in ns."""
        return int(self.env.now)

    def _reanchor(self) -> None:
        self.pacer.anchor(time.monotonic(), self.env.now, busy=self._busy > 0)

    @property
    def busy_count(self) -> int:
        """How many busy periods are open now (0: every device is idle)."""
        return self._busy

    def _begin_busy(self) -> None:
        self._busy += 1
        if self._busy == 1 and self._fast:
            self._reanchor()

    def _end_busy(self) -> None:
        self._busy -= 1
        assert self._busy >= 0
        if self._busy == 0 and self._fast:
            self._reanchor()

    def jump(self, t: int) -> None:
        """Move simulated time to ``t`` (ns) on the direct path (only while
        :attr:`direct`: nothing is scheduled and the host's bytes were handed
        over directly)."""
        self.env.jump(t)

    def _end_busy_cb(self, _event: object) -> None:
        self._end_busy()

    @contextmanager
    def busy(self) -> Iterator[None]:
        """A busy period around a block of a SimPy process (``with``)."""
        self._begin_busy()
        try:
            yield
        finally:
            self._end_busy()

    def busy_until(self, event: simpy.Event) -> simpy.Event:
        """A busy period from now until ``event`` is processed (it ends after
        the callbacks already attached to ``event``)."""
        self._begin_busy()
        event.callbacks.append(self._end_busy_cb)
        return event

    # -- wiring ----------------------------------------------------------------
    def add_port(self, port: HostPort) -> None:
        port.twin = self
        if port.fd is None:  # in-process: its host calls host_input()
            self._fdless.append(port)
            return
        os.set_blocking(port.fd, False)
        self.ports[port.fd] = port
        self._ports_changed += 1
        self.wake()

    def remove_port(self, port: HostPort) -> None:
        """Forget a port whose host end is gone for good (and close it)."""
        if port.fd is None:
            if port in self._fdless:
                self._fdless.remove(port)
        else:
            self.ports.pop(port.fd, None)
            self._ports_changed += 1
        port.close()

    def on_close(self, fn: Callable[[], None]) -> None:
        self._closers.append(fn)

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the simulation thread (thread-safe)."""
        with self._calls_lock:
            self._calls.append(fn)
        self.wake()

    def call(self, fn: Callable[[], object], timeout: float = 10.0) -> object:
        """Run ``fn`` in the simulation thread, at the simulated time the loop
        gets to it, and return its result (or raise its exception); directly
        when the loop is not running or this is its thread. Thread-safe."""
        thread = self._loop_thread  # the thread in run(): start()'s, or a caller's (tinytwin rig)
        if thread is threading.current_thread():
            return fn()
        if thread is None or not thread.is_alive():
            with self._direct_lock:
                thread = self._loop_thread
                if thread is None or not thread.is_alive():
                    return fn()
        done = threading.Event()
        box: list = []
        state = {"given_up": False}
        lock = threading.Lock()

        def run() -> None:
            with lock:
                if state["given_up"]:
                    return  # the caller was told it did not happen: it must not happen later
                state["running"] = True
            try:
                box.append((True, fn()))
            except BaseException as exc:  # handed to the caller
                box.append((False, exc))
            finally:
                done.set()

        self.call_soon(run)
        if not done.wait(timeout):
            with lock:
                if not state.get("running"):
                    state["given_up"] = True
            if state["given_up"]:
                raise TimeoutError(f"the simulation did not run the call within {timeout:g} s (it will not run later)")
            done.wait()  # it started just now: its result is the answer
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def wake(self) -> None:
        """Wake the run loop (thread-safe), e.g. to notice a stop request."""
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def schedule(self, delay_ns: float, fn: Callable[[], None], *, busy: bool = False) -> None:
        """Call ``fn`` inside the simulation after ``delay_ns``; with ``busy``,
        the twin counts as busy from now until ``fn`` has returned."""
        ev = self.env.timeout(max(0, int(round(delay_ns))))
        if busy:
            self._begin_busy()
            ev.callbacks.append(_BusyCall(self, fn))
        else:
            ev.callbacks.append(_Call(fn))

    # -- the loop --------------------------------------------------------------
    def _inject(self, port: HostPort, data: bytes, wall: float) -> None:
        """Hand what the host sent at ``wall`` to the port's device, at the
        simulated time of that moment."""
        now = self.env._now
        delay = self.pacer.sim_target(wall) - now  # (inf while the bench is busy: at once)
        self.inject_at(port, data, now + int(round(delay)) if 1 <= delay < _INF else now)

    def inject_at(self, port: HostPort, data: bytes, at: int) -> None:
        """Hand host bytes to the port's device at simulated time ``at`` (ns,
        not before now): at once when nothing is due before it (on the direct
        path when nothing is scheduled at all, in fast mode), else as an
        event. The run loop calls it with the time the bytes arrived; tests
        call it with times of their choosing. A device's express lane
        (``port.express``) may take them first."""
        express = port.express
        if express is not None and express(port, data, at):
            return
        env = self.env
        now = env._now
        port.rx_count += len(data)
        handler = port.on_host_bytes
        if handler is None:
            return
        queue = env._queue
        if not queue:  # nothing else scheduled: at once, on the direct path in fast mode
            if at > now:
                env._now = now = at
            direct = self.direct = self._fast and self.allow_direct and self._hooks_passive()
            try:
                handler(data)
            finally:
                self.direct = False
            if direct and env._now != now and self._busy == 0:
                self.idle_again()
        elif at <= now or queue[0][0] > at:  # nothing due before: at once
            if at > now:
                env.jump(at)
            handler(data)
        else:
            ev = env.timeout(at - now)
            ev.callbacks.append(_Call(handler, data))

    def idle_again(self) -> None:
        """After work carried out at once on the direct path (the clock has
        jumped, nothing is busy): simulated time follows wall time from now
        on, as at the end of a busy period."""
        pacer = self.pacer
        pacer.wall = time.monotonic()
        pacer.sim = self.env._now

    def _hooks_passive(self) -> bool:
        """Whether no port's hook has a fault armed or a trigger waiting (the
        direct path steps aside while one has: a delay or a fault plan's
        action schedules work of its own)."""
        for port in self.ports.values():
            hook = port.hook
            if hook is not None and not hook.passive():
                return False
        for port in self._fdless:
            hook = port.hook
            if hook is not None and not hook.passive():
                return False
        return True

    # -- a host in this process (no run loop, no thread) ---------------------------
    def host_input(self, port: HostPort, data: bytes) -> None:
        """What an in-process host (a port without fd) sends now; call
        :meth:`pump` first so that what was due before now has happened."""
        self._inject(port, data, time.monotonic())

    def pump(self) -> None:
        """Process what is due by now (at most :attr:`FAST_BUDGET_S` of
        computing in fast mode): the run loop's step, for a host in this
        process that drives the twin itself."""
        self.turn += 1
        if self._calls:
            self._drain_calls()
        if self.env._queue:
            self._advance()

    def wait_s(self) -> float:
        """Wall seconds until the next simulated event is due (0: now or
        overdue; ``math.inf``: nothing is scheduled)."""
        nxt = self.env.peek()
        if nxt == math.inf:
            return math.inf
        if self.pacer.unbounded:
            return 0.0
        return max(0.0, self.pacer.wall_deadline(nxt) - time.monotonic())

    def step_until(self, sim_t: float) -> None:
        """Process every simulated event up to ``sim_t`` (ns)."""
        env = self.env
        while env.peek() <= sim_t:
            env.step()

    def run_until_idle(self, limit_ns: float = math.inf) -> None:
        """Process events until nothing is scheduled (or ``limit_ns``).

        For tests and batch use without any host port: simulated time jumps
        from event to event.
        """
        env = self.env
        while env.peek() < math.inf and env.peek() <= limit_ns:
            env.step()

    def run(self, stop: threading.Event | None = None) -> None:
        """Drive the simulation against wall time until ``stop`` is set: each
        turn runs the calls other threads queued, tells the poller which
        ports to watch, waits for the host at most until the next simulated
        event is due, services the ports, and advances the simulation."""
        stop = stop or self._stop
        with self._direct_lock:  # a direct call (made before the loop ran) finishes first
            self._loop_thread = threading.current_thread()
        loop = _Loop(self)
        self._reanchor()
        calls = self._calls
        queue = self.env._queue
        poll = loop.poller.poll
        # (a twin on a thread of a process that does other work, a runner
        # in-process or a test, sleeps instead: its spin would hold the GIL)
        spin = self.SPIN_S if self._fast and threading.current_thread() is threading.main_thread() else 0.0
        spin_until = 0.0
        monotonic = time.monotonic
        sched_yield = os.sched_yield
        try:
            while not stop.is_set():
                if calls:
                    self._drain_calls()
                hung = loop.sync_ports()
                # idle with nothing scheduled: wake up now and then to notice stop
                timeout = self._timeout_ms(hung) if queue or hung else 200
                if spin_until and timeout:
                    # fast mode, right after host traffic: the host's next
                    # command usually follows within tens of µs; look for it
                    # without going to sleep (see SPIN_S)
                    events = poll(0)
                    while not events and monotonic() < spin_until:
                        sched_yield()
                        events = poll(0)
                    if not events:
                        spin_until = 0.0
                        events = poll(self._timeout_ms(hung) if queue or hung else 200)
                else:
                    events = poll(timeout)
                self.turn += 1
                if events:
                    loop.service(events)
                    if spin:
                        spin_until = monotonic() + spin
                if queue:
                    self._advance()
        finally:
            self._loop_thread = None

    def _drain_calls(self) -> None:
        calls = self._calls
        while calls:
            with self._calls_lock:
                fn = calls.popleft()
            fn()

    def _timeout_ms(self, hung: bool) -> int:
        """How long the loop may wait for the host (ms)."""
        nxt = self.env.peek()
        if self.pacer.unbounded and nxt < math.inf:
            timeout_ms = 0
        elif nxt == math.inf:
            timeout_ms = 200  # idle: wake up now and then to notice stop
        else:
            wait = self.pacer.wall_deadline(nxt) - time.monotonic()
            # poll() has 1 ms resolution: sleep whole milliseconds, then
            # spin for the last one so events are released on time
            timeout_ms = 0 if wait <= 0.001 else min(200, int(wait * 1000))
        if hung:
            timeout_ms = min(timeout_ms, int(HUP_RECHECK_S * 1000))
        return timeout_ms

    #: fast mode, a twin that is its process's main loop (``tinytwin dut``,
    #: ``tinytwin rig``): how long the loop keeps looking at its ports without
    #: sleeping after host bytes arrived (s), yielding the CPU between looks.
    #: A runner follows ``m-ready`` with its next command within tens of µs,
    #: and a loop asleep in poll() pays the kernel's wake-up on top of every
    #: round trip (an ad01 accuracy run over a pty, one twin and one runner:
    #: about a quarter less wall time). With two twins and two runners on two
    #: cores it gains nothing and may cost a few % (benchmarks/spin_tradeoff.py).
    #: A twin at the board's pace, one on a thread, and one nobody talks to
    #: sleep in poll() as before.
    SPIN_S = 0.0002

    #: how long one turn of the loop may compute in fast mode before it looks
    #: at the host ports again (s)
    FAST_BUDGET_S = 0.005

    def _advance(self) -> None:
        """Process the simulated events that are due; a device bug is logged
        and kept in :attr:`errors`, and does not kill the bench."""
        pacer = self.pacer
        if not self.env._queue:
            return
        self.holding = True
        try:
            if pacer.unbounded:
                env = self.env
                t_end = time.monotonic() + self.FAST_BUDGET_S
                while pacer.unbounded and env.peek() < math.inf:
                    env.step()
                    if time.monotonic() > t_end:
                        break
                if not pacer.unbounded:
                    self.step_until(pacer.sim_target(time.monotonic()))
            else:
                self.step_until(pacer.sim_target(time.monotonic()))
        except Exception as exc:  # a device bug must not kill the bench
            self.errors.append(exc)
            self.log(f"internal error in the simulation: {exc!r}")
            traceback.print_exc()
        finally:
            self.holding = False
            held, self.held = self.held, None
            if held is not None:
                held.emit_held()

    def start(self) -> "Twin":
        """Run the loop in a daemon thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="tinytwin-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None

    def close(self) -> None:
        self.stop()
        for port in [*self.ports.values(), *self._fdless]:
            port.close()
        self.ports.clear()
        self._ports_changed += 1
        self._fdless.clear()
        for fn in self._closers:
            try:
                fn()
            except Exception:
                pass
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
