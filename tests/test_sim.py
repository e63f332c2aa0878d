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
