"""The timing checks of the spec's cases (``timing: {check: ...}``), measured
on the host's clock and the board's lap values.

Each check gets the case's answer (every line with its arrival time) and may
make more exchanges; it returns a :class:`TimingVerdict` with the measured
values, which the report prints whether the check holds or not. The limits
(tolerances, waits) are the case's, in the YAML.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from firmware_api_spec import Case

from .wire import Exchange

if TYPE_CHECKING:
    from .session import Conformance

TIMER = 2**32
_LAP = re.compile(rb"m-lap-us-(\d+)")


@dataclass
class TimingVerdict:
    ok: bool
    reason: str = ""
    measured: dict[str, Any] = field(default_factory=dict)
    #: "n/a" when the check cannot be made on this board now
    status: str = ""


def _line_times(ex: Exchange) -> list[tuple[float, bytes]]:
    return [(t, line.rstrip(b"\n").rstrip(b"\r")) for t, line in ex.lines()]


def _laps(ex: Exchange) -> list[tuple[float, int]]:
    out = []
    for t, line in _line_times(ex):
        m = _LAP.fullmatch(line)
        if m:
            out.append((t, int(m.group(1))))
    return out


def _first(ex: Exchange, prefix: bytes) -> float | None:
    for t, line in _line_times(ex):
        if line.startswith(prefix):
            return t
    return None


def _timestamp(session: "Conformance", note: str) -> tuple[float, int] | None:
    """``timestamp%``: (host time the lap line arrived, its value)."""
    drv = session.driver
    ex = session.wire.exchange("timing", b"timestamp%", drv.prep_shape(), note=note)
    laps = _laps(ex)
    if not laps:
        return None
    t, v = laps[0]
    return ex.t_sent + t, v


class Check:
    def on_line(self, case: Case, session: "Conformance") -> Callable[[bytes, Exchange], bytes | None] | None:
        return None

    def measure(self, case: Case, session: "Conformance", answer: Exchange) -> TimingVerdict:
        raise NotImplementedError


class TimerRate(Check):
    """Timestamps a second apart differ by the host's elapsed microseconds;
    the timer ticks finely enough."""

    def measure(self, case, session, answer):
        p = case.timing
        first = _laps(answer)
        if not first:
            return TimingVerdict(False, "no m-lap-us- line to start from")
        stamps = [(answer.t_sent + first[0][0], first[0][1])]
        for _ in range(int(p.get("repeat", 8))):
            s = _timestamp(session, "another timestamp at once")
            if s is None:
                return TimingVerdict(False, "a timestamp% got no m-lap-us- line")
            stamps.append(s)
        time.sleep(float(p.get("span_s", 1.0)))
        s = _timestamp(session, f"a timestamp {p.get('span_s', 1.0)} s later")
        if s is None:
            return TimingVerdict(False, "a timestamp% got no m-lap-us- line")
        stamps.append(s)
        deltas = [(b[1] - a[1]) % TIMER for a, b in zip(stamps, stamps[1:])]
        host_s = stamps[-1][0] - stamps[0][0]
        board_us = sum(deltas)
        rate = board_us / (host_s * 1e6) if host_s > 0 else math.nan
        resolution = 0
        for d in deltas:
            resolution = math.gcd(resolution, d)
        m = {
            "values_us": [v for _, v in stamps],
            "host_elapsed_s": round(host_s, 6),
            "board_elapsed_us": board_us,
            "rate_board_us_per_host_us": round(rate, 5),
            "resolution_us_at_most": resolution,
        }
        tol = float(p.get("rate_tolerance", 0.05))
        if any(d == 0 for d in deltas):
            return TimingVerdict(False, "two timestamps taken one after the other are equal: the timer does not advance", m)
        if not abs(rate - 1) <= tol:
            return TimingVerdict(
                False, f"the timer runs at {rate:.4f} board µs per host µs (allowed 1 ± {tol:g}): it does not count microseconds", m
            )
        limit = int(p.get("max_resolution_us", 1000))
        if resolution > limit:
            return TimingVerdict(False, f"every timestamp step is a multiple of {resolution} µs (allowed at most {limit})", m)
        return TimingVerdict(True, f"{rate:.4f} board µs per host µs over {host_s:.2f} s; steps of {resolution} µs or finer", m)


def _window(answer: Exchange) -> tuple[list[tuple[float, int]], float, float] | TimingVerdict:
    """The lap lines of an infer answer and the times m-infer-start and
    m-infer-done arrived, or the verdict when they are not all there."""
    laps = _laps(answer)
    t_start = _first(answer, b"m-infer-start-")
    t_done = _first(answer, b"m-infer-done")
    if len(laps) != 2 or t_start is None or t_done is None:
        return TimingVerdict(False, f"the answer has {len(laps)} m-lap-us- lines (2 needed) around m-infer-start/-done")
    return laps, t_start, t_done


class WindowCheck(Check):
    """A check of an infer answer's window: its lap lines and the arrival
    times of m-infer-start and m-infer-done."""

    def measure(self, case, session, answer):
        found = _window(answer)
        if isinstance(found, TimingVerdict):
            return found
        return self.judge(case.timing, answer, *found)

    def judge(self, p, answer, laps, t_start, t_done) -> TimingVerdict:
        raise NotImplementedError


class InferWindow(WindowCheck):
    """The two lap values bracket the timed loop."""

    def judge(self, p, answer, laps, t_start, t_done):
        times = [t for t, _ in answer.lines()]
        gaps = [b - a for a, b in zip(times, times[1:])]
        longest = max(gaps) if gaps else 0.0
        window = (laps[1][1] - laps[0][1]) % TIMER
        span = t_done - t_start
        tol, slack = float(p.get("tolerance", 0.1)), float(p.get("slack_ms", 20)) * 1e3
        n = _count(answer, b"m-infer-start-")
        m = {
            "window_us": window,
            "per_inference_us": round(window / n, 1) if n else None,
            "longest_silence_ms": round(longest * 1e3, 3),
            "infer_start_to_done_ms": round(span * 1e3, 3),
        }
        low = (1 - tol) * longest * 1e6 - slack
        high = (1 + tol) * span * 1e6 + slack
        if window < low:
            return TimingVerdict(False, f"the lap values span {window} µs but the board was silent for "
                                        f"{longest * 1e3:.1f} ms: they do not bracket the timed loop", m)
        if window > high:
            return TimingVerdict(False, f"the lap values span {window} µs, more than the {span * 1e3:.1f} ms "
                                        "from m-infer-start to m-infer-done", m)
        return TimingVerdict(True, f"window {window} µs; the longest silence {longest * 1e3:.1f} ms lies inside it", m)


class LapEdges(WindowCheck):
    """The lap lines are printed at the edges of the window."""

    def judge(self, p, answer, laps, t_start, t_done):
        before = laps[0][0] - t_start
        between = laps[1][0] - laps[0][0]
        after = t_done - laps[1][0]
        limit = float(p.get("max_edge_gap_ms", 50)) / 1e3
        m = {
            "infer_start_to_first_lap_ms": round(before * 1e3, 3),
            "between_laps_ms": round(between * 1e3, 3),
            "second_lap_to_infer_done_ms": round(after * 1e3, 3),
        }
        if before > limit or after > limit or between < max(before, after):
            return TimingVerdict(
                False,
                f"the lap lines are not at the window's edges: {before * 1e3:.1f} ms before the first, "
                f"{between * 1e3:.1f} ms between, {after * 1e3:.1f} ms after the second",
                m,
            )
        return TimingVerdict(True, f"first lap {before * 1e3:.1f} ms after m-infer-start, then {between * 1e3:.1f} ms "
                                   f"of inference, second lap {after * 1e3:.1f} ms before m-infer-done", m)


class BusyInput(Check):
    """Input sent while the firmware is busy: what survives."""

    def on_line(self, case, session):
        p = case.timing
        after = p["after"].encode("latin-1")
        inject = p["inject"].encode("latin-1")
        state = {"done": False}

        def hook(line: bytes, ex: Exchange) -> bytes | None:
            if not state["done"] and line.startswith(after):
                state["done"] = True
                return inject
            return None

        return hook

    def measure(self, case, session, answer):
        p = case.timing
        if not answer.injected:
            return TimingVerdict(False, f"no line starting with {p['after']!r} arrived: nothing was sent while busy")
        t_inj = answer.injected[0][0] - answer.t_sent
        laps = _laps(answer)
        drv = session.driver
        if "then" not in p:
            m = {"sent_while_busy": p["inject"], "sent_at_ms": round(t_inj * 1e3, 3)}
            return TimingVerdict(True, f"{p['inject']!r} sent {t_inj * 1e3:.0f} ms into the answer", m)
        then = p["then"].encode("latin-1")
        follow = session.wire.exchange("timing", then, drv.shape(p["then_expect"]),
                                       note=f"what is left of {p['inject']!r} sent while the board was busy")
        drv.wrote(then)
        got = follow.text_lines()
        m = {
            "sent_while_busy": p["inject"],
            "sent_at_ms": round(t_inj * 1e3, 3),
            "window_ms": round((laps[1][0] - laps[0][0]) * 1e3, 3) if len(laps) == 2 else None,
            "then_sent": p["then"],
            "then_answer": got,
        }
        if not session.spec.matches(p["then_expect"], follow.received, drv.model):
            return TimingVerdict(
                False, f"after {p['inject']!r} sent during the run, {p['then']!r} got {got!r}, "
                       f"not {session.spec.describe(p['then_expect'], drv.model)!r}", m
            )
        return TimingVerdict(True, f"{p['inject']!r} sent {t_inj * 1e3:.0f} ms into the answer: only its first "
                                   f"byte survived ({got[0] if got else ''})", m)


class TimerWrap(Check):
    """The microsecond timer wraps at 2^32."""

    def measure(self, case, session, answer):
        p = case.timing
        laps = _laps(answer)
        if not laps:
            return TimingVerdict(False, "no m-lap-us- line")
        t0, v0 = answer.t_sent + laps[0][0], laps[0][1]
        left_s = (TIMER - v0) / 1e6
        max_wait = float(p.get("max_wait_s", 90))
        m: dict[str, Any] = {"value_us": v0, "seconds_to_wrap": round(left_s, 3)}
        early = _early_restart(session.wire.log)
        if early is not None:
            (ta, va), (tb, vb) = early
            m.update({"restart_from_us": va, "restart_to_us": vb, "host_between_s": round(tb - ta, 3)})
            return TimingVerdict(
                False,
                f"the timer went from {va} to {vb} µs while {tb - ta:.1f} s passed: it restarted long before 2^32 µs "
                "(a cycle counter divided by the clock wraps every 2^32 / MHz µs), so a window across that "
                "restart is wrong (unless the board was reset during the session)",
                m,
            )
        if left_s > max_wait:
            return TimingVerdict(
                True,
                f"the timer is at {v0} µs, {left_s:.0f} s before its wrap (more than {max_wait:g} s): run the case "
                "less than that before the wrap (a twin: --timer-start-us 4294000000)",
                m,
                status="n/a",
            )
        time.sleep(left_s + 0.5)
        s = _timestamp(session, "a timestamp after the wrap")
        if s is None:
            return TimingVerdict(False, "a timestamp% after the wrap got no m-lap-us- line", m)
        t1, v1 = s
        host_us = (t1 - t0) * 1e6
        board_us = (v1 - v0) % TIMER
        m.update({"after_wrap_us": v1, "host_elapsed_us": round(host_us), "board_elapsed_mod_2_32_us": board_us})
        tol = float(p.get("rate_tolerance", 0.05))
        if v1 >= v0:
            return TimingVerdict(False, f"{v1} after {v0}: the timer did not wrap when it should have", m)
        if abs(board_us / host_us - 1) > tol:
            return TimingVerdict(False, f"across the wrap the values advanced {board_us} µs modulo 2^32 while "
                                        f"{host_us:.0f} µs passed: the timer does not wrap at 2^32", m)
        return TimingVerdict(True, f"{v0} -> {v1}: {board_us} µs modulo 2^32 for {host_us:.0f} µs of host time", m)


def _early_restart(log: list[Exchange]) -> tuple[tuple[float, int], tuple[float, int]] | None:
    """Two lap values of the session, in host-time order, where the timer went
    back and, counted modulo 2^32, advanced far more than the host's time: it
    restarted, not from near 2^32 (None if no such pair). A timer that only
    runs too fast is timing_timer_rate's to find."""
    laps = sorted((ex.t_sent + t, v) for ex in log for t, v in _laps(ex))
    for (ta, va), (tb, vb) in zip(laps, laps[1:]):
        host_us = (tb - ta) * 1e6
        if vb < va and (vb - va) % TIMER > 2 * host_us + 5e6:
            return (ta, va), (tb, vb)
    return None


def _count(ex: Exchange, prefix: bytes) -> int:
    for _, line in _line_times(ex):
        if line.startswith(prefix):
            try:
                return int(line[len(prefix):])
            except ValueError:
                return 0
    return 0


TIMING_CHECKS: dict[str, Check] = {
    "timer_rate": TimerRate(),
    "infer_window": InferWindow(),
    "lap_edges": LapEdges(),
    "busy_input": BusyInput(),
    "timer_wrap": TimerWrap(),
}
