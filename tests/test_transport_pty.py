"""PtyPort's view of its host end: whether a host has the slave open (asked
before every write) and the baud the host set (asked at every transfer)."""
from __future__ import annotations

import os
import termios
import tty

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
