"""Command round trips per second over the twin's pseudo-terminal.

One round trip = send one `db` chunk (31 bytes as 62 hex digits, as the
mlcommons runner sends them) and wait for `m-ready`. The twin runs as its own
process (`tinytwin dut --speed fast`), as a user runs it. For context the
script also measures the machine's floor: a trivial echo server on a bare pty.
It also prints the CPU time the twin process spends per round trip (user +
system, from /proc), which varies much less from run to run than the rate:
the rate also depends on how the kernel schedules the two processes.

    python benchmarks/pty_roundtrip.py --models-dir ../shared/models
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import tty

import serial

CHUNK = b"db " + bytes(range(31)).hex().encode() + b"%"


def roundtrips(fd: int, n: int) -> float:
    def rt(cmd: bytes) -> None:
        os.write(fd, cmd)
        buf = b""
        while not buf.endswith(b"m-ready\r\n"):
            buf += os.read(fd, 4096)

    rt(b"db load 490%")
    t = time.perf_counter()
    for i in range(n):
        rt(CHUNK)
        if i % 15 == 14:
            rt(b"db load 490%")
    return n / (time.perf_counter() - t)


def pyserial_roundtrips(port: serial.Serial, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        port.write(CHUNK)
        port.read_until(b"m-ready\r\n")
        if i % 15 == 14:
            port.write(b"db load 490%")
            port.read_until(b"m-ready\r\n")
    return n / (time.perf_counter() - t)


def bare_pty_floor(n: int) -> float:
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    name = os.ttyname(slave)
    pid = os.fork()
    if pid == 0:  # echo server: answer m-ready to every '%'
        try:
            while True:
                if os.read(master, 4096).endswith(b"%"):
                    os.write(master, b"m-ready\r\n")
        finally:
            os._exit(0)
    fd = os.open(name, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    try:
        return roundtrips(fd, n)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("-n", type=int, default=10000)
    args = ap.parse_args()
    link = os.path.join(tempfile.mkdtemp(prefix="tinytwin-bench-"), "dut")
    cmd = [sys.executable, "-m", "emulator.cli", "dut", "--model", "kws01", "--link", link, "--speed", "fast"]
    if args.models_dir:
        cmd += ["--models-dir", args.models_dir]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        with serial.Serial(link, 115200, timeout=5) as port:
            port.write(b"%")
            port.read_until(b"m-ready\r\n")
            cpu0 = cpu_seconds(proc.pid)
            raw = roundtrips(port.fileno(), args.n)
            cpu1 = cpu_seconds(proc.pid)
            ps = pyserial_roundtrips(port, max(1000, args.n // 4))
    finally:
        proc.terminate()
        proc.wait()
    floor = bare_pty_floor(args.n)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}")
    print("| client | round trips/s |")
    print("|---|---|")
    print(f"| raw fd reads (twin) | {raw:,.0f} |")
    print(f"| pyserial read_until (twin) | {ps:,.0f} |")
    print(f"| raw fd reads, bare pty echo server (machine floor) | {floor:,.0f} |")
    if cpu0 is not None and cpu1 is not None:
        commands = args.n + args.n // 15 + 1  # the chunks and the `db load`s
        print(f"twin CPU time per command (raw fd run): {(cpu1 - cpu0) / commands * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
