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
