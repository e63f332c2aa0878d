"""Our runner's own cost per command, without a DUT: the runner's device link
(`runner.link.DutLink`, the code every run uses) downloading 490-byte inputs
in `db` chunks over a pty to a bare echo server (a forked process answering
`m-[Expecting N bytes]`, `m-load-done` and `m-ready` as the firmware does,
asleep in read() between commands), with its log.txt written as in a run.

Prints the runner's download rate against the same echo server driven by a
raw-fd client (the machine's floor for these round trips), the runner
process's CPU µs per command and, deterministic whatever the machine's load,
the Python bytecodes and calls one `db` chunk costs the runner (counted with
sys.settrace). ``--profile`` adds the functions they are spent in.

    python benchmarks/runner_percommand.py [-n 20000] [--profile]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tty
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import count_bytecodes, fork_pty_server, print_profile  # noqa: E402

SIZE = 490
DATA = bytes(i % 251 for i in range(SIZE))


def firmware_answers():
    """What the firmware answers to each command of a download (the state
    lives in the forked server)."""
    left = 0
    pending = b""

    def answer(data: bytes) -> bytes:
        nonlocal left, pending
        pending += data
        out = b""
        while b"%" in pending:
            cmd, _, pending = pending.partition(b"%")
            if cmd.startswith(b"db load "):
                left = int(cmd[8:])
                out += b"m-[Expecting %d bytes]\r\nm-ready\r\n" % left
            elif cmd.startswith(b"db "):
                left -= (len(cmd) - 3) // 2
                out += (b"m-load-done\r\n" if left == 0 else b"") + b"m-ready\r\n"
            else:
                out += b"m-ready\r\n"
        return out

    return answer


def raw_download(fd: int) -> None:
    """The same download with raw writes and reads (the floor)."""
    from runner.protocol import db_commands

    for cmd in [f"db load {SIZE}", *db_commands(DATA)]:
        os.write(fd, cmd.encode() + b"%")
        buf = b""
        while not buf.endswith(b"m-ready\r\n"):
            buf += os.read(fd, 4096)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20000, help="db chunks per measurement (about)")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    from runner.link import DutLink, WireLog
    from runner.protocol import check_db_chunk, check_db_load, db_commands

    pid, path = fork_pty_server(firmware_answers())
    tmp = tempfile.mkdtemp(prefix="tinytwin-runnerbench-")
    log = WireLog(Path(tmp) / "log.txt")
    link = DutLink(path, log, baud=115200, timeout=5.0)
    link.open()
    cmds = db_commands(DATA)

    def download() -> None:  # runner.session's download
        lines = link.command(f"db load {SIZE}")
        check_db_load(lines, SIZE)
        for i, cmd in enumerate(cmds):
            check_db_chunk(link.command(cmd), last=i == len(cmds) - 1)

    per = len(cmds) + 1
    downloads = max(1, args.n // per)

    def rate(fn) -> tuple[float, float]:
        c0 = os.times()
        t = time.perf_counter()
        for _ in range(downloads):
            fn()
        wall = time.perf_counter() - t
        c1 = os.times()
        return downloads * per / wall, (c1.user + c1.system - c0.user - c0.system) / (downloads * per) * 1e6

    raw_fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(raw_fd)
    download()
    runs = []
    for _ in range(3):  # interleaved: runner, raw, runner, raw, ...
        runs.append((rate(download), rate(lambda: raw_download(raw_fd))))
    best_runner = max(r for r, _ in runs)
    best_raw = max(r for _, r in runs)

    link.command(f"db load {SIZE}")
    counted = len(cmds) - 1
    chunks = iter(cmds[:counted])
    ops, ncalls, by_fn, calls = count_bytecodes(lambda: check_db_chunk(link.command(next(chunks)), last=False), counted)
    link.command(cmds[-1])
    print(f"runner: {best_runner[0]:,.0f} commands/s ({best_runner[1]:.1f} µs CPU each); raw-fd client against the same "
          f"server: {best_raw[0]:,.0f} commands/s ({best_raw[1]:.1f} µs CPU each); best of 3 interleaved runs of "
          f"{downloads * per:,} commands; one `db` chunk: {ops:,.0f} Python bytecodes in {ncalls:.0f} Python calls")
    if args.profile:
        print_profile(by_fn, calls, counted)
    link.close()
    log.close()
    os.close(raw_fd)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
