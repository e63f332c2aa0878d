"""Small host-side helpers for tests: talk to a DUT like a runner does."""
from __future__ import annotations

import time

import serial


class Host:
    """A minimal line-oriented DUT client over a real pyserial port."""

    def __init__(self, port: serial.SerialBase):
        self.port = port
        self.lines: list[tuple[float, str]] = []  # (wall time, line)

    def command(self, cmd: str | bytes, timeout: float = 10.0) -> list[str]:
        data = cmd if isinstance(cmd, bytes) else cmd.encode()
        if not data.endswith(b"%"):
            data += b"%"
        self.port.write(data)
        return self.read_until_ready(timeout)

    def read_until_ready(self, timeout: float = 10.0) -> list[str]:
        out: list[str] = []
        deadline = time.monotonic() + timeout
        buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no m-ready within {timeout} s; got {out!r} + {buf!r}")
            self.port.timeout = min(left, 0.5)
            chunk = self.port.read(max(1, self.port.in_waiting))
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.rstrip(b"\r").decode("latin-1")
                self.lines.append((time.monotonic(), text))
                out.append(text)
                if text == "m-ready":
                    return out

    def load(self, data: bytes, chunk: int = 31) -> list[str]:
        out = self.command(f"db load {len(data)}")
        for i in range(0, len(data), chunk):
            out += self.command("db " + data[i : i + chunk].hex())
        return out


def laps(lines: list[str]) -> list[int]:
    return [int(x[len("m-lap-us-"):]) for x in lines if x.startswith("m-lap-us-")]


def wait_booted(bench, timeout: float = 10.0) -> None:
    """A host opening the port mid-boot sees part of the banner, as on a board;
    these tests open it after boot."""
    deadline = time.monotonic() + timeout
    while not (bench.dut.powered and bench.dut.state == "idle" and bench.dut.core.parser_enabled):
        assert time.monotonic() < deadline, "the DUT did not boot"
        time.sleep(0.01)
