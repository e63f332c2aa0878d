"""The sww01 DUT (NUCLEO-L4R5ZI with the streaming-wakeword reference firmware)
as a device on the twin's one clock.

It carries out what the pure core (:class:`emulator.dut.sww01.core.Sww01Core`)
decides, taking the time the board takes:

* **UART** (LPUART1) at the firmware's 115200 baud: ``printf`` sends byte by
  byte and blocks until each is out; the main loop polls for one byte at a
  time, so bytes that arrive while it is not polling (a command running, a
  frame being processed) overrun the one-byte receive register: the first is
  kept, the rest are lost;
* **SAI + DMA** (:class:`emulator.hw.i2s.SaiReceiver`) on the I2S wires from the
  interface board: a transfer of 512 stereo pairs (32 ms at 16 kHz) completes,
  the DMA interrupt preempts the main loop (at its next action boundary; a
  print between two of its bytes) and processes the frame: Processing
  (PE9) high, re-arm, feature extraction, quantisation, model, the detection
  pulse on WW_DETECTED (PB8), Processing low. Frames completing while one is
  processed wait (same interrupt priority); one processed in over 32 ms makes
  the next re-arm late and the SAI FIFO overruns;
* **GPIO**: WW_DETECTED, Processing and the timestamp pin (PF13 = Arduino D7,
  read by the energy monitor). ``th_delay_us(1)`` waits for the next tick of
  TIM16 (1 µs, 16 bits, started at boot);
* **time** from a named profile (:mod:`emulator.dut.sww01.timing`): the frame's
  extraction, inference and the rest of the interrupt, memsets, the HAL's DMA
  calls, ``HAL_SAI_DMAStop`` spinning 4 ms (and reporting HAL_ERROR to
  ``state``) when the interface has stopped the bit clock;
* **power**: state changes (``off``, ``boot``, ``idle`` = the main loop
  busy-polling, ``busy`` = a command, the profile's processing state during a
  frame (``infer``), ``tx`` = blocked in a print) go to :attr:`state_listeners`
  for the energy monitor's power model (:class:`Sww01Power`).

Unpowered, its pins float and the interface board's pull-ups read them high.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable

from ...core import Hang
from ...hw.gpio import Pin
from ...hw.i2s import I2sLink, SaiReceiver
from ...hw.uart import RxRegister, SerialEndpoint
from ...sim import US, Twin
from ..core import DutState
from . import core as C
from .features import STRIDE, FeatureExtractor
from .timing import Sww01Timing

TIM16_TICK_NS = 1000  # prescaler 120-1 at 120 MHz: 1 µs


@dataclass(frozen=True)
class FirmwareId:
    """What the benches print about the DUT (the EEMBC DUT's ``profile``)."""

    name: str
    baud: int


class Sww01Dut:
    def __init__(
        self,
        twin: Twin,
        engine,
        timing: Sww01Timing | None = None,
        *,
        link: I2sLink | None = None,
        fixed: C.FixedData | None = None,
        baud: int | None = None,
        powered: bool = True,
        name: str = "dut",
    ):
        self.twin = twin
        self.env = twin.env
        self.engine = engine
        self.timing = timing if timing is not None else Sww01Timing.load()
        self.fixed = fixed if fixed is not None else C.FixedData()
        self.name = name
        self.profile = FirmwareId(C.MODEL_VERSION, baud or self.timing.baud)
        self.energy_mode = True  # one firmware for every mode; D7 is always driven
        rate = baud or self.timing.baud
        # printf's per-byte HAL_UART_Transmit leaves the line idle between bytes
        self.uart = SerialEndpoint(twin, f"{name}.uart", rate, split_after=b"%", receiver=self._on_rx,
                                   bits_per_char=10 + self.timing.putchar_gap_us * rate / 1e6)
        #: the UART's receive register (what comes while the main loop is not polling)
        self._rx = RxRegister(self.uart)
        self.pins = {p: Pin(twin, f"{name}.{p.value}", level=1) for p in C.Pin}
        self.ww_pin = self.pins[C.Pin.WW_DETECTED]
        self.processing_pin = self.pins[C.Pin.PROCESSING]
        self.timestamp_pin = self.pins[C.Pin.TIMESTAMP]
        self.link = link if link is not None else I2sLink(twin, f"{name}.i2s")
        self.sai = SaiReceiver(twin, self.link, self._on_dma_complete)
        self.state = DutState.OFF
        self.state_listeners: list[Callable[[DutState, int], None]] = []
        self.powered = False
        self.hung = False
        self.commands = 0
        self.frames = 0  # frames processed by the interrupt
        self.frames_dropped = 0  # transfers completing with no DMA armed in the firmware
        self._core: C.Sww01Core | None = None
        self._epoch = 0
        self._timer_start = 0
        self._irq: deque[bytes] = deque()
        self._main: deque | None = None  # the rest of the main-loop unit being executed
        self._cpu_running = False
        self._marks: list[int] = []
        if powered:
            self.power_on()

    # -- observable ---------------------------------------------------------------------
    @property
    def core(self) -> C.Sww01Core:
        assert self._core is not None, "the DUT is not powered"
        return self._core

    def _set_state(self, state: DutState) -> None:
        if state != self.state:
            self.state = state
            t = self.twin.now
            for fn in list(self.state_listeners):
                fn(state, t)

    def tim16(self) -> int:
        """TIM16's counter: µs since it was started at boot, 16 bits."""
        return ((self.twin.now - self._timer_start) // TIM16_TICK_NS) & 0xFFFF

    # -- power ------------------------------------------------------------------------------
    def power_on(self) -> None:
        if self.powered:
            return
        self.powered = True
        self.hung = False
        self._epoch += 1
        self._core = C.Sww01Core(engine=self.engine, fixed=self.fixed, extractor=FeatureExtractor())
        self._rx.clear(polling=False)
        self._irq.clear()
        self._main = None
        self._cpu_running = True
        self.env.process(self._boot(self._epoch))

    def power_off(self) -> None:
        if not self.powered:
            return
        self.powered = False
        self._epoch += 1
        self._core = None
        self._irq.clear()
        self._main = None
        self._cpu_running = False
        self._rx.clear(polling=False)
        self.sai.disable()
        for pin in self.pins.values():
            pin.set(1)  # floating: the interface board's pull-ups
        self._set_state(DutState.OFF)

    def reset(self) -> None:
        self.power_off()
        self.power_on()

    def _boot(self, epoch: int):
        with self.twin.busy():
            self._set_state(DutState.BOOT)
            acts = self.core.boot()
            # MX_GPIO_Init sets the pins early; the timestamp pulse comes after
            # the rest of the hardware set-up and TIM16's start
            for a in acts:
                if isinstance(a, C.SetPin):
                    self.pins[a.pin].set(a.level)
            yield self.env.timeout(int(round(self.timing.boot_us * US)))
            if epoch != self._epoch:
                return
            self._timer_start = self.twin.now
            for a in acts:
                if not isinstance(a, C.SetPin):
                    yield from self._exec(a, epoch, isr=False)
        if epoch == self._epoch:
            self._cpu_running = False
            self._idle()

    # -- inputs ----------------------------------------------------------------------------------
    @property
    def overrun_lost(self) -> int:
        """Bytes lost to overruns of the UART's receive register."""
        return self._rx.lost

    def _on_rx(self, data: bytes) -> None:
        if not self.powered or self.hung or not data:
            return
        # what the main loop's poll read of it: all while it polls; else what
        # came before it stopped, the register keeping the next byte and the
        # rest overrunning
        data = self._rx.receive(data)
        if data:
            self.core.feed(data)
            self._wake()

    def _on_dma_complete(self, data: bytes) -> None:
        if not self.powered or self.hung:
            return
        self._irq.append(data)
        self._wake()

    def _wake(self) -> None:
        if not self._cpu_running and self.powered and not self.hung:
            self._cpu_running = True
            self._rx.stop()
            self.env.process(self._cpu(self._epoch))

    def _idle(self) -> None:
        """Back in the main loop's UART poll: a byte held in the receive
        register is read first."""
        held = self._rx.resume()
        self._set_state(DutState.IDLE)
        if held is not None:
            self.core.feed(bytes([held]))
            self._wake()
        elif self._irq:
            self._wake()

    # -- the CPU -----------------------------------------------------------------------------------
    def _cpu(self, epoch: int):
        """Serve interrupts and the main loop until there is nothing to do."""
        with self.twin.busy():
            while epoch == self._epoch and not self.hung:
                if self._irq:
                    yield from self._interrupt(epoch)
                    continue
                if self._main:
                    act = self._main.popleft()
                    yield from self._exec(act, epoch, isr=False)
                    if not self._main:
                        self._main = None
                    continue
                acts = self.core.step()
                if acts is None:
                    break
                self.commands += sum(1 for a in acts if isinstance(a, C.Print) and a.text.startswith(b"Received command: "))
                self._set_state(DutState.BUSY)
                yield self.env.timeout(int(round(self.timing.command_us * US)))
                self._main = deque(acts)
        if epoch == self._epoch and not self.hung:
            self._cpu_running = False
            self._idle()

    def _interrupt(self, epoch: int):
        """``HAL_SAI_RxCpltCallback`` for one completed transfer."""
        frame = self._irq.popleft()
        core = self.core
        if core.sai_state != C.SAI_STATE_BUSY_RX:
            self.frames_dropped += 1  # nothing armed in the firmware (stopped meanwhile)
            return
        self._set_state(DutState(self.timing.processing_state))
        core.feed_audio(frame)
        acts = core.step() or []
        for act in acts:
            yield from self._exec(act, epoch, isr=True)
            if epoch != self._epoch or self.hung:
                return
        self.frames += 1
        self._set_state(DutState.BUSY if self._main else DutState.IDLE)

    # -- actions -----------------------------------------------------------------------------------
    def _bytes_before_interrupt(self, n: int) -> int:
        """Of a print of ``n`` bytes starting now, how many the main loop
        hands to the UART before the open DMA transfer's interrupt (all if
        none comes during it; at least one)."""
        at = self.sai.completion_at()
        if at is None:
            return n
        uart = self.uart
        start = uart.tx_idle_at()
        c = uart.char_time_ns
        if start + n * c <= at:
            return n
        return min(n, max(1, math.ceil((at - start) / c)))

    def _delay_1us(self, epoch: int):
        """``th_delay_us(1)``: until TIM16 passes its value at the call."""
        start = self.tim16()
        if start == 0xFFFF and self.timing.delay_hang:
            self.hung = True
            self.twin.log(f"{self.name}: th_delay_us(1) started at TIM16 = 65535 and never returns; power-cycle the DUT")
            return
        wait = TIM16_TICK_NS - (self.twin.now - self._timer_start) % TIM16_TICK_NS
        yield self.env.timeout(int(wait))

    def _exec(self, act, epoch: int, *, isr: bool):
        env = self.env
        t = self.timing
        if isinstance(act, C.Print):
            if not act.text:
                return
            prev = self.state
            self._set_state(DutState.TX)
            text = act.text
            while text:
                # the main loop prints byte by byte and the DMA's interrupt
                # preempts it between two bytes; an interrupt's own prints are
                # not preempted (one priority)
                k = len(text) if isr else self._bytes_before_interrupt(len(text))
                yield self.uart.send(text[:k])
                text = text[k:]
                if not text or epoch != self._epoch or self.hung:
                    break
                while self._irq and epoch == self._epoch and not self.hung:
                    yield from self._interrupt(epoch)
                self._set_state(DutState.TX)
            if epoch == self._epoch:
                self._set_state(prev)
        elif isinstance(act, C.SetPin):
            self.pins[act.pin].set(act.level)
        elif isinstance(act, C.Pulse):
            pin = self.pins[act.pin]
            pin.set(0)
            yield from self._delay_1us(epoch)
            if epoch == self._epoch and not self.hung:
                pin.set(1)
        elif isinstance(act, C.DelayUs):
            for _ in range(max(1, act.us)):
                yield from self._delay_1us(epoch)
        elif isinstance(act, C.ArmDma):
            yield env.timeout(int(round(t.dma_call_us * US)))
            if epoch == self._epoch and self.core.sai_state == C.SAI_STATE_BUSY_RX:
                self.sai.arm(STRIDE)
        elif isinstance(act, C.StopDma):
            yield env.timeout(int(round(t.dma_call_us * US)))
            if self.link.clocking:
                # SAIEN clears at the end of the frame being received
                now = self.twin.now
                k = self.link.received_by(now)
                yield env.timeout(max(0, self.link.pair_end(k) - now))
            else:
                # no bit clock: SAI_Disable spins until its timeout, HAL_ERROR
                yield env.timeout(int(round(t.dma_stop_timeout_us * US)))
                if epoch == self._epoch:
                    self.core.i2s_status = C.HAL_ERROR
            self.sai.disable()
        elif isinstance(act, C.MemOp):
            yield env.timeout(int(round(act.nbytes / t.memory_bytes_per_us * US)))
        elif isinstance(act, C.Extract):
            yield env.timeout(int(round(t.extract_us * US)))
        elif isinstance(act, C.Invoke):
            us = t.invoke_us + (t.overhead_us if isr else 0.0)
            yield env.timeout(int(round(us * US)))
        elif isinstance(act, C.Tim16Mark):
            self._marks.append(self.tim16())
        elif isinstance(act, C.PrintTim16):
            yield from self._exec(C.Print(C.tim16_line(act.kind, self._marks[-2], self._marks[-1])), epoch, isr=isr)
        elif isinstance(act, Hang):
            self.hung = True
            self.twin.log(f"{self.name}: the firmware stopped ({act.reason}); power-cycle it")
        else:  # pragma: no cover - a new action the device does not know
            raise TypeError(f"the sww01 device cannot carry out {act!r}")


class Sww01Power:
    """The power the energy monitor integrates for a sww01 DUT: the board's
    power model (:class:`emulator.power.model.PowerModel`, physics fitted on the
    reference traces, no per-model term) by CPU state, plus the profile's
    current of the peripherals this firmware keeps running (0 unless a
    profile sets it)."""

    def __init__(self, model, timing: Sww01Timing):
        self.model = model
        self.timing = timing
        self.name = f"{getattr(model, 'name', 'power')}+{timing.name}"

    def power_w(self, state, voltage_v: float, clock_mhz: float = 120.0) -> float:
        p = self.model.power_w(state, voltage_v, clock_mhz)
        if str(state) != "off" and self.timing.peripherals_ua:
            p += voltage_v * self.timing.peripherals_ua * 1e-6
        return p

    def __getattr__(self, name):
        return getattr(self.model, name)
