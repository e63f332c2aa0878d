"""The IO manager devices on the simulated clock, between a host UART and the
real energy-mode DUT (no wall clock: timings are exact)."""
from __future__ import annotations

import pytest

from emulator.benches.dut import load_engine
from emulator.dut.device import Dut
from emulator.dut.timing import timing_for
from emulator.ioman import ArduinoIoManager, H573IoManager
from emulator.sim import US, Twin
from emulator.hw.uart import SerialEndpoint, char_ns, connect

HOST_CHAR = char_ns(115200)
DUT_CHAR = char_ns(9600)


class Host:
    """The host's USB-serial side, inside the simulation."""

    def __init__(self, twin: Twin, board):
        self.twin = twin
        self.rx: list[tuple[int, int]] = []  # (arrival ns, byte)
        self.ep = SerialEndpoint(twin, "host", 115200, receiver=self._rx)
        self.ep.per_byte = True
        connect(self.ep, board.host_uart)

    def _rx(self, data: bytes) -> None:
        for b in data:
            self.rx.append((self.twin.now, b))

    def send(self, text: str) -> int:
        """Send and run the twin until idle; returns the time the last byte left."""
        t = self.twin.now + len(text) * HOST_CHAR
        self.ep.send(text.encode())
        self.twin.run_until_idle()
        return int(t)

    def text(self, since: int = 0) -> str:
        return bytes(b for t, b in self.rx if t >= since).decode("latin-1")

    def line_end(self, line: str, since: int = 0) -> int:
        """Arrival time of the '\\n' ending ``line``."""
        data = bytes(b for _, b in self.rx)
        times = [t for t, _ in self.rx]
        i = data.find((line + "\r\n").encode(), len([t for t in times if t < since]))
        assert i >= 0, (line, data)
        return times[i + len(line) + 1]


@pytest.fixture(scope="module")
def engine(models_dir):
    return load_engine("kws01", models_dir)


def bench(engine, board_cls, **kw):
    twin = Twin("fast")
    dut = Dut(twin, engine, timing_for("kws01"), energy_mode=True, powered=False)
    board = board_cls(twin, **kw)
    board.connect_dut(dut.uart)
    host = Host(twin, board)
    twin.run_until_idle()
    return twin, dut, board, host


def test_arduino_relays_at_9600_and_115200(engine):
    twin, dut, board, host = bench(engine, ArduinoIoManager)
    assert host.text() == "m-ver-IoTConnect IO Manager 1.0.3\r\nm-ready\r\n"
    dut.power_on()
    twin.run_until_idle()
    t_sent = host.send("dut name%")
    text = host.text(since=t_sent)
    assert text == (
        "m-dut-passthrough(name)\r\nm-ready\r\n[dut]: m-name-dut-[unspecified]\r\n[dut]: m-ready\r\n"
    )
    # the board answers as soon as "%" is in: 25 + 9 characters at 115200
    assert host.line_end("m-ready", since=t_sent) == pytest.approx(t_sent + 34 * HOST_CHAR, abs=2 * US)
    # "name%" goes out at 9600 meanwhile; the DUT answers; each of its lines
    # is relayed once its '\n' is in, at 115200
    t_name = host.line_end("[dut]: m-name-dut-[unspecified]", since=t_sent)
    first_dut_char = t_sent + 5 * DUT_CHAR + dut.timing.command_ns  # "name%" received, parsed
    assert t_name >= first_dut_char + len("m-name-dut-[unspecified]\r\n") * DUT_CHAR
    assert t_name <= first_dut_char + len("m-name-dut-[unspecified]\r\n") * DUT_CHAR + 40 * HOST_CHAR


def test_arduino_ignores_bytes_while_unpowered_and_boots_on_power(engine):
    twin, dut, board, host = bench(engine, ArduinoIoManager, powered=False)
    assert host.text() == ""
    host.send("name%")
    assert host.text() == ""
    board.power_on()
    twin.run_until_idle()
    assert host.text() == "m-ver-IoTConnect IO Manager 1.0.3\r\nm-ready\r\n"


def test_arduino_dut_side_is_9600_whatever_the_dut_runs(engine):
    twin = Twin("fast")
    dut = Dut(twin, engine, timing_for("kws01"), energy_mode=True, baud=115200, powered=False)
    board = ArduinoIoManager(twin)
    board.connect_dut(dut.uart)
    host = Host(twin, board)
    twin.run_until_idle()
    dut.power_on()
    twin.run_until_idle()
    t = host.send("dut name%")
    text = host.text(since=t)
    assert text.startswith("m-dut-passthrough(name)\r\nm-ready\r\n")
    assert "m-name-dut" not in text and "[dut]: m-ready" not in text


def test_h573_resets_on_setbaud_and_loses_bytes_meanwhile(engine):
    twin, dut, board, host = bench(engine, H573IoManager)
    assert host.text() == "" and board.dut_uart.baud == 9600
    t = int(twin.now)
    host.ep.send(b"setbaud 19200%")
    # while the board reboots (100 ms after its answer), a command is lost
    twin.schedule(14 * HOST_CHAR + 30 * HOST_CHAR + 1_000 * US, lambda: host.ep.send(b"name%"))
    twin.run_until_idle()
    assert host.text(since=t) == "set baud to: 19200\nm-ready\r\n"
    assert board.boots == 2 and board.dut_uart.baud == 19200
    t = host.send("name%")
    assert host.text(since=t) == "tinyML Enhanced Interface Board\r\nm-ready\r\n"
    # HAL_UART_Transmit blocks: the name and m-ready go out back to back
    assert host.line_end("m-ready", since=t) == pytest.approx(t + 42 * HOST_CHAR, abs=2 * US)


def test_h573_overflowing_dut_queue_between_commands(engine):
    twin, dut, board, host = bench(engine, H573IoManager)
    dut.power_on()
    twin.run_until_idle()
    assert host.text() == ""
    assert board.core.dut_rx.lost > 0 and len(board.core.dut_rx) == 100
