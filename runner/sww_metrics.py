"""Scoring a streaming-wakeword (sww01) run the way mlcommons/tiny's runner scores it.

``calc_detection_stats()`` of ``benchmark/runner/streaming_ww_utils.py`` (read at
1afd2c9), reimplemented; pure, no I/O. Its code differs from its README, and the
code is followed here:

* the first detection timestamp is the DUT's sync pulse (first frame after
  ``start``); every other timestamp is taken relative to it, in ms;
* a truth window ``(t_start, t_stop)`` (s) counts as a true positive when some
  detection lies in ``[t_start, t_stop + 2 * suppression]``: the code adds the
  suppression delay to ``t_stop`` and then compares with ``t_stop + delay`` again
  (the README says ``t_stop + 1 s``); all detections in that range are consumed;
  a window without one is a false negative (its ``t_start`` is recorded);
* the remaining detections are debounced in order: each survivor deletes every
  later one within ``(t, t + debounce]``; the survivors are the false positives.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DetectionStats:
    true_positives: tuple[float, ...]  # t_start (s) of each window detected
    false_negatives: tuple[float, ...]  # t_start (s) of each window missed
    false_positives: tuple[float, ...]  # time (s, after the sync pulse) of each false detection

    def accuracy_line(self) -> str:
        """The runner's results.txt wording."""
        return (f"Accuracy: {len(self.true_positives)} True positives, {len(self.false_negatives)} False negatives, "
                f"{len(self.false_positives)} False positives")


def detection_stats(timestamps_ms, windows, suppression_s: float = 1.0, debounce_s: float = 1.0) -> DetectionStats:
    """Score detection timestamps (ms, as the interface board records them; the
    first is the sync pulse) against truth windows ``[(t_start, t_stop), ...]`` (s)."""
    ts = [float(t) for t in timestamps_ms]
    if not ts:
        raise ValueError("no detections captured: there must be at least one, the sync pulse of the first frame")
    rel = [t - ts[0] for t in ts[1:]]
    tp: list[float] = []
    fn: list[float] = []
    for t_start, t_stop in windows:
        t_stop = float(t_stop) + suppression_s
        hit = [t for t in rel if float(t_start) <= t / 1000 <= t_stop + suppression_s]
        if hit:
            tp.append(float(t_start))
            rel = [t for t in rel if not float(t_start) <= t / 1000 <= t_stop + suppression_s]
        else:
            fn.append(float(t_start))
    debounce_ms = int(debounce_s * 1000)
    i = 0
    while i < len(rel):
        cur = rel[i]
        rel = [t for t in rel if not (cur < t <= cur + debounce_ms)]
        i += 1
    return DetectionStats(tuple(tp), tuple(fn), tuple(t / 1000 for t in rel))


# ---------------------------------------------------------------- the interface board's lists


#: one TIM2 tick of the interface board (s): the duty-cycle edges are raw ticks
TICK_S = 10e-6
#: the upstream runner warns when the frame period varies by more than this
PERIOD_SPREAD_WARNING = 0.02


@dataclass(frozen=True)
class DutyCycle:
    """``process_dutycycle()`` of the upstream runner (``streaming_ww_utils.py``)."""

    duty_cycle: float
    period_s: float
    processing_s: float
    start_times_s: tuple[float, ...]
    stop_times_s: tuple[float, ...]
    warnings: tuple[str, ...] = ()

    @property
    def throughput(self) -> float:
        """What the upstream runner prints as ``Estimated throughput``: 1 / the
        mean processing (high) time, not 1 / the period."""
        return 1.0 / self.processing_s


def duty_cycle(start_ticks, stop_ticks) -> DutyCycle:
    """The duty cycle of the Processing pin from the interface board's first
    rising and falling edges (TIM2 ticks of 10 us): the lists are cut to the
    shorter one, on-time = stop - start, period = mean of the start-to-start
    intervals, duty = mean on-time / period."""
    starts = [float(t) * TICK_S for t in start_ticks]
    stops = [float(t) * TICK_S for t in stop_ticks]
    warnings = []
    if len(starts) != len(stops):
        warnings.append(f"Number of start times ({len(starts)}) and number of stop times ({len(stops)}) should be equal")
        n = min(len(starts), len(stops))
        starts, stops = starts[:n], stops[:n]
    if len(starts) < 2:
        raise ValueError(
            f"the interface board recorded {len(starts)} processing pulse(s): a period needs at least 2 "
            "(was the audio played, and is the DUT's Processing pin wired to DUT_DUTY_CYCLE?)"
        )
    on = [b - a for a, b in zip(starts, stops)]
    periods = [b - a for a, b in zip(starts, starts[1:])]
    mean_period = sum(periods) / len(periods)
    spread = (max(periods) - min(periods)) / mean_period
    if spread > PERIOD_SPREAD_WARNING:
        warnings.append(f"Frame period variation exceeds 2%: min {min(periods) * 1e3:.3f} ms, max {max(periods) * 1e3:.3f} ms")
    mean_on = sum(on) / len(on)
    return DutyCycle(mean_on / mean_period, mean_period, mean_on, tuple(starts), tuple(stops), tuple(warnings))


def parse_detections(lines: list[str]) -> list[int]:
    """The lines the interface board answers ``print_detections`` with (its
    ``m-ready`` excluded): ``Detection Timestamps (ms)`` then ``<ms>,`` lines."""
    if not lines or lines[0] != "Detection Timestamps (ms)":
        raise ValueError(f"the answer to print_detections must start with 'Detection Timestamps (ms)', got {lines[:1]!r}")
    out = []
    for ln in lines[1:]:
        text = ln.strip().rstrip(",").strip()
        if not text.isdigit():
            raise ValueError(f"print_detections: {ln!r} is not a timestamp in ms")
        out.append(int(text))
    return out


def parse_dutycycle(lines: list[str]) -> tuple[list[int], list[int]]:
    """The lines of ``print_dutycycle`` (the last one ends in ``m-ready``):
    the start ticks and the stop ticks."""
    if not lines or "Duty cycle start times" not in lines[0]:
        raise ValueError(f"the answer to print_dutycycle must start with 'Duty cycle start times (s)', got {lines[:1]!r}")
    starts: list[int] = []
    stops: list[int] = []
    target = starts
    for ln in lines[1:]:
        if "Duty cycle stop times" in ln:
            target = stops
            continue
        for tok in ln.replace("m-ready", "").split(","):
            tok = tok.strip()
            if tok:
                if not tok.isdigit():
                    raise ValueError(f"print_dutycycle: {tok!r} in {ln!r} is not a tick count")
                target.append(int(tok))
    return starts, stops


def parse_activations(lines: list[str]) -> tuple[list[int], int]:
    """The scores of the DUT's ``stop`` answer (``target activations:`` then
    ``[v, v, ...]``), joined as the upstream runner joins them. Values the
    relay garbled (bytes lost on the interface board) are replaced by the
    value before them, as upstream does "to avoid corrupting the timing"
    (``streaming_ww_utils.py``; a garbled first value is dropped), and
    counted: returns (values, bad)."""
    text = "".join(lines)
    at = text.find("target activations:")
    if at < 0:
        return [], 0
    body = text[at + len("target activations:"):]
    lo, hi = body.find("["), body.rfind("]")
    if lo < 0 or hi < lo:
        return [], 0
    vals, bad = [], 0
    for tok in body[lo + 1 : hi].split(","):
        tok = tok.strip()
        try:
            vals.append(int(tok))
        except ValueError:
            bad += 1
            if vals:
                vals.append(vals[-1])
    return vals, bad
