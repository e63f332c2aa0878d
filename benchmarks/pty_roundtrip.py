"""Command round trips per second over the twin's pseudo-terminal, against a
bare pty echo server in the same run, with the same client.

One round trip = send one `db` chunk (31 bytes as 62 hex digits, as the
mlcommons runner sends them) and wait for `m-ready` (every 15th command is a
`db load 490`, so the twin's buffer never overflows). The twin runs as its own
process (`tinytwin dut --speed fast`), as a user runs it; the echo server (a
forked process answering `m-ready` to every `%`, asleep in read() between
commands) is the machine's floor for a round trip through a pty between two
processes.

The client writes and reads the raw fd, the same code for both servers, in two
styles:

* `blocking` (the figure that counts): the tty's VMIN=1, so read() sleeps until
  the answer is there, as every real runner's read does (pyserial's
  `read_until` sleeps in select(); ours in poll());
* `spinning`: VMIN=0, read() returns at once and the client loops, burning
  its core and never paying a wake-up. (Before 2026-12-05 this script measured
  the twin through pyserial's fd, which pyserial leaves at VMIN=0, and the
  echo server with a blocking fd: the twin got a spinning client and the echo
  server a blocking one. Its 0.82 was that mix; both styles are now measured
  for both servers.)

A third server splits the difference between the two: the twin's own run
loop and pty port (the same `Twin.run`, the same `PtyPort`, its spin after
host bytes included) with a device that answers `m-ready` to every `%` at
once, without any simulation (`--serve-loop-floor`, started by the script).
What separates it from the echo server is the cost of a Python event loop;
what separates the twin from it is the simulated board (UART, firmware core,
clock).

The servers are measured in turns (echo, loop floor, twin, echo, ...; three
rounds by default) and the medians compared, so that a change of machine load
during the run affects both. The script also prints the CPU time (user +
system, from /proc) each server spends per round trip (the twin's includes its
bounded spin after each command, see `emulator.sim.Twin.SPIN_S`), the
machine's load average, and a pyserial `read_until` client's rate against the
twin for context.

    python benchmarks/pty_roundtrip.py --models-dir ../shared/models [-n 10000] [--rounds 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import termios
import time
import tty
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import fork_pty_server, machine  # noqa: E402

CHUNK = b"db " + bytes(range(31)).hex().encode() + b"%"
LOAD = b"db load 490%"
READY = b"m-ready\r\n"


def roundtrips(fd: int, n: int) -> float:
    """Round trips per second over ``fd`` (raw reads)."""

    def rt(cmd: bytes) -> None:
        os.write(fd, cmd)
        buf = b""
        while not buf.endswith(READY):
            buf += os.read(fd, 4096)

    rt(LOAD)
    t = time.perf_counter()
    for i in range(n):
        rt(CHUNK)
        if i % 15 == 14:
            rt(LOAD)
    return (n + n // 15) / (time.perf_counter() - t)


def pyserial_roundtrips(port, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        port.write(CHUNK)
        port.read_until(READY)
        if i % 15 == 14:
            port.write(LOAD)
            port.read_until(READY)
    return (n + n // 15) / (time.perf_counter() - t)


def echo_server() -> tuple[int, str]:
    """Fork a bare pty echo server; returns its pid and the pty's path."""
    return fork_pty_server(lambda data: READY if data.endswith(b"%") else b"")


