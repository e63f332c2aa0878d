"""The runner's waits for the device (runner.lines): a wait first looks for the
answer without sleeping (``SerialLines.SPIN_S``), then sleeps in poll() for
the rest; it spins only as its process's only thread.

Each case runs in a process of its own (the test session's threads would
turn the spin off): a real pty, a forked server on its master end that
answers ``m-ready`` to a ``%`` command after the delay the command names, and
the runner's ``DutLink`` on the slave end through pyserial."""
from __future__ import annotations

import json
import subprocess
import sys

CASE = r"""
import json, os, sys, threading, time, tty
from runner.link import DutLink, WireLog, open_serial

master, slave = os.openpty()
tty.setraw(master)
tty.setraw(slave)
path = os.ttyname(slave)
server = os.fork()
if server == 0:  # the server: "<ms>%" -> m-ready after <ms> ms
    try:
        while True:
            cmd = os.read(master, 4096).decode()
            if cmd.endswith("%"):
                time.sleep(int(cmd[:-1]) / 1000)
                os.write(master, b"m-ready\r\n")
    finally:
        os._exit(0)

yields = 0
sched_yield = os.sched_yield
def counting_yield():
    global yields
    yields += 1
    sched_yield()
os.sched_yield = counting_yield

if sys.argv[1] == "thread":
    done = threading.Event()
    threading.Thread(target=done.wait, daemon=True).start()
link = DutLink(path, WireLog(None), baud=115200)
link._ser = open_serial(path, 115200)
out = []
for delay_ms, within_s in json.loads(sys.argv[2]):
    yields = 0
    t = time.monotonic()
    link._write(f"{delay_ms}%")
    line = link._read_line(t + within_s)
    out.append({"line": line, "yields": yields, "s": time.monotonic() - t})
os.kill(server, 9)
print(json.dumps(out))
"""


def run_case(threads: str, waits: list[tuple[int, float]]) -> list[dict]:
    r = subprocess.run([sys.executable, "-c", CASE, threads, json.dumps(waits)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_wait_spins_then_sleeps_until_a_late_answer():
    fast, late = run_case("one", [(0, 2.0), (50, 2.0)])
    assert fast["line"] == "m-ready"
    assert late["line"] == "m-ready" and late["s"] >= 0.045
    assert late["yields"] > 0  # it looked without sleeping first
    # ... for SPIN_S (200 µs: a few hundred looks at most), then slept: 50 ms of looks would be thousands
    assert late["yields"] < 1000


def test_a_wait_without_an_answer_ends_at_its_deadline():
    (none,) = run_case("one", [(300, 0.1)])
    assert none["line"] is None
    assert none["s"] >= 0.095


def test_a_runner_with_another_thread_does_not_spin():
    fast, late = run_case("thread", [(0, 2.0), (50, 2.0)])
    assert fast["line"] == late["line"] == "m-ready"
    assert fast["yields"] == late["yields"] == 0


def test_a_wait_shorter_than_the_spin_ends_at_its_deadline():
    # 0.1 ms to wait, the answer comes after 300 ms: the spin stops at the deadline
    (r,) = run_case("one", [(300, 0.0001)])
    assert r["line"] is None
    assert r["s"] < 0.25
