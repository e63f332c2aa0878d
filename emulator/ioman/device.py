"""The IO managers as devices on the twin's clock.

A protocol core (:mod:`emulator.ioman.arduino`, :mod:`emulator.ioman.h573`, actions in
:mod:`emulator.ioman.actions`)
is a pure state machine. Bytes are handed to it with ``feed_host()`` /
``feed_dut()`` (they land in the board's receive buffers, which are bounded
as on the board); :meth:`step` then does the next piece of work the firmware
would do and returns it as a list of :data:`Action` s, or ``None`` when the
firmware has nothing to do until more bytes (or a timestamp edge) arrive.

:class:`IoManagerDevice` runs a core in simulated time: it transmits towards
the host over a 115200-baud UART (the board's USB-serial bridge is a
:class:`emulator.transport.HostBridge` attached by the rig) and towards the
DUT over a UART at the baud the board believes the DUT uses, waiting for
transmissions as the firmware does (blocking HAL transmits on the H573,
Arduino ring buffers that only block when full).
"""
from __future__ import annotations

from typing import Iterable

from ..core import Hang
from ..hw.gpio import Pin
from ..hw.uart import SerialEndpoint
from ..sim import US, Twin
from .arduino import DUT_TX_BUFFER, HOST_TX_BUFFER, ArduinoIoCore
from .h573 import BOOT_US, H573IoCore, PlayWave
from .actions import DUT_BAUD, HOST_BAUD, AwaitDut, Pulse, Restart, SetDutBaud, ToDut, ToHost

# --------------------------------------------------------------------------
# the device


