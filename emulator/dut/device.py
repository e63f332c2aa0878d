"""The DUT as a device in the twin's single SimPy clock.

It wires the pure protocol core (:mod:`emulator.dut.core`) to simulated
hardware:

* a UART (:class:`emulator.hw.uart.SerialEndpoint`) at the firmware's baud rate
  (115200, or 921600 for ad01, in performance mode; 9600 in energy mode);
  ``printf`` blocks until each line has been shifted out, as on the board;
* a CPU that is busy for the duration of each operation (parsing, tensor
  conversion, inference, printing) and meanwhile reads nothing from the UART:
  bytes that arrive then overrun the one-byte receive register (the first is
  kept, the rest are lost), as with mbed's unbuffered serial;
* the 32-bit microsecond timer read by ``th_timestamp()``, which starts at
  reset and wraps after 2^32 µs (``timer_start_us`` starts it elsewhere, e.g.
  1 s before the wrap);
* the timestamp GPIO (D7), pulled low by ``th_timestamp()`` in energy mode;
* power: a DUT that is not powered answers nothing; power-on boots it
  (banner), power-off loses all state.

State changes (``off``, ``boot``, ``idle``, ``busy``, ``infer``, ``tx``) are
reported to :attr:`Dut.state_listeners` so the power model can follow them.

The firmware's work for a command is one sequence of steps
(:meth:`Dut._steps`: a delay, or bytes to print) with two drivers: a SimPy
process (:meth:`Dut._timed`), and, on the twin's direct path (a command that
arrived while nothing else is scheduled, in fast mode), :meth:`Dut._run_now`,
which carries the steps out at once, moving the clock to the same times.
Commands that run the model keep the process (an inference costs wall time,
and a host may send meanwhile).
"""
from __future__ import annotations

from typing import Callable

import simpy

from ..hw.gpio import Pin
from ..sim import US, Twin
from ..hw.uart import RxRegister, SerialEndpoint
from ..core import Hang
from .core import MSG_READY, Action, DutCore, DutState, Infer, LoadTensor, Print, Results, Timestamp, check_variant
from .timing import DutTiming

TIMER_WRAP = 2**32
#: the clock the dwt-timer variant divides its cycle counter by (MHz)
DWT_MHZ = 120