def echo_pairs_rate(pairs: int, n: int) -> float:
    """Round trips per second, in all, of ``pairs`` bare echo servers, each
    with its own blocking raw client (`roundtrips`), all in processes of
    their own and started together: the machine's floor for ``pairs``
    twin/runner pairs (``--jobs pairs`` over ptys)."""
    servers = [echo_server() for _ in range(pairs)]
    go_r, go_w = os.pipe()
    clients = []
    try:
        for _, path in servers:
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    fd = open_raw(path)
                    os.read(go_r, 1)  # all start together
                    roundtrips(fd, n)
                    code = 0
                finally:
                    os._exit(code)
            clients.append(pid)
        time.sleep(0.2)  # the clients have opened their ptys
        t = time.perf_counter()
        os.write(go_w, b"x" * pairs)
        failed = [pid for pid in clients if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0]
        wall = time.perf_counter() - t
        if failed:
            raise RuntimeError(f"{len(failed)} of {pairs} echo clients failed")
    finally:
        os.close(go_r)
        os.close(go_w)
        for pid, _ in servers:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    return pairs * (n + n // 15) / wall


def serve_loop_floor(link: str) -> None:
    """The twin's run loop and pty port, with a device that answers at once
    (run as this script's own process: ``--serve-loop-floor LINK``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from emulator.sim import Twin
    from emulator.transport import PtyPort

    twin = Twin("fast")
    port = PtyPort("floor", link=link, initial_baud=115200)

    def answer(data: bytes) -> None:
        for _ in range(data.count(b"%")):
            port.write_to_host(READY)

    port.on_host_bytes = answer
    twin.add_port(port)
    print(port.device, flush=True)
    twin.run()


def start_loop_floor(where: str) -> subprocess.Popen:
    link = os.path.join(where, "floor")
    proc = subprocess.Popen([sys.executable, __file__, "--serve-loop-floor", link], stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()
    proc.link = link
    return proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_raw(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    return fd


def set_vmin(fd: int, vmin: int) -> None:
    """VMIN=1: read() sleeps until a byte is there; VMIN=0 (VTIME=0): it
    returns at once, with nothing if nothing came."""
    attrs = termios.tcgetattr(fd)
    attrs[6][termios.VMIN] = vmin
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def measure(pid: int, fd: int, n: int) -> tuple[float, float]:
    """(round trips/s, server CPU µs per round trip)."""
    c0 = cpu_seconds(pid)
    rate = roundtrips(fd, n)
    per = (cpu_seconds(pid) - c0) / (n + n // 15) * 1e6
    return rate, per


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("-n", type=int, default=10000, help="db chunks per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--serve-loop-floor", metavar="LINK", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_loop_floor:
        serve_loop_floor(args.serve_loop_floor)
        return 0
    import serial

    load_before = os.getloadavg()
    where = tempfile.mkdtemp(prefix="tinytwin-bench-")
    link = os.path.join(where, "dut")
    cmd = [sys.executable, "-m", "emulator.cli", "dut", "--model", "kws01", "--link", link, "--speed", "fast"]
    if args.models_dir:
        cmd += ["--models-dir", str(args.models_dir)]
    twin = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    echo_pid, echo_path = echo_server()
    floor = start_loop_floor(where)
    styles = ("blocking", "spinning")
    servers = ("echo", "floor", "twin")
    rows = {(st, k): [] for st in styles for k in servers}
    try:
        twin.stdout.readline()
        twin_fd = open_raw(link)  # the pty keeps the DUT's baud: no change needed
        os.write(twin_fd, b"%")
        buf = b""
        while not buf.endswith(READY):
            buf += os.read(twin_fd, 4096)
        echo_fd = open_raw(echo_path)
        floor_fd = open_raw(floor.link)
        fds = {"echo": (echo_pid, echo_fd), "floor": (floor.pid, floor_fd), "twin": (twin.pid, twin_fd)}
        for style in styles:
            for _, fd in fds.values():
                set_vmin(fd, 1 if style == "blocking" else 0)
            for _ in range(args.rounds):
                for k, (pid, fd) in fds.items():
                    rows[style, k].append(measure(pid, fd, args.n))
        for _, fd in fds.values():
            os.close(fd)
        with serial.Serial(link, 115200, timeout=5) as port:
            ps = pyserial_roundtrips(port, max(1000, args.n // 4))
    finally:
        for proc in (twin, floor):
            proc.terminate()
            proc.wait()
        os.kill(echo_pid, 9)
        os.waitpid(echo_pid, 0)
    load_after = os.getloadavg()
    med = {k: statistics.median(r for r, _ in v) for k, v in rows.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in rows.items()}
    ratio = {st: med[st, "twin"] / med[st, "echo"] for st in styles}
    floor_ratio = {st: med[st, "floor"] / med[st, "echo"] for st in styles}
    print(
        f"machine: {machine()}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print("| client | server | round trips/s, each round | median | server CPU µs / round trip (median) |")
    print("|---|---|---|---:|---:|")
    for st in styles:
        for k, label in (("echo", "bare pty echo server (machine floor)"),
                         ("floor", "the twin's loop and port, a device answering at once"),
                         ("twin", "twin (`tinytwin dut --speed fast`)")):
            each = ", ".join(f"{r:,.0f}" for r, _ in rows[st, k])
            print(f"| {st} | {label} | {each} | {med[st, k]:,.0f} | {cpu[st, k]:.1f} |")
    print(f"twin / echo (medians): blocking client {ratio['blocking']:.2f}, spinning client {ratio['spinning']:.2f}; "
          f"pyserial read_until client against the twin: {ps:,.0f} /s")
    print(f"loop floor / echo (medians): blocking client {floor_ratio['blocking']:.2f}, "
          f"spinning client {floor_ratio['spinning']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({
            "rows": {f"{st} {k}": v for (st, k), v in rows.items()},
            "median": {f"{st} {k}": v for (st, k), v in med.items()},
            "cpu_us": {f"{st} {k}": v for (st, k), v in cpu.items()}, "ratio": ratio,
            "loop_floor_ratio": floor_ratio, "pyserial": ps,
            "load": [load_before, load_after], "machine": machine(),
        }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
