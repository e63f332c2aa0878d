"""Helpers the benchmark scripts share: the machine's description, a forked
pty server and a bytecode counter."""
from __future__ import annotations

import os
import platform
import sys
import tty
from collections import Counter
from typing import Callable


def machine() -> str:
    """The machine a figure was measured on, as the scripts print it and keep
    it in their JSON (this shared VM's kernel build changes between days)."""
    return (f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def fork_pty_server(answer: Callable[[bytes], bytes]) -> tuple[int, str]:
    """Fork a process that serves a new pty: each ``read()`` of its master
    end (asleep in it between commands) is handed to ``answer``, whose bytes
    are written back. Returns the server's pid and the path of the pty's
    slave end (raw mode)."""
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    name = os.ttyname(slave)
    pid = os.fork()
    if pid == 0:
        try:
            while True:
                out = answer(os.read(master, 4096))
                if out:
                    os.write(master, out)
        finally:
            os._exit(0)
    os.close(master)
    return pid, name


def count_bytecodes(fn: Callable[[], object], times: int) -> tuple[float, float, Counter, Counter]:
    """Call ``fn`` ``times`` times under sys.settrace: Python bytecodes and
    calls per call, and both by function (qualified name), totals."""
    ops, calls, by_fn = 0, Counter(), Counter()

    def tracer(frame, event, arg):
        nonlocal ops
        if event == "call":
            frame.f_trace_opcodes = True
            calls[frame.f_code.co_qualname] += 1
        elif event == "opcode":
            ops += 1
            by_fn[frame.f_code.co_qualname] += 1
        return tracer

    for _ in range(times):
        sys.settrace(tracer)
        try:
            fn()
        finally:
            sys.settrace(None)
    return ops / times, sum(calls.values()) / times, by_fn, calls


def print_profile(by_fn: Counter, calls: Counter, times: int, top: int = 25) -> None:
    """The table ``--profile`` prints: where the bytecodes of one call go."""
    print("| function | bytecodes / command | calls / command |")
    print("|---|---:|---:|")
    for name, k in by_fn.most_common(top):
        print(f"| {name} | {k / times:.0f} | {calls[name] / times:.0f} |")
