"""The figures of merit, computed as the reference procedures compute them.

* Throughput of a window: ``N / runtime`` with the runtime the difference of
  the two ``m-lap-us-`` timestamps around the timed loop; the score is the
  median over the 5 windows (EEMBC EnergyRunner and mlcommons runner).
* Top-1: share of inputs whose highest score is the label (argmax; the first
  maximum on ties, as ``numpy.argmax``).
* AUC, classification models: scikit-learn ``roc_auc_score`` on the score
  vectors normalised to sum 1, one-vs-rest for more than two classes, the
  second column for two classes (mlcommons ``benchmark/runner/main.py``).
* AUC, ad01: each file's score is the mean of the anomaly scores of its
  sliding windows; ``roc_auc_score`` on those scores against the labels
  (0 normal, 1 anomaly).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np

#: MLPerf Tiny rules: a measured window lasts at least 10 s and 10 inferences
MIN_WINDOW_S = 10.0
MIN_WINDOW_INFERENCES = 10
#: performance mode measures this many windows
WINDOWS = 5
#: N is picked for this window duration: 10 s plus a margin for drift
TARGET_WINDOW_S = 11.0


def throughput(iterations: int, elapsed_us: int) -> float:
    if elapsed_us <= 0:
        return math.inf
    return iterations / (elapsed_us / 1e6)


def median_throughput(values: list[float]) -> float:
    return float(statistics.median(values))


#: the share of an energy window's EMON samples that may be lost on the way
#: (the EnergyRunner's ``emon-drop-thresh-pct=0.1``)
EMON_DROP_LIMIT = 0.001


def emon_loss_problems(samples: int, lost: int, unreadable: int) -> list[str]:
    """Why an energy window's samples cannot be trusted (empty if they can):
    more of them lost on the way from the EMON than the EnergyRunner allows."""
    if samples <= 0 or lost <= EMON_DROP_LIMIT * samples:
        return []
    bad = f", {unreadable} line{'s' if unreadable != 1 else ''} unreadable" if unreadable else ""
    return [
        f"lost {lost} of its {samples} EMON samples on the way ({100 * lost / samples:.2f} %{bad}; "
        f"the EnergyRunner allows {100 * EMON_DROP_LIMIT:g} %): check the EMON's USB cable and hub"
    ]


def window_problems(iterations: int, elapsed_us: int) -> list[str]:
    """Why a performance window does not meet the rules (empty if it does)."""
    problems = []
    if elapsed_us / 1e6 < MIN_WINDOW_S:
        problems.append(f"ran {elapsed_us / 1e6:.3f} s, under the {MIN_WINDOW_S:g} s minimum")
    if iterations < MIN_WINDOW_INFERENCES:
        problems.append(f"ran {iterations} inferences, under the minimum of {MIN_WINDOW_INFERENCES}")
    return problems


@dataclass(frozen=True)
class Calibration:
    """Per-inference time and fixed overhead of a window, from two timed runs."""

    single_us: int  # infer 1 0
    multi_iterations: int
    multi_us: int  # infer n 0

    @property
    def inference_us(self) -> float:
        if self.multi_iterations <= 1:
            return float(self.single_us)
        return max(1.0, (self.multi_us - self.single_us) / (self.multi_iterations - 1))

    @property
    def overhead_us(self) -> float:
        return max(0.0, self.single_us - self.inference_us)


def pick_iterations(cal: Calibration, target_s: float = TARGET_WINDOW_S) -> int:
    """The smallest N whose window is expected to last ``target_s``, and at
    least the rules' 10 inferences."""
    n = math.ceil((target_s * 1e6 - cal.overhead_us) / cal.inference_us)
    return max(MIN_WINDOW_INFERENCES, n)


def second_calibration_iterations(single_us: int) -> int:
    """How many inferences the second calibration run uses: about 1 s."""
    return max(2, min(100000, math.ceil(1e6 / max(1, single_us))))


def top1(scores: list[list[float]], labels: list[int]) -> float:
    """Top-1 accuracy in percent."""
    if not scores:
        raise ValueError("no scores")
    pred = np.argmax(np.asarray(scores, dtype=float), axis=1)
    return 100.0 * float(np.mean(pred == np.asarray(labels)))


def _normalised(scores: list[list[float]]) -> np.ndarray:
    """Each row over its sum, the sum added left to right as upstream's
    ``normalize_probabilities`` does (Python's ``sum``; numpy's pairwise sum can
    differ in the last bit, which decides ties in the ROC); a row summing to 0
    or less becomes uniform."""
    rows = []
    for row in scores:
        total = sum(float(v) for v in row)
        rows.append([float(v) / total for v in row] if total > 0 else [1.0 / len(row)] * len(row))
    return np.asarray(rows, dtype=float)


def classification_auc(scores: list[list[float]], labels: list[int], classes: int) -> float | None:
    """AUC as the mlcommons runner computes it; ``None`` when undefined
    (a class missing from the labels)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels)
    p = _normalised(scores)
    if len(set(y.tolist())) < 2:
        return None
    try:
        if p.shape[1] == 2:
            return float(roc_auc_score(y, p[:, 1]))
        if len(set(y.tolist())) != classes:
            return None
        return float(roc_auc_score(y, p, multi_class="ovr", labels=list(range(classes))))
    except ValueError:
        return None


def anomaly_auc(file_scores: list[float], labels: list[int]) -> float | None:
    """AUC of per-file anomaly scores; ``None`` unless both classes occur."""
    from sklearn.metrics import roc_auc_score

    if len(set(labels)) < 2:
        return None
    return float(roc_auc_score(np.asarray(labels), np.asarray(file_scores, dtype=float)))


def anomaly_top1(file_scores: list[float], labels: list[int]) -> float:
    """ad01's "Top-1" as mlcommons/tiny's runner computes it (``calculate_accuracy``
    in benchmark/runner/main.py; the EnergyRunner's post-processing printed the
    same figure): the best ``100 (precision + recall) / 2`` over 100 thresholds
    from the lowest file score up to the highest, a file counting as anomalous
    above the threshold. The quality metric of ad01 is its AUC."""
    s = np.asarray(file_scores, dtype=float)
    y = np.asarray(labels)
    if s.size == 0:
        raise ValueError("no scores")
    best = 0.0
    for threshold in s.min() + np.arange(0.0, 1.0, 0.01) * (s.max() - s.min()):
        anomalous = s > threshold
        tp = float(np.sum(anomalous[y == 1]))
        fp = float(np.sum(anomalous[y == 0]))
        fn = float(np.sum(~anomalous[y == 1]))
        precision = tp / (tp + fp + 1e-8)
        recall = tp / (tp + fn + 1e-8)
        best = max(best, 100 * (precision + recall) / 2)
    return best


def file_score(window_scores: list[float]) -> float:
    """ad01: a file's anomaly score, the mean over its windows."""
    return float(np.mean(np.asarray(window_scores, dtype=float)))