class IoManagerDevice:
    """An IO manager board in the twin.

    ``core`` is the firmware's protocol core; ``host_tx_buffer`` /
    ``dut_tx_buffer`` are how many characters the firmware can queue for
    transmission before a print blocks (0: every transmit blocks until the
    last character has left, as ``HAL_UART_Transmit`` does).
    """

    def __init__(
        self,
        twin: Twin,
        core,
        *,
        name: str = "io",
        host_tx_buffer: int = 0,
        dut_tx_buffer: int = 0,
        boot_us: float = 0.0,
        pins: Iterable[str] = (),
    ):
        self.twin = twin
        self.env = twin.env
        self.core = core
        self.name = name
        self.host_tx_buffer = host_tx_buffer
        self.dut_tx_buffer = dut_tx_buffer
        self.boot_us = boot_us
        self.host_uart = SerialEndpoint(twin, f"{name}.host", HOST_BAUD, receiver=self._on_host)
        self.dut_uart = SerialEndpoint(twin, f"{name}.dut", DUT_BAUD, receiver=self._on_dut)
        # The firmware takes characters one at a time as they arrive; its
        # receive buffers only fill up while it is busy. Deliver every
        # character at its own arrival time so those bounds mean what they
        # mean on the board.
        self.host_uart.per_byte = True
        self.dut_uart.per_byte = True
        #: output pins the firmware drives (name -> Pin)
        self.pins: dict[str, Pin] = {p: Pin(twin, f"{name}.{p}", level=1) for p in pins}
        self.running = False  # executing firmware (not booting, not hung)
        self.hung = False
        self.powered = False
        self.boots = 0
        self._epoch = 0
        self._wake = None
        self._boot_at = 0

    # -- wiring ------------------------------------------------------------------
    def connect_dut(self, dut_endpoint: SerialEndpoint) -> None:
        """Wire the board's DUT-side UART to the DUT's UART (TX<->RX)."""
        from ..hw.uart import connect

        connect(self.dut_uart, dut_endpoint)

    def micros(self) -> int:
        """µs since this board's firmware started (32-bit)."""
        return int((self.twin.now - self._boot_at) // US) & 0xFFFFFFFF

    # -- power ---------------------------------------------------------------------
    def power_on(self) -> None:
        """USB power arrives: the board boots."""
        if self.powered:
            return
        self.powered = True
        self._start(self.boot_us, reason="power-on")

    def power_cycle(self) -> None:
        """Unplug and replug the board (the way out of a hang)."""
        self.powered = False
        self.power_on()

    def power_off(self) -> None:
        """USB unplugged: the board stops (RAM lost; the H573's flash kept)."""
        self.powered = False
        self._epoch += 1
        self.running = False

    def hang(self, reason: str = "hung on demand") -> None:
        """The firmware stops answering until the board is power-cycled."""
        if self.powered and not self.hung:
            self._do_hang(reason)

    def _do_hang(self, reason: str) -> None:
        self.twin.log(f"{self.name}: the firmware stopped ({reason}); power-cycle it")
        self._epoch += 1
        self.running = False
        self.hung = True

    def _start(self, boot_us: float, reason: str) -> None:
        self._epoch += 1
        self.running = False
        self.hung = False
        self.core.reset()
        self.env.process(self._main(self._epoch, boot_us))

    # -- bytes in --------------------------------------------------------------------
    def _on_host(self, data: bytes) -> None:
        if not self.running:
            return  # booting or hung: the UART is not yet (or no longer) serviced
        self.core.feed_host(data)
        self._kick()

    def _on_dut(self, data: bytes) -> None:
        if not self.running:
            return
        self.core.feed_dut(data)
        self._kick()

    def _kick(self) -> None:
        ev, self._wake = self._wake, None
        if ev is not None and not ev.triggered:
            ev.succeed()

    # -- the firmware ------------------------------------------------------------------
    def _main(self, epoch: int, boot_us: float):
        twin = self.twin
        with twin.busy():
            if boot_us > 0:
                yield self.env.timeout(int(round(boot_us * US)))
        if epoch != self._epoch:
            return
        self._boot_at = twin.now
        self.boots += 1
        self.running = True
        for act in self.core.boot():
            yield from self._do(act, epoch)
            if epoch != self._epoch:
                return
        while epoch == self._epoch and self.running:
            actions = self.core.step()
            if actions is None:
                self._wake = self.env.event()
                yield self._wake
                continue
            for act in actions:
                yield from self._do(act, epoch)
                if epoch != self._epoch or not self.running:
                    return

    def _tx(self, uart: SerialEndpoint, data: bytes, buffered: int):
        if not data:
            return
        done = uart.send(data)
        if buffered <= 0:
            yield done
            return
        # the ring buffer holds `buffered` characters: the print returns once
        # everything but those has been shifted out
        wait = uart.tx_idle_at() - buffered * uart.char_time_ns - self.twin.now
        if wait > 0:
            yield self.env.timeout(int(round(wait)))

    def _do(self, act, epoch: int):
        if isinstance(act, ToHost):
            yield from self._tx(self.host_uart, act.data, self.host_tx_buffer)
        elif isinstance(act, ToDut):
            yield from self._tx(self.dut_uart, act.data, self.dut_tx_buffer)
        elif isinstance(act, SetDutBaud):
            self.dut_uart.baud = int(act.baud)
        elif isinstance(act, AwaitDut):
            pass  # the core waits; step() returns None until DUT bytes come
        elif isinstance(act, Pulse):
            pin = self.pins.get(act.pin)
            with self.twin.busy():
                if pin is not None:
                    pin.set(0)
                yield self.env.timeout(int(round(act.us * US)))
                if pin is not None:
                    pin.set(1)
        elif isinstance(act, Restart):
            self.twin.log(f"{self.name}: restarting ({act.reason})")
            self._start(act.boot_us, reason=act.reason)
        elif isinstance(act, Hang):
            self._do_hang(act.reason)


__all__ = ["IoManagerDevice", "ArduinoIoManager", "H573IoManager"]


class ArduinoIoManager(IoManagerDevice):
    """The UNO io-manager as a device: host UART at 115200, DUT UART at 9600,
    D3 as the timestamp input, D4 as the ``tp`` output."""

    def __init__(self, twin: Twin, *, name: str = "io", powered: bool = True, boot_ms: float = 0.0):
        core = ArduinoIoCore()
        super().__init__(
            twin,
            core,
            name=name,
            host_tx_buffer=HOST_TX_BUFFER,
            dut_tx_buffer=DUT_TX_BUFFER,
            boot_us=boot_ms * 1000.0,
            pins=("D4",),
        )
        core.clock_us = self.micros
        self.timestamp_pins: list[Pin] = []
        if powered:
            self.power_on()

    def attach_timestamp(self, pin: Pin) -> None:
        """Wire ``pin`` (the DUT's timestamp GPIO) to D3."""
        self.timestamp_pins.append(pin)
        pin.listeners.append(self._on_edge)

    def _on_edge(self, level: int, t_ns: int) -> None:
        if not self.running:
            return
        micros = self.micros() & ~3  # the UNO's micros() counts in 4 µs steps
        if self.core.timestamp_edge(level, micros):
            self._kick()


#: ``play``: from the player task's start to the first audio sample on the
#: I2S wires (FileX opens the file, the header is read, the SAI configured,
#: the first 8 KiB read, the DMA started). An estimate: ST's published
#: NUCLEO-L4R5ZI-P performance run (tiny_results_v1.3, sww/performance/
#: results.json) has its first frame start 67.96 ms after record_detections;
#: minus the 32 ms the first frame lasts and ~11 ms of command and answer
#: bytes at 115200 baud, about 25 ms remain for this.
PLAY_START_US = 25_000.0
#: ``play`` of a missing or invalid file: the failed open / header read
PLAY_FAIL_US = 2_000.0
#: from the end of the last played half to the SAI stopping (the refill read
#: at end of file returns at once, then HAL_SAI_DMAStop)
PLAY_STOP_US = 10.0


class H573IoManager(IoManagerDevice):
    """The STM32H573I-DK interface board as a device. Its DUT UART starts at
    the baud kept in (simulated) flash; ``setbaud`` changes it for good.

    ``card`` is its microSD card (:class:`emulator.hw.sdcard.SdCard`; default:
    no file); ``i2s`` the I2S wires its SAI drives (``play``), if any.
    """

    def __init__(self, twin: Twin, *, name: str = "io", flash_baud: int | None = None, powered: bool = True,
                 card=None, i2s=None, audio_clock_ppm: float = 0.0):
        core = H573IoCore(flash_baud=flash_baud, audio_clock_ppm=float(audio_clock_ppm))
        if card is not None:
            core.card = card
        super().__init__(twin, core, name=name, host_tx_buffer=0, dut_tx_buffer=0, boot_us=BOOT_US)
        core.clock_10us = lambda: self.micros() // 10
        self.i2s = i2s
        self.plays: list[dict] = []  # what play did: name, pairs, rate, start/end (ns), error
        if powered:
            self.power_on()

    def _do(self, act, epoch: int):
        if isinstance(act, PlayWave):
            yield from self._play(act, epoch)
        else:
            yield from super()._do(act, epoch)

    def _play(self, act: PlayWave, epoch: int):
        """The player task, while the menu thread waits for it."""
        env = self.env
        rec = {"name": act.name.decode("latin-1"), "error": act.why, "requested_ns": self.twin.now}
        self.plays.append(rec)
        with self.twin.busy():
            if act.stream is None:
                yield env.timeout(int(round(PLAY_FAIL_US * US)))
                return
            stream = act.stream
            yield env.timeout(int(round(PLAY_START_US * US)))
            if epoch != self._epoch:
                stream.close()
                return
            link = self.i2s
            rec.update({"start_ns": self.twin.now, "pairs": stream.pairs, "rate_hz": stream.rate_hz})
            duration = int(round(stream.pairs * 1e9 / stream.rate_hz))
            if link is not None:
                link.start(stream, stream.rate_hz)
            # the SAI clocks the buffer out while this task refills it; the
            # twin reads the file as the receiver takes the pairs
            yield env.timeout(duration + int(round(PLAY_STOP_US * US)))
            if link is not None and link.stream is stream:
                link.stop()
            rec["end_ns"] = self.twin.now

    def attach_ww_detection(self, pin: Pin) -> None:
        """Wire ``pin`` to WW_DET_IN (falling edges are detections)."""
        pin.listeners.append(lambda level, t: self.running and level == 0 and self.core.ww_detection_edge())

    def attach_dutycycle(self, pin: Pin) -> None:
        """Wire ``pin`` to DUT_DUTY_CYCLE (rising = start, falling = stop)."""
        pin.listeners.append(lambda level, t: self.running and self.core.dutycycle_edge(level))
