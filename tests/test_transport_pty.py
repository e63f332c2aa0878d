"""PtyPort's view of its host end: whether a host has the slave open (asked
before a write, at most once per turn of the twin's loop) and the baud the
host set (asked at every transfer)."""
from __future__ import annotations

import os
import sys
import termios
import time
import tty

import pytest

from emulator.transport import PtyPort, set_tty_baud, tty_baud


def test_host_connected_follows_each_open_and_close_of_the_slave():
    port = PtyPort("t", initial_baud=115200)
    try:
        for _ in range(3):
            assert not port.host_connected()
            port.write_to_host(b"lost\r\n")  # nobody listens: dropped
            fd = os.open(port.device, os.O_RDWR | os.O_NOCTTY)
            try:
                assert port.host_connected()
                port.write_to_host(b"m-ready\r\n")
                assert os.read(fd, 100) == b"m-ready\r\n"
            finally:
                os.close(fd)
        assert port.dropped == 3 * len(b"lost\r\n")
    finally:
        port.close()


def test_on_a_twin_the_host_end_is_asked_for_once_per_turn():
    """A device printing byte by byte (a UART at its baud) makes many writes in
    one turn of the twin's loop; the OS is asked whether a host is there once
    per turn, as the loop's own poll() is, and again in the next turn."""
    from emulator.sim import Twin

    class CountingPoll:
        def __init__(self, poll):
            self.inner, self.calls = poll, 0

        def poll(self, timeout):
            self.calls += 1
            return self.inner.poll(timeout)

    twin = Twin("fast")
    port = PtyPort("t", initial_baud=115200)
    twin.add_port(port)
    counting = port._hup_poll = CountingPoll(port._hup_poll)
    fd = os.open(port.device, os.O_RDWR | os.O_NOCTTY)
    try:
        for b in b"m-ready\r\n":
            port.write_to_host(bytes([b]))
        assert counting.calls == 1
        assert _read_all(fd, 9) == b"m-ready\r\n"
        os.close(fd)
        fd = None
        twin.turn += 1  # the next turn asks again: nobody there now
        port.write_to_host(b"lost\r\n")
        port.write_to_host(b"lost\r\n")
        assert port.dropped == 2 * len(b"lost\r\n") and counting.calls == 3
    finally:
        if fd is not None:
            os.close(fd)
        twin.close()


def test_baud_changes_by_the_host_are_seen_at_once():
    port = PtyPort("t", initial_baud=115200)
    fd = os.open(port.device, os.O_RDWR | os.O_NOCTTY)
    try:
        tty.setraw(fd)
        assert port.host_baud() == 115200
        for baud in (9600, 921600, 115200):
            set_tty_baud(fd, baud)
            assert port.host_baud() == baud == tty_baud(fd)
        attrs = termios.tcgetattr(fd)
        assert attrs[4] == attrs[5] == termios.B115200
    finally:
        os.close(fd)
        port.close()


# -- how the twin learns of the host's settings (see emulator/transport/pty.py) --

_EXTPROC = 0o200000
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="announced settings changes are Linux's")


