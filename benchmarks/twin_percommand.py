"""The twin's own cost per command, without the kernel: the DUT bench driven
synchronously through a socket pair (no threads, no pty), one turn of the
twin's run loop per command (poll, read, hand over, answer, write) on the
direct path (several turns on the stepped path of earlier versions).

Prints commands per second (one `db` chunk each, a `db load 490` every 15th,
as pty_roundtrip.py sends them), the µs per command, and, deterministic
whatever the machine's load, the Python bytecodes and calls one turn executes
(counted with sys.settrace). ``--profile`` adds the functions the bytecodes
are spent in (cProfile times are inflated by the profiler; the bytecode
counts are not).

    python benchmarks/twin_percommand.py --models-dir ../shared/models [-n 20000] [--profile]
"""
from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import MODELS_DIR_HELP, count_bytecodes, models_folder, print_profile  # noqa: E402

CHUNK = b"db " + bytes(range(31)).hex().encode() + b"%"
LOAD = b"db load 490%"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", type=Path, default=None, help=MODELS_DIR_HELP)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    from emulator.benches.dut import build_dut_bench
    from emulator.sim import _Loop
    from emulator.transport import SocketPort

    bench = build_dut_bench("kws01", models_dir=models_folder(args.models_dir, names=("kws01",)), speed="fast")
    ours, theirs = socket.socketpair()
    port = SocketPort("bench", theirs)
    port.baud = 115200
    bench.bridge.attach(port)
    twin = bench.twin
    twin.run_until_idle()  # boot
    loop = _Loop(twin)
    ours.setblocking(False)

    def turn() -> None:  # Twin.run's loop body
        twin._drain_calls()
        hung = loop.sync_ports()
        events = loop.poller.poll(twin._timeout_ms(hung))
        twin.turn = getattr(twin, "turn", 0) + 1
        loop.service(events)
        twin._advance()

    def rt(cmd: bytes) -> None:
        ours.send(cmd)
        buf = b""
        while not buf.endswith(b"m-ready\r\n"):
            turn()
            try:
                buf += ours.recv(65536)
            except BlockingIOError:
                pass

    def commands(n: int) -> float:
        t = time.perf_counter()
        for i in range(n):
            rt(CHUNK)
            if i % 15 == 14:
                rt(LOAD)
        return (n + n // 15) / (time.perf_counter() - t)

    while not ours.recv(65536).endswith(b"m-ready\r\n"):  # the banner, in turns
        turn()
    rt(LOAD)
    commands(1000)
    rate = max(commands(args.n) for _ in range(3))

    counted = 14  # within one 490-byte download
    rt(LOAD)
    # (the turns one chunk takes, and this client's few bytecodes)
    ops, ncalls, by_fn, calls = count_bytecodes(lambda: rt(CHUNK), counted)
    rt(LOAD)
    print(f"{rate:,.0f} commands/s ({1e6 / rate:.1f} µs each, best of 3 runs of {args.n:,}); one `db` chunk: "
          f"{ops:,.0f} Python bytecodes in {ncalls:.0f} Python calls")
    if args.profile:
        print_profile(by_fn, calls, counted)
    twin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
