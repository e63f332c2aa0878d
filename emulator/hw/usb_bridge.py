"""The board's USB-serial bridge (the ST-LINK virtual COM port on a NUCLEO,
the USB-serial chip of an Arduino): :class:`HostBridge` joins the host ports
to a device's UART, at the baud the host configured."""
from __future__ import annotations

import functools

from ..sim import Twin
from ..transport.base import HostPort
from .uart import SerialEndpoint, connect


class HostBridge:
    """The USB-serial bridge between host ports and a device's UART.

    It transmits what the host sends at the host's configured baud (when the
    transport knows it; otherwise at the device's baud) and receives what the
    device sends at that same baud, so a baud mismatch garbles both ways.
    """

    def __init__(self, twin: Twin, device: SerialEndpoint, name: str, *, honour_host_baud: bool = True):
        self.twin = twin
        self.device = device
        self.name = name
        self.honour_host_baud = honour_host_baud
        self.endpoint = SerialEndpoint(twin, f"{name}.bridge", device.baud, receiver=self._to_host)
        self.endpoint.instant_receiver = True  # it only writes to the host ports
        connect(self.endpoint, device)
        self.endpoint.before_rx = self._sync_rx_baud
        self.ports: list[HostPort] = []
        self._warned_baud: int | None = None
        #: the device's express lane for its commonest command, handed to
        #: the ports attached from now on (see :attr:`HostPort.express`);
        #: the bench that wires the device sets it
        self.express = None

    def attach(self, port: HostPort) -> HostPort:
        port.on_host_bytes = functools.partial(self._from_host, port)
        port.express = self.express
        self.ports.append(port)
        self.twin.add_port(port)
        return port

    def _sync_baud(self, port: HostPort) -> None:
        baud = (port.host_baud() if self.honour_host_baud else None) or self.device.baud
        if baud == self.endpoint.baud == self.device.baud:
            return
        if baud != self.endpoint.baud:
            self.endpoint.baud = baud
        if baud != self.device.baud and self._warned_baud != baud:
            self._warned_baud = baud
            self.twin.log(
                f"{self.name}: the host set {baud} baud but the device runs at {self.device.baud}: "
                "bytes are garbled as on a real UART (open the port at the device's baud)"
            )

    def _sync_rx_baud(self) -> None:
        # the most recently attached host end that is still there
        ports = self.ports
        if ports and not ports[-1].closed:
            self._sync_baud(ports[-1])
            return
        for p in reversed(ports):
            if not p.closed:
                self._sync_baud(p)
                return

    def _from_host(self, port: HostPort, data: bytes) -> None:
        self._sync_baud(port)
        if self.endpoint.send_now(data) is None:
            self.endpoint.send(data)

    def _to_host(self, data: bytes) -> None:
        ports = self.ports
        if len(ports) == 1 and not ports[0].closed:
            ports[0].write_to_host(data)
            return
        for p in ports:
            if p.closed:
                ports = self.ports = [p for p in ports if not p.closed]
                break
        for p in ports:
            p.write_to_host(data)
