"""Energy traces in the EnergyRunner's format, their levels and plots.

File formats (as the EEMBC EnergyRunner writes them next to a session's
``log.txt``):

``trace1-energy.bin``
    one byte ``0xF1``; then little-endian float32 values: the sample rate
    (Hz), then one value per sample: the energy in µJ drawn during that
    sample period (at 1 kHz, numerically the mean power in mW).
``trace1-timestamps.json``
    a JSON list of the times (s, from the first sample) of the timestamp
    falling edges seen by the EMON.

Sample ``i`` covers ``[i/rate, (i+1)/rate)``; a time ``t`` maps to sample
index ``round(t * rate)``, so the energy between two timestamps is the sum of
the samples in between (what the runners report per window).
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

MAGIC = 0xF1


@dataclass
class EnergyTrace:
    rate_hz: float
    uj: np.ndarray  # energy per sample, µJ

    def __post_init__(self) -> None:
        self.uj = np.asarray(self.uj, dtype=float)
        if not self.rate_hz > 0:
            raise ValueError("the sample rate must be > 0")

    @property
    def duration_s(self) -> float:
        return len(self.uj) / self.rate_hz

    @property
    def power_mw(self) -> np.ndarray:
        """Mean power of each sample (mW)."""
        return self.uj * self.rate_hz * 1e-3

    def index(self, t: float) -> int:
        return int(min(max(round(t * self.rate_hz), 0), len(self.uj)))

    def energy_uj(self, t0: float, t1: float) -> float:
        """Energy (µJ) of the samples between times ``t0`` and ``t1``."""
        return float(self.uj[self.index(t0) : self.index(t1)].sum())

    def span_s(self, t0: float, t1: float) -> float:
        """The duration the samples of :meth:`energy_uj` cover."""
        return (self.index(t1) - self.index(t0)) / self.rate_hz

    def mean_power_mw(self, t0: float, t1: float) -> float:
        span = self.span_s(t0, t1)
        if span <= 0:
            raise ValueError(f"no samples between {t0} s and {t1} s")
        return self.energy_uj(t0, t1) / span * 1e-3


def read_trace(path: str | Path) -> EnergyTrace:
    data = Path(path).read_bytes()
    if not data or data[0] != MAGIC:
        raise ValueError(f"{path}: not an EnergyRunner energy trace (first byte must be 0xF1)")
    body = data[1:]
    if len(body) < 4 or len(body) % 4:
        raise ValueError(f"{path}: truncated trace ({len(body)} bytes after the marker)")
    values = np.frombuffer(body, dtype="<f4")
    return EnergyTrace(float(values[0]), values[1:].astype(float))


def write_trace(path: str | Path, trace: EnergyTrace) -> Path:
    path = Path(path)
    body = np.concatenate(([trace.rate_hz], trace.uj)).astype("<f4").tobytes()
    path.write_bytes(bytes([MAGIC]) + body)
    return path


def read_timestamps(path: str | Path) -> list[float]:
    values = json.loads(Path(path).read_text())
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
        raise ValueError(f"{path}: expected a JSON list of times in seconds")
    return [float(v) for v in values]


def write_timestamps(path: str | Path, times: Sequence[float]) -> Path:
    """Written as the EnergyRunner does: tab-indented, millisecond resolution."""
    path = Path(path)
    items = ",\n".join(f"\t{round(float(t), 3)!r}" for t in times)
    path.write_text("[\n" + items + ("\n" if items else "") + "]")
    return path


def trace_from_samples(samples_j: Sequence[float], rate_hz: float) -> EnergyTrace:
    """An :class:`EnergyTrace` from an LPM01A energy stream (J per sample)."""
    return EnergyTrace(rate_hz, np.asarray(samples_j, dtype=float) * 1e6)


def windows_from_timestamps(times: Sequence[float]) -> list[tuple[float, float]]:
    """Energy windows: consecutive pairs of timestamps. An odd count means a
    lone timestamp first (the runner's ``io dut timestamp`` check before the
    first window); it is skipped."""
    ts = list(times)
    if len(ts) % 2:
        ts = ts[1:]
    return [(ts[i], ts[i + 1]) for i in range(0, len(ts), 2)]


@dataclass
class TraceLevels:
    idle_mw: float  # median power outside the windows
    inference_mw: float  # total window energy / total window time
    windows: list[dict] = field(default_factory=list)  # per window: t0, t1, energy_uj, power_mw


def levels(trace: EnergyTrace, windows: Sequence[tuple[float, float]], margin_s: float = 0.05) -> TraceLevels:
    """Idle level (median of the samples between and around the windows, with
    ``margin_s`` kept clear of each edge) and inference level (energy in the
    windows over their duration)."""
    if not windows:
        raise ValueError("no windows: need at least two timestamps")
    p = trace.power_mw
    outside = np.ones(len(p), dtype=bool)
    per = []
    e_tot = t_tot = 0.0
    for t0, t1 in windows:
        outside[trace.index(t0 - margin_s) : trace.index(t1 + margin_s)] = False
        e, span = trace.energy_uj(t0, t1), trace.span_s(t0, t1)
        per.append({"t0": t0, "t1": t1, "energy_uj": e, "power_mw": e / span * 1e-3 if span else float("nan")})
        e_tot += e
        t_tot += span
    rest = p[outside]
    if not len(rest):
        raise ValueError("no samples outside the windows")
    return TraceLevels(float(np.median(rest)), e_tot / t_tot * 1e-3, per)


def plot_trace(
    trace: EnergyTrace,
    path: str | Path,
    timestamps: Sequence[float] = (),
    windows: Sequence[tuple[float, float]] | None = None,
    title: str | None = None,
    window_labels: Sequence[str] | None = None,
    note: str | None = None,
) -> Path:
    """Save :func:`trace_figure` as a PNG at ``path``."""
    path = Path(path)
    trace_figure(trace, timestamps, windows, title, window_labels, note).savefig(path, dpi=100)
    return path


def trace_figure(
    trace: EnergyTrace,
    timestamps: Sequence[float] = (),
    windows: Sequence[tuple[float, float]] | None = None,
    title: str | None = None,
    window_labels: Sequence[str] | None = None,
    note: str | None = None,
):
    """A matplotlib figure of power over time from 0 mW, timestamps as
    vertical lines, windows shaded and labelled above the axes
    (``window_labels``, one per window, e.g. the energy per inference;
    default: the window's number and mean power). ``note`` (e.g. that the run
    stopped early) is printed on the plot. The legend sits below the axes, so
    it hides no window. The figure is drawn without pyplot (see
    :mod:`emulator.figures`): there is nothing to close."""
    from ..figures import new_figure

    if windows is None:
        windows = windows_from_timestamps(timestamps) if len(timestamps) >= 2 else []
    t = np.arange(len(trace.uj)) / trace.rate_hz
    span = float(t[-1]) if len(t) > 1 and t[-1] > 0 else 1.0
    fig = new_figure(figsize=(12, 5))
    ax = fig.subplots()
    power = trace.power_mw
    ax.plot(t, power, lw=0.6, color="tab:blue", label="power")
    raised = False
    prev_x, prev_up = None, True
    for i, (a, b) in enumerate(windows):
        ax.axvspan(a, b, color="tab:orange", alpha=0.18, label="energy window" if i == 0 else None)
        if window_labels is not None and i < len(window_labels):
            text = window_labels[i]
        elif trace.span_s(a, b) > 0:
            text = f"W{i + 1}\n{trace.mean_power_mw(a, b):.2f} mW"
        else:
            text = f"W{i + 1}"
        # a label too close to the one before goes one row up, so short
        # windows close together do not print over each other
        x = (a + b) / 2
        up = prev_x is not None and not prev_up and (x - prev_x) / span < 0.1
        raised |= up
        ax.text(x, 1.01 + 0.13 * up, text, transform=ax.get_xaxis_transform(),
                ha="center", va="bottom", fontsize=7, linespacing=1.1)
        prev_x, prev_up = x, up
    for i, ts in enumerate(timestamps):
        ax.axvline(ts, color="tab:red", lw=0.8, label="timestamp" if i == 0 else None)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("power (mW)")
    top = float(np.max(power)) if len(power) else 0.0
    ax.set_ylim(0, top * 1.12 if top > 0 else 1.0)
    ax.set_xlim(0, span)
    ax.grid(True, alpha=0.3)
    ax.set_title(title or "EMON energy trace", pad=(78 if raised else 38) if windows else 14)
    if note:
        ax.text(0.01, 0.97, note, transform=ax.transAxes, ha="left", va="top", fontsize=9, color="tab:red",
                bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "tab:red", "alpha": 0.9})
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