class Dut:
    """The EEMBC DUT firmware on the twin's clock.

    It owns the board's UART (:attr:`uart`), its timestamp GPIO (D7,
    :attr:`timestamp_pin`) and its 32-bit µs timer, and runs the protocol core
    (:class:`~emulator.dut.core.DutCore`) on what the UART receives: each
    command's script of actions takes the simulated time :attr:`timing` says,
    the model really runs on :attr:`engine`, and while the CPU is busy its UART
    keeps one received byte and loses the rest (an overrun), as on the board.
    :attr:`state` (a :class:`~emulator.dut.core.DutState`) is what the supply
    current depends on; ``state_listeners`` hear every change. Power comes and
    goes with :meth:`power_on` / :meth:`power_off` (an EMON drives them).
    """

    def __init__(
        self,
        twin: Twin,
        engine,
        timing: DutTiming,
        *,
        energy_mode: bool = False,
        baud: int | None = None,
        timer_start_us: int = 0,
        powered: bool = True,
        name: str = "dut",
        variant: str = "reference",
    ):
        self.twin = twin
        self.env = twin.env
        self.engine = engine
        self.profile = engine.profile
        self.timing = timing
        self.energy_mode = energy_mode
        self.name = name
        #: the firmware build (emulator.dut.core.VARIANTS; "reference" by default)
        self.variant = check_variant(variant)
        if baud is None:
            baud = self.profile.energy_baud if energy_mode else self.profile.perf_baud
        self.uart = SerialEndpoint(twin, f"{name}.uart", baud, split_after=b"%", receiver=self._on_rx)
        self.timestamp_pin = Pin(twin, f"{name}.D7", level=1)
        self.timer_start_us = timer_start_us
        #: a jump of the running timer (``tinytwin ctl timer``); a reset clears it
        self.timer_jump_us = 0
        self.state = DutState.OFF
        self.state_listeners: list[Callable[[DutState, int], None]] = []
        self.powered = False
        self.hung = False
        self.commands = 0
        self._reset_at = 0
        self._core: DutCore | None = None
        self._cpu_busy = False  # the CPU is not reading its UART
        #: the UART's receive register (what comes while the CPU is busy)
        self._rx = RxRegister(self.uart)
        self._pending: list[list[Action]] = []
        self._proc: simpy.Process | None = None
        self._epoch = 0  # incremented at every power change; stale processes stop
        if powered:
            self.power_on()

    # -- observable state ------------------------------------------------------
    @property
    def core(self) -> DutCore:
        assert self._core is not None, "the DUT is not powered"
        return self._core

    def _set_state(self, state: DutState) -> None:
        if state != self.state:
            self.state = state
            if self.state_listeners:
                t = self.twin.now
                for fn in list(self.state_listeners):
                    fn(state, t)

    def timer_us(self) -> int:
        """``us_ticker_read()``: µs since reset, on a 32-bit counter (the
        ``dwt-timer`` variant: a 32-bit cycle counter at 120 MHz, in µs)."""
        elapsed = (self.twin.now - self._reset_at) // US
        us = int(self.timer_start_us + self.timer_jump_us + elapsed)
        if self.variant == "dwt-timer":
            return (us * DWT_MHZ) % TIMER_WRAP // DWT_MHZ
        return us % TIMER_WRAP

    # -- power -------------------------------------------------------------------
    def power_on(self) -> None:
        if self.powered:
            return
        self.powered = True
        self.hung = False
        self._epoch += 1
        self._reset_at = self.twin.now
        self.timer_jump_us = 0  # the timer restarts from its power-on value
        self._core = DutCore(self.profile, energy_mode=self.energy_mode, variant=self.variant)
        self._rx.clear(polling=False)
        self._pending.clear()
        self.timestamp_pin.set(1)
        self._cpu_busy = True
        self._proc = self.env.process(self._boot(self._epoch))

    def power_off(self) -> None:
        if not self.powered:
            return
        self.powered = False
        self._epoch += 1
        # a process still running for the old epoch stops at its next step
        # and releases its own busy count
        self._cpu_busy = False
        self._core = None
        self._pending.clear()
        self._set_state(DutState.OFF)

    def reset(self) -> None:
        """A reset (NRST / power cycle): the firmware boots again."""
        self.power_off()
        self.power_on()

    def hang(self) -> None:
        """The firmware stops (a HardFault, a stuck loop): the CPU keeps
        running (and drawing power) but answers nothing more until a reset
        or a power cycle."""
        if not self.powered or self.hung:
            return
        self._epoch += 1  # a command being carried out stops at its next step
        self.hung = True
        self._cpu_busy = True
        self._rx.clear(polling=False)
        self._pending.clear()
        self._set_state(DutState.BUSY)

    # -- UART receive ---------------------------------------------------------------
    @property
    def overrun_lost(self) -> int:
        """Bytes lost to overruns of the UART's receive register."""
        return self._rx.lost

    def _on_rx(self, data: bytes) -> None:
        if not self.powered or self.hung:
            return
        data = self._rx.receive(data)  # what the CPU reads of it (all, while it polls)
        if self._cpu_busy or not data:
            # busy: the receive register keeps the first byte that came, the
            # rest overrun (busy begins with a command or a boot: nothing of
            # this was read before it)
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        core = self.core
        core.feed(data)
        while (script := core.step()) is not None:
            self._pending.append(script)
        self._start()

    def _start(self) -> None:
        if not self._cpu_busy and self._pending:
            if self._can_run_now():
                self._run_now()
                return
            self._cpu_busy = True
            self._rx.stop()
            self._proc = self.env.process(self._execute_pending(self._epoch))

    def _can_run_now(self) -> bool:
        """The direct path may carry out the pending commands: the twin is
        on it, nothing listens to the DUT's state or pin (a listener may
        schedule), the UART's other end only hands bytes on, and no command
        runs the model."""
        peer = self.uart.peer
        if not self.twin.direct or self.state_listeners or self.timestamp_pin.listeners:
            return False
        if peer is None or not peer.instant_receiver:
            return False
        for script in self._pending:
            for op in script:
                if op.__class__ is Infer:
                    return False
        return True

    def _run_now(self) -> None:
        """:meth:`_execute_pending` on the direct path: the same steps at the
        same simulated times, without events."""
        env = self.env
        jump = env.jump
        send_now = self.uart.send_now
        epoch = self._epoch
        pending = self._pending
        self._cpu_busy = True
        self._rx.stop()
        try:
            while pending:
                script = pending.pop(0)
                self.commands += 1
                self._set_state(DutState.BUSY)
                jump(env._now + int(self.timing.command_ns))
                for op in script:
                    if op.__class__ is not Print:
                        break
                else:
                    # only prints (most commands): as _steps does them; the
                    # BUSY/TX changes in between have no listener to see them
                    for op in script:
                        if op.text:
                            end = send_now(op.text)
                            if end != env._now:
                                jump(end)
                    continue
                for step in self._steps(script, epoch):
                    if step.__class__ is int:
                        jump(env._now + step)
                    else:
                        end = send_now(step)
                        if end is None:  # cannot happen: _can_run_now checked the receiver
                            raise RuntimeError("the DUT's direct path lost the clock")
                        jump(end)
                if self.hung:
                    return
        finally:
            if not self.hung:
                self._cpu_busy = False
                self._set_state(DutState.IDLE)
        if not self.hung:
            self._after_command()

    # -- execution ------------------------------------------------------------------
    def _boot(self, epoch: int):
        with self.twin.busy():
            try:
                self._set_state(DutState.BOOT)
                yield self.env.timeout(int(self.timing.boot_ns))
                yield from self._timed(self._steps(self.core.boot_script(), epoch))
                if epoch != self._epoch:
                    return
                self.core.enable_parser()
                yield from self._timed(self._print(MSG_READY, epoch))
            finally:
                if epoch == self._epoch:
                    self._cpu_busy = False
                    self._set_state(DutState.IDLE)
        if epoch == self._epoch:
            self._after_command()

    def _execute_pending(self, epoch: int):
        with self.twin.busy():
            try:
                while self._pending and epoch == self._epoch:
                    script = self._pending.pop(0)
                    self.commands += 1
                    self._set_state(DutState.BUSY)
                    yield self.env.timeout(int(self.timing.command_ns))
                    yield from self._timed(self._steps(script, epoch))
                    if self.hung:
                        return
            finally:
                if epoch == self._epoch and not self.hung:
                    self._cpu_busy = False
                    self._set_state(DutState.IDLE)
        if epoch == self._epoch and not self.hung:
            self._after_command()

    def _after_command(self) -> None:
        """The CPU reads its UART again: first what the receive register
        kept while it was busy."""
        held = self._rx.resume()
        if held is not None:
            self._feed(bytes([held]))

    def _timed(self, steps):
        """Carry out :meth:`_steps` in a SimPy process."""
        env = self.env
        send = self.uart.send
        for step in steps:
            yield env.timeout(step) if step.__class__ is int else send(step)

    def _print(self, text: bytes, epoch: int):
        """A blocking printf: one step, the bytes to transmit."""
        if not text or epoch != self._epoch:
            return
        prev = self.state
        self._set_state(DutState.TX)
        yield text
        if epoch == self._epoch:
            self._set_state(prev)

    def _steps(self, script: list[Action], epoch: int):
        """What the firmware does for ``script``, as steps in time: each
        step is a delay (int, ns) or bytes to print (waiting until the last
        has been shifted out)."""
        for op in script:
            if epoch != self._epoch:
                return
            if isinstance(op, Print):
                yield from self._print(op.text, epoch)
            elif isinstance(op, Timestamp):
                if self.energy_mode:
                    self.timestamp_pin.set(0)
                    yield int(self.timing.timestamp_hold_ns)
                    if epoch == self._epoch:
                        self.timestamp_pin.set(1)
                else:
                    stamp = self.timer_us()
                    if self.timing.timestamp_print_us:
                        yield int(self.timing.timestamp_print_ns)
                    yield from self._print(self.core.lap_line(stamp), epoch)
            elif isinstance(op, LoadTensor):
                err = self.core.load_tensor(op.raw, self.engine)
                if err is not None:
                    yield from self._print(err, epoch)
                else:
                    yield int(self.timing.load_tensor_ns())
            elif isinstance(op, Infer):
                self._set_state(DutState.INFER)
                self.engine.invoke(op.count)
                yield int(round(self.timing.inference_ns(op.count)))
                self._set_state(DutState.BUSY)
            elif isinstance(op, Results):
                yield from self._print(self.core.results_line(self.engine.results_text()), epoch)
            elif isinstance(op, Hang):
                self.hung = True
                self._set_state(DutState.BUSY)
                return
