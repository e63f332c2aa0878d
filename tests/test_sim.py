"""The clock: speed parsing, pacing (pure, no wall clock), busy periods."""
from __future__ import annotations

import math

import pytest

from emulator.sim import MS, S, Pacer, Speed, Twin


def test_speed_parse():
    assert Speed.parse("realtime").is_realtime
    assert Speed.parse("fast").is_fast
    assert Speed.parse("10x").factor == 10.0
    assert Speed.parse(2.5).factor == 2.5
    with pytest.raises(ValueError, match="realtime"):
        Speed.parse("quick")
    with pytest.raises(ValueError, match="> 0"):
        Speed.parse("0")


def test_pacer_factor_maps_wall_to_sim_both_ways():
    p = Pacer(Speed.parse("10"))
    p.anchor(100.0, 5 * S, busy=False)
    assert p.sim_target(101.0) == pytest.approx(15 * S)  # 1 wall s = 10 sim s
    assert p.wall_deadline(25 * S) == pytest.approx(102.0)
    assert not p.unbounded
    p.anchor(100.0, 5 * S, busy=True)  # a factor ignores busy
    assert p.rate == 10.0


def test_pacer_fast_runs_flat_out_only_while_busy():
    p = Pacer(Speed.parse("fast"))
    p.anchor(50.0, 7 * S, busy=True)
    assert p.unbounded and p.sim_target(50.0) == math.inf and p.wall_deadline(1e30) == -math.inf
    p.anchor(50.0, 7 * S, busy=False)  # idle: follow wall time 1:1
    assert p.rate == 1.0
    assert p.sim_target(50.5) == pytest.approx(7 * S + 500 * MS)
    assert p.wall_deadline(8 * S) == pytest.approx(51.0)


def test_busy_periods_are_paired_by_construction():
    twin = Twin("fast")
    try:
        env = twin.env
        assert twin.busy_count == 0 and not twin.pacer.unbounded

        def proc():
            with twin.busy():
                yield env.timeout(5)
                raise RuntimeError("a device bug")

        env.process(proc())
        done = twin.busy_until(env.timeout(10))
        ran = []
        twin.schedule(3, lambda: ran.append(twin.busy_count), busy=True)
        assert twin.busy_count == 2 and twin.pacer.unbounded
        twin.step_until(3)
        assert ran == [3]  # inside its own busy period (+ proc + busy_until)
        with pytest.raises(RuntimeError):
            twin.step_until(5)
        assert twin.busy_count == 1  # the failing process released its period
        twin.run_until_idle()
        assert done.processed and twin.busy_count == 0 and not twin.pacer.unbounded
    finally:
        twin.close()


def test_a_scheduled_busy_call_that_raises_still_ends_its_period():
    twin = Twin("fast")
    try:
        twin.schedule(1, lambda: 1 / 0, busy=True)
        with pytest.raises(ZeroDivisionError):
            twin.run_until_idle()
        assert twin.busy_count == 0
    finally:
        twin.close()


# -- the fast-mode loop's spin gate (pure) ------------------------------------------------------


def test_spin_gate_opens_while_no_task_waits_for_a_cpu_and_closes_when_some_do():
    from emulator.sim import SpinGate

    gate = SpinGate()
    assert gate.open  # before any reading: spin, as a twin always did
    assert gate.observe(1_000_000, 10.0) and gate.next_at == 10.0 + SpinGate.WINDOW_S  # the first reading only starts a window
    # one twin and one runner on two cores: some task waits 10 % of the time
    assert gate.observe(1_050_000, 10.5)
    # two pairs on two cores: 58 % while spinning -> stop spinning
    assert not gate.observe(1_340_000, 11.0)
    # still 41 % with the loop asleep in poll(): stays closed
    assert not gate.observe(1_545_000, 11.5)
    # the other pair is done: nobody waits -> spin again
    assert gate.observe(1_545_000, 12.0)
    # the limit is a share of the window, whatever its length (a host that paused)
    limit_us = SpinGate.MAX_WAITING * 1e6
    assert gate.observe(1_545_000 + int(limit_us * 4) - 1, 16.0)
    assert not gate.observe(1_545_000 + int(limit_us * 4) + int(limit_us * 2), 18.0)


def test_cpu_stall_us_reads_the_some_line_of_the_kernels_cpu_pressure(tmp_path):
    import os

    from emulator.sim import cpu_stall_us

    f = tmp_path / "cpu"
    f.write_text("some avg10=2.95 avg60=10.45 avg300=16.63 total=1313593703\n"
                 "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    fd = os.open(f, os.O_RDONLY)
    try:
        assert cpu_stall_us(fd) == 1313593703
        assert cpu_stall_us(fd) == 1313593703  # read again from the start (pread)
    finally:
        os.close(fd)
    f.write_text("garbage\n")
    fd = os.open(f, os.O_RDONLY)
    try:
        assert cpu_stall_us(fd) is None
    finally:
        os.close(fd)
    assert cpu_stall_us(-1) is None  # (closed, or never opened)
    if os.path.exists("/proc/pressure/cpu"):
        fd = os.open("/proc/pressure/cpu", os.O_RDONLY)
        try:
            first = cpu_stall_us(fd)
            assert first is None or cpu_stall_us(fd) >= first  # None: psi=0 on the kernel's command line
        finally:
            os.close(fd)