@pytest.fixture
def hosted():
    """A port on a twin (not running: the test reads for its loop) and a
    host's fd on the slave."""
    from emulator.sim import Twin

    twin = Twin("fast")
    port = PtyPort("t", initial_baud=115200)
    twin.add_port(port)
    fd = os.open(port.device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    yield port, fd
    os.close(fd)
    twin.close()


def _retry(fn, tries=200):
    """``fn()`` until it returns something (a pty hands bytes on through a
    kernel worker, a moment later)."""
    for _ in range(tries):
        try:
            got = fn()
        except BlockingIOError:
            got = None
        if got:
            return got
        time.sleep(0.001)
    return got


def _read_all(fd: int, size: int) -> bytes:
    """``size`` bytes from the non-blocking ``fd``, however many reads they take."""
    got = b""
    while len(got) < size:
        more = _retry(lambda: os.read(fd, size - len(got)))
        if not more:
            break
        got += more
    return got


def _sent(port, fd, data: bytes) -> bytes:
    """The host writes ``data``; what the twin's loop reads of it."""
    os.write(fd, data)
    return _retry(port.read_available)


def _set_lflag(fd, change) -> None:
    attrs = termios.tcgetattr(fd)
    attrs[3] = change(attrs[3])
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


@linux_only
def test_a_baud_change_is_announced_before_the_bytes_written_after_it(hosted):
    port, fd = hosted
    tty.setraw(fd)
    assert port.announced and port.host_baud() == 115200
    for baud in (9600, 921600, 115200):
        set_tty_baud(fd, baud)
        assert _sent(port, fd, b"%") == b"%"  # the data, without the packet mode's status byte
        assert port.host_baud() == baud and port.announced
    assert termios.tcgetattr(fd)[3] & _EXTPROC  # what a raw host sees of it


@linux_only
def test_a_host_asking_for_canonical_input_gets_a_plain_tty_back(hosted):
    port, fd = hosted
    _set_lflag(fd, lambda lflag: lflag | termios.ICANON)
    assert _sent(port, fd, b"name%") == b"name%"
    assert not port.announced
    assert not termios.tcgetattr(fd)[3] & _EXTPROC
    # the line discipline is at work again: a line is read whole, once complete
    port.write_to_host(b"m-rea")
    assert _retry(lambda: os.read(fd, 100), tries=50) is None
    port.write_to_host(b"dy\n")
    assert _retry(lambda: os.read(fd, 100)) == b"m-ready\n"
    # and the baud is asked for at every transfer from now on
    set_tty_baud(fd, 9600)
    port.twin.turn += 1
    assert port.host_baud() == 9600


@linux_only
def test_a_host_that_clears_the_flag_is_asked_at_every_transfer(hosted):
    port, fd = hosted
    _set_lflag(fd, lambda lflag: 0)
    assert _sent(port, fd, b"%") == b"%"
    assert not port.announced
    set_tty_baud(fd, 921600)  # no announcement any more
    assert _sent(port, fd, b"%") == b"%"
    assert port.host_baud() == 921600


def test_a_turn_writes_consecutive_output_to_a_port_at_once_in_the_simulations_order():
    """While the loop advances the simulation, a device printing byte by byte
    costs one write per run of output to the same port, not one per byte; the
    writes to two ports keep the order in which the devices printed, and
    each host reads exactly what was printed."""
    from emulator.sim import Twin

    twin = Twin("fast")
    a, b = PtyPort("a", initial_baud=115200), PtyPort("b", initial_baud=115200)
    writes = []
    for port in (a, b):
        twin.add_port(port)
        send = port._send
        port._send = lambda data, port=port, send=send: (writes.append((port.name, bytes(data))), send(data))[1]
    fds = [os.open(p.device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK) for p in (a, b)]
    try:
        t = 0
        for port, text in ((a, b"m-ready\r\n"), (b, b"event 1 ris\r\n"), (a, b"m-infer-done\r\n")):
            for byte in text:
                t += 1000
                twin.schedule(t, lambda port=port, byte=byte: port.write_to_host(bytes([byte])))
        twin.pump()  # one turn of the loop: every event is due at once in fast mode
        assert writes == [("a", b"m-ready\r\n"), ("b", b"event 1 ris\r\n"), ("a", b"m-infer-done\r\n")]
        assert _read_all(fds[0], 23) == b"m-ready\r\nm-infer-done\r\n"  # (two writes: maybe two reads)
        assert _read_all(fds[1], 13) == b"event 1 ris\r\n"
        a.write_to_host(b"x")  # outside a turn: written at once
        assert writes[-1] == ("a", b"x")
    finally:
        for fd in fds:
            os.close(fd)
        twin.close()
