"""The express lane of the commonest command: one ``db HH..%`` chunk from the
host while the DUT bench is idle.

An accuracy run is mostly this command (an ad01 run sends about four million
of them), and on the twin's direct path each one walks the layers it crosses
on the board: the twin's arrival-time arithmetic, the USB bridge, its UART,
the DUT's UART, the DUT's receive logic and command runner, the protocol
core, the DUT's UART again for ``m-ready``, the bridge, the host port. Each
layer keeps its own checks and bookkeeping; together they cost more CPU than
the pty's system calls do. :class:`DbExpress` is the same walk fused into
one function for one case, with every layer's arithmetic kept as it is
written there:

* the arrival (:meth:`emulator.sim.Twin.inject_at`, which calls the lane);
* the transfer over the bridge's UART to the DUT's
  (:meth:`emulator.hw.uart.SerialEndpoint.send_now`, one segment, timed by
  the UART's own :meth:`~emulator.hw.uart.SerialEndpoint.line_times`);
* the protocol core's decision (:meth:`emulator.dut.core.DutCore.db_chunk`,
  the very method :meth:`~emulator.dut.core.DutCore.step` uses);
* the DUT's command time and its prints back over the UARTs
  (:meth:`emulator.dut.device.Dut._run_now`);
* the twin idle again (:meth:`emulator.sim.Twin.idle_again`).

One thing differs from the layers, where nothing can see it: when the host
is behind a file descriptor (a pty, a socket: a process that sees the bytes
and their order, never the simulated clock) and nothing watches the wire in
between (no hook on its port, no tap on either UART), the answer is written
first and the arithmetic follows, so that the host's next command waits for
the kernel rather than for this bookkeeping (over a pty, the time from the
command's arrival to the answer's write went from about 16 to 14 µs).

It applies only where the direct path would carry the command out at once
and nothing could observe the layers in between: fast mode, the direct path
allowed (:attr:`~emulator.sim.Twin.allow_direct`, and
:attr:`~emulator.sim.Twin.allow_express`), nothing scheduled, every host
port's hook passive (a tap that only counts and traces, as on every port of
``tinytwin rig`` and ``external``), one host port on the bridge, the same baud
on the host, the bridge and the DUT, the DUT idle with no listener on its
state, no partial command in the core. Otherwise, or when the core does not
take the bytes at once (not hex, past the buffer, ...), it returns ``False``
having changed nothing, and the layers do the work.

``tests/test_direct_path.py`` holds it to the stepped path (every transfer a
SimPy event): the same bytes to the host at the same simulated times, the
same UART counters, taps and DUT state, for random streams, bauds and
timings; and, for a host behind a socket without taps, the same bytes and
the same state after every piece of the stream.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .core import DutState

if TYPE_CHECKING:  # pragma: no cover
    from ..hw.usb_bridge import HostBridge
    from ..transport.base import HostPort
    from .device import Dut

_IDLE = DutState.IDLE


class DbExpress:
    """The express lane for ``db`` chunks from the host ports of ``bridge``
    to ``dut`` (see the module docstring). A :class:`HostBridge` with one
    hands it to the ports it attaches (``port.express``); the twin calls it
    with each read from such a port before the layers see it."""

    def __init__(self, bridge: "HostBridge", dut: "Dut"):
        if bridge.device is not dut.uart or bridge.endpoint.peer is not dut.uart:
            raise ValueError(f"{bridge.name}: the bridge is not wired to {dut.name}'s UART")
        self.bridge = bridge
        self.dut = dut
        self.twin = dut.twin
        # the receivers the layers were wired with (the lane stands in for them)
        self._dut_rx = dut.uart.receiver
        self._bridge_rx = bridge.endpoint.receiver
        self._bridge_sync = bridge.endpoint.before_rx
        #: how many chunks took the express lane (for tests and benchmarks)
        self.taken = 0

    def __call__(self, port: "HostPort", data: bytes, at: int) -> bool:
        """Carry out ``data`` (from ``port``, arriving at simulated time
        ``at``, not before now) if it is one ``db`` chunk the lane applies
        to; ``False``, having changed nothing, otherwise."""
        twin = self.twin
        env = twin.env
        if env._queue or not twin._fast or not twin.allow_direct or not twin.allow_express:
            return False
        hook = port.hook  # (a passive tap only counts and traces; anything armed steps aside)
        if hook is not None and not hook.passive():
            return False
        dut = self.dut
        core = dut._core
        if dut._cpu_busy or core is None or core.rx or dut.state_listeners or dut.hung:
            return False
        bridge = self.bridge
        ports = bridge.ports
        if len(ports) != 1 or ports[0] is not port or port.closed:
            return False
        ep = bridge.endpoint
        uart = dut.uart
        if ep.per_byte or uart.per_byte or uart.before_rx is not None:
            return False
        if (ep.peer is not uart or uart.peer is not ep or uart.receiver is not self._dut_rx
                or ep.receiver is not self._bridge_rx or ep.before_rx is not self._bridge_sync
                or not ep.instant_receiver):
            return False
        if len(twin.ports) + len(twin._fdless) != 1 and not twin._hooks_passive():
            return False
        baud = uart.baud
        if ep.baud != baud:
            return False
        if bridge.honour_host_baud:
            host_baud = port.host_baud()
            if host_baud and host_baud != baud:
                return False
        ops = core.db_chunk(data)  # the first change of state: from here on, the lane carries the command out
        if ops is None:
            return False
        self.taken += 1
        # A host behind an fd (a pty, a socket: a process that sees the
        # bytes and their order, never the simulated clock) with nothing
        # watching the wire in between (no hook on its port, no tap on either
        # UART): it gets its answer first and the bookkeeping follows, so its
        # next command waits for the kernel, not for this arithmetic.
        watched = port.fd is None or hook is not None or ep.tap is not None or uart.tap is not None
        if not watched:
            for op in ops:
                port.write_to_host(op.text)

        # Twin.inject_at: the clock moves to the arrival; the port's tap sees the bytes
        now = env._now
        if at > now:
            env._now = now = at
        port.rx_count += len(data)
        if hook is not None:
            hook.from_host(port, data)  # (passive: the bytes go on unchanged, and it sets nothing off)

        # SerialEndpoint.send_now, bridge -> DUT: one segment, at its last stop bit
        n = len(data)
        _, done_ns, t = ep.line_times(n, now)
        ep._tx_free_at = done_ns
        ep.tx_bytes += n
        if ep.tap is not None:
            ep.tap("tx", bytes(data), now)
        uart.rx_bytes += n
        if uart.tap is not None:
            env._now = t
            uart.tap("rx", data, t)

        # Dut._run_now: the command's time, then each print, blocking until
        # its last character has left the shift register
        dut.commands += 1
        t += int(dut.timing.command_ns)
        line_times = uart.line_times
        for op in ops:
            text = op.text
            k = len(text)
            _, end, arrival = line_times(k, t)
            uart._tx_free_at = end
            uart.tx_bytes += k
            if uart.tap is not None:
                env._now = t
                uart.tap("tx", text, t)
            env._now = t = arrival  # the host has the line at its last stop bit
            ep.rx_bytes += k
            if watched:
                if ep.tap is not None:
                    ep.tap("rx", text, t)
                port.write_to_host(text)
            if t < end:  # (rounding tie: the line stays busy until the stop bit's end)
                t = end
        if t < done_ns:
            t = done_ns
        env._now = t
        dut.state = _IDLE  # (BUSY and back, with nobody listening)
        # Dut._after_command's RxRegister.resume(): the CPU reads its UART again
        # from now (it was polling before, and nothing came meanwhile)
        rx = dut._rx
        rx.changed_at = t
        rx.held_when_resumed = False

        # inject_at: idle again, now, as a busy period's end does
        if t != now and twin._busy == 0:
            twin.idle_again()
        return True
