"""The Joulescope JS220 as the host's driver sees it, as a protocol core.

The twin's JS220 reaches the host through a stand-in for Jetperch's
``pyjoulescope_driver`` (``emulator/benches/inject/pyjoulescope_driver``),
which the real ``joulescope`` package (``joulescope.v1``) drives exactly as it
drives the real driver. The stand-in talks to the instrument over a local
socket in JSON lines; this core is the instrument's side of that link: bytes
in with :meth:`Js220Core.feed`, :data:`Action` s out of :meth:`Js220Core.step`
(no clock, no I/O).

What crosses the socket (one JSON object per line; this is the twin's own
link, standing where the JS220's USB bulk endpoints are):

host to instrument::

    {"op": "open", "mode": null}          the driver opens the device
    {"op": "close"}                       ... closes it
    {"op": "publish", "topic": T, "value": V, "id": N}
                                          a device topic (``s/i/ctrl``, ...)

instrument to host::

    {"op": "rc", "topic": T, "rc": 0, "id": N[, "retained": {...}]}
                                          the return code (open: with the
                                          retained values ``c/fw/version``,
                                          ``c/hw/version``, ``s/fpga/version``)
    {"op": "publish", "topic": "s/gpi/+/!value", "value": BITS}
                                          the GPI levels now, the answer to a
                                          publish of ``s/gpi/+/!req`` (what
                                          ``joulescope``'s ``extio_status()``
                                          asks for)
    {"op": "data", "k0": K0, "k1": K1, "i": [[s, A], ...], "v": [[s, V], ...],
     "gpi": [[s, bits], ...]}             the signals over sample ids K0..K1
                                          (2 Msps counts since power-up) as
                                          breakpoints of piecewise-constant
                                          current and voltage and GPI edges
                                          (bit 0: GPI0, bit 1: GPI1); the
                                          first breakpoint gives the level at
                                          K0. The stand-in turns them into the
                                          sample arrays the real driver
                                          publishes on ``s/i/!data`` ...

Host-side topics of the real driver (``h/fs``: the output sampling
frequency) stay in the stand-in, as they stay in ``js220_usb.c``.

Streaming: a stream topic's ``ctrl`` set to 1 turns it on
(``s/i/ctrl`` ... ``s/gpi/1/ctrl``); the instrument sends data while any is
on and the device is open. Values the JS220 keeps and the driver retains:
the firmware, hardware and FPGA versions (u32 major8.minor8.patch16; those
of a unit on firmware 1.2.1: plausible values, not read off a unit).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

#: 2 Msps: the JS220's sample counter, whatever the output rate
SAMPLE_ID_RATE = 2_000_000
#: the stream topics joulescope.v1 turns on (DeviceJs220._stream_topics)
STREAM_TOPICS = ("s/i/", "s/v/", "s/p/", "s/i/range/", "s/gpi/0/", "s/gpi/1/")
#: return codes (pyjoulescope_driver.ErrorCode)
RC_OK = 0
RC_NOT_SUPPORTED = 3
RC_PARAMETER_INVALID = 5
RC_SYNTAX_ERROR = 10
RC_IN_USE = 21
RC_CLOSED = 22
#: a host line longer than this is discarded (bounded memory)
MAX_LINE = 1 << 16


def version_u32(major: int, minor: int, patch: int) -> int:
    return (major << 24) | (minor << 16) | patch


VERSIONS = {
    "c/fw/version": version_u32(1, 2, 1),
    "c/hw/version": version_u32(1, 0, 0),
    "s/fpga/version": version_u32(1, 2, 1),
}


@dataclass(frozen=True)
class Reply:
    """A JSON line to the host."""

    data: bytes


@dataclass(frozen=True)
class SetStreaming:
    """The set of stream topics that are on changed (empty: stop)."""

    topics: frozenset


@dataclass(frozen=True)
class Opened:
    """The host opened the device (a new session: sample ids go on)."""


@dataclass(frozen=True)
class Closed:
    """The host closed the device."""


@dataclass(frozen=True)
class QueryGpi:
    """``s/gpi/+/!req``: publish the GPI levels now on ``s/gpi/+/!value``
    (after the request's return code)."""


#: the request for the GPI levels, and the topic of the answer
GPI_REQUEST = "s/gpi/+/!req"
GPI_VALUE = "s/gpi/+/!value"

Action = Reply | SetStreaming | Opened | Closed | QueryGpi


def encode(msg: dict) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


class Js220Core:
    """The JS220's side of the driver link (module docstring)."""

    def __init__(self, serial_number: str = "TWIN0001"):
        self.serial_number = serial_number
        self._rx = bytearray()
        self._skipping = False
        self.reset()

    def reset(self) -> None:
        """Power-up state: closed, nothing streaming."""
        self.is_open = False
        self.streams: set[str] = set()
        self.topics: dict[str, object] = {}
        self.errors = 0

    def feed(self, data: bytes) -> None:
        self._rx += data

    def step(self) -> list[Action] | None:
        """Handle the next complete line; ``None``: none is complete."""
        rx = self._rx
        while True:
            i = rx.find(b"\n")
            if i < 0:
                if len(rx) > MAX_LINE:  # no line end in sight: not our driver
                    rx.clear()
                    self._skipping = True
                return None
            line = bytes(rx[:i])
            del rx[: i + 1]
            if self._skipping:  # the tail of a discarded line
                self._skipping = False
                continue
            if line.strip():
                return self.command(line)

    def command(self, line: bytes) -> list[Action]:
        try:
            msg = json.loads(line)
            op = msg["op"]
        except (ValueError, KeyError, TypeError):
            self.errors += 1
            return [Reply(encode({"op": "rc", "topic": "", "rc": RC_SYNTAX_ERROR, "id": None}))]
        rid = msg.get("id")
        if op == "open":
            if self.is_open:
                return [Reply(encode({"op": "rc", "topic": "@/!open", "rc": RC_IN_USE, "id": rid}))]
            self.is_open = True
            return [Opened(), Reply(encode({"op": "rc", "topic": "@/!open", "rc": RC_OK, "id": rid,
                                             "retained": dict(VERSIONS)}))]
        if op == "close":
            was = self.is_open
            self.is_open = False
            out: list[Action] = []
            if self.streams:
                self.streams.clear()
                out.append(SetStreaming(frozenset()))
            if was:
                out.append(Closed())
            return out + [Reply(encode({"op": "rc", "topic": "@/!close", "rc": RC_OK, "id": rid}))]
        if op == "publish":
            topic = str(msg.get("topic", ""))
            if not self.is_open:
                return [Reply(encode({"op": "rc", "topic": topic, "rc": RC_CLOSED, "id": rid}))]
            value = msg.get("value")
            self.topics[topic] = value
            out = []
            for base in STREAM_TOPICS:
                if topic == base + "ctrl":
                    on = value not in (0, False, None, "0", "off")
                    before = set(self.streams)
                    (self.streams.add if on else self.streams.discard)(base)
                    if self.streams != before:
                        out.append(SetStreaming(frozenset(self.streams)))
            out.append(Reply(encode({"op": "rc", "topic": topic, "rc": RC_OK, "id": rid})))
            if topic == GPI_REQUEST:
                out.append(QueryGpi())
            return out
        self.errors += 1
        return [Reply(encode({"op": "rc", "topic": str(op), "rc": RC_NOT_SUPPORTED, "id": rid}))]


__all__ = ["Action", "Closed", "GPI_REQUEST", "GPI_VALUE", "Js220Core", "Opened", "QueryGpi", "Reply", "SAMPLE_ID_RATE",
           "STREAM_TOPICS", "SetStreaming", "VERSIONS", "encode"]
