"""How long the twin holds a command before the host has its answer: over a
real pty, from the moment the run loop's poll() reports the host's bytes to
the moment the answer's write() returns, and how much of that the two system
calls take (the read of the command, the write of the answer).

A round trip over a pty is the client's write, the kernel carrying the bytes
(a kworker on each side), the twin's turn, and the client's wake-up; only the
twin's turn between its poll and its write delays the client's next command
(what the twin does after the write overlaps with the kernel delivering the
answer). This script measures that part, for the twin
(`build_dut_bench("kws01")`, its express lane for `db` chunks) and for the
loop floor (the same run loop and PtyPort with a device that answers
`m-ready` at once, as in pty_roundtrip.py). The twin's run loop runs in this
process's main thread, as in `tinytwin dut` (its spin after host bytes
included); the client is a forked process writing and reading the raw fd
(VMIN=1), one 31-byte `db` chunk per command and a `db load 490` every 15th.

Timing wraps two methods of the real loop and port for the measurement
(`_Loop.service`, `HostPort._send`); nothing else is replaced.

    python benchmarks/twin_critical_path.py --models-dir ../shared/models [-n 20000] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import threading
import time
import tty
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import MODELS_DIR_HELP, machine, models_folder  # noqa: E402

CHUNK = b"db " + bytes(range(31)).hex().encode() + b"%"
LOAD = b"db load 490%"
READY = b"m-ready\r\n"


def measure(kind: str, models_dir: Path, n: int) -> dict:
    """Run the loop against a forked client for ``n`` chunks; per command,
    µs from service() to the write's return, and in read() and write()."""
    from emulator.sim import Twin, _Loop
    from emulator.transport import PtyPort
    from emulator.transport.base import HostPort

    if kind == "twin":
        from emulator.benches.dut import build_dut_bench

        bench = build_dut_bench("kws01", models_dir=models_dir, speed="fast")
        port = bench.bridge.attach(PtyPort("dut", initial_baud=bench.dut.uart.baud))
        twin = bench.twin
    else:
        twin = Twin("fast")
        port = PtyPort("floor", initial_baud=115200)

        def answer(data: bytes) -> None:
            for _ in range(data.count(b"%")):
                port.write_to_host(READY)

        port.on_host_bytes = answer
        twin.add_port(port)

    stop = threading.Event()
    old_handler = signal.signal(signal.SIGUSR1, lambda *_: stop.set())
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the client
        try:
            fd = os.open(port.device, os.O_RDWR | os.O_NOCTTY)
            tty.setraw(fd)

            def rt(cmd: bytes) -> None:
                os.write(fd, cmd)
                buf = b""
                while not buf.endswith(READY):
                    buf += os.read(fd, 4096)

            time.sleep(0.2)
            for i in range(n):
                rt(LOAD if i % 15 == 14 else CHUNK)
            os.kill(parent, signal.SIGUSR1)
        finally:
            os._exit(0)

    turn_start = [0]
    total: list[int] = []
    writes: list[int] = []
    reads: list[int] = []
    service, send, read = _Loop.service, HostPort._send, HostPort.read_available
    clock = time.perf_counter_ns

    def timed_service(self, events):
        turn_start[0] = clock()
        return service(self, events)

    def timed_send(self, data):
        t = clock()
        k = send(self, data)
        end = clock()
        writes.append(end - t)
        total.append(end - turn_start[0])
        return k

    def timed_read(self):
        t = clock()
        data = read(self)
        reads.append(clock() - t)
        return data

    _Loop.service, HostPort._send, HostPort.read_available = timed_service, timed_send, timed_read
    try:
        twin.run(stop)
    finally:
        _Loop.service, HostPort._send, HostPort.read_available = service, send, read
        signal.signal(signal.SIGUSR1, old_handler)
        os.waitpid(pid, 0)
        twin.close()
    skip = min(1000, n // 10)  # start-up and the boot banner

    def med(xs: list[int]) -> float:
        return statistics.median(xs[skip:]) / 1000

    return {"turn_to_write_us": med(total), "write_us": med(writes), "read_us": med(reads),
            "python_us": med(total) - med(writes) - med(reads), "commands": len(total)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", type=Path, default=None, help=MODELS_DIR_HELP)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    args.models_dir = models_folder(args.models_dir, names=("kws01",))
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    rows = {}
    print("| server | poll -> answer written (µs, median) | of which write() | read() | the rest (Python) |")
    print("|---|---:|---:|---:|---:|")
    for kind in ("floor", "twin"):
        r = rows[kind] = measure(kind, args.models_dir, args.n)
        print(f"| {kind} | {r['turn_to_write_us']:.2f} | {r['write_us']:.2f} | {r['read_us']:.2f} | {r['python_us']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "n": args.n, "load": os.getloadavg(), "machine": machine()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
