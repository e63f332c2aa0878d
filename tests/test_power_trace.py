"""Trace tools on the reference traces: format, levels, plots."""
from __future__ import annotations

import re

import numpy as np
import pytest

from emulator.power.trace import (
    EnergyTrace,
    levels,
    plot_trace,
    read_timestamps,
    read_trace,
    trace_from_samples,
    windows_from_timestamps,
    write_timestamps,
    write_trace,
)


def _log_windows(log: str) -> list[tuple[float, float]]:
    """(energy uJ, power uW) of each window, as the EnergyRunner printed them."""
    e = [float(x) for x in re.findall(r"Energy       :\s+([\d.]+) uJ", log)]
    p = [float(x) for x in re.findall(r"Power        :\s+([\d.]+) uW", log)]
    return list(zip(e, p))


@pytest.mark.parametrize("model", ["kws", "ic", "vww", "ad"])
def test_reference_trace_windows_match_the_runner(golden, model):
    d = golden / model / "energy"
    tr = read_trace(d / "trace1-energy.bin")
    assert tr.rate_hz == 1000.0
    ts = read_timestamps(d / "trace1-timestamps.json")
    wins = windows_from_timestamps(ts)
    assert len(ts) == 11 and len(wins) == 5 and wins[0] == (ts[1], ts[2])
    logged = _log_windows((d / "results.txt").read_text())
    assert len(logged) == 5
    lv = levels(tr, wins)
    for w, (e_uj, p_uw) in zip(lv.windows, logged):
        # the runner adds a few hundred µs of margin: within one sample's energy
        assert w["energy_uj"] == pytest.approx(e_uj, abs=45.0)
        assert w["power_mw"] == pytest.approx(p_uw / 1000, rel=0.01)
    assert 33.0 < lv.idle_mw < 34.6
    assert lv.inference_mw == pytest.approx(np.mean([p for _, p in logged]) / 1000, rel=0.01)



@pytest.mark.parametrize("model, within_pct", [("kws", 0.006), ("ic", 0.006), ("vww", 0.006), ("ad", 0.13)])
def test_our_runners_window_sum_against_the_energyrunners(golden, model, within_pct):
    """Our runner sums samples[j0:j1] between the edges' sample counts (as
    mlcommons/tiny's runner does); the EnergyRunner picks samples by finer
    times. On the reference traces that differs by one sample at an edge at
    most: what runner/emon_lpm01a.py's docstring states."""
    d = golden / model / "energy"
    tr = read_trace(d / "trace1-energy.bin")
    wins = windows_from_timestamps(read_timestamps(d / "trace1-timestamps.json"))
    logged = _log_windows((d / "results.txt").read_text())
    one_sample = []
    for (t0, t1), (e_uj, _) in zip(wins, logged):
        j0, j1 = round(t0 * tr.rate_hz), round(t1 * tr.rate_hz)
        ours = float(tr.uj[j0:j1].sum())
        assert abs(ours - e_uj) / e_uj * 100 <= within_pct
        one_sample.append(abs(ours - e_uj) <= 1.05 * max(tr.uj[j0 - 1 : j0 + 1].max(), tr.uj[j1 - 1 : j1 + 1].max()))
    assert all(one_sample)

def test_levels_of_a_synthetic_trace():
    p = np.full(10_000, 34.0)
    p[2000:5000] = 41.0
    p[100:130] = 36.0  # a print: does not move the median
    tr = EnergyTrace(1000.0, p)  # at 1 kHz, uJ per sample = mW
    lv = levels(tr, [(2.0, 5.0)])
    assert lv.idle_mw == 34.0 and lv.inference_mw == 41.0
    assert lv.windows[0]["energy_uj"] == pytest.approx(3 * 41_000)
    with pytest.raises(ValueError):
        levels(tr, [])


def test_write_read_roundtrip(tmp_path, golden):
    tr = read_trace(golden / "ad" / "energy" / "trace1-energy.bin")
    out = write_trace(tmp_path / "trace1-energy.bin", tr)
    assert out.read_bytes() == (golden / "ad" / "energy" / "trace1-energy.bin").read_bytes()
    ts = read_timestamps(golden / "ad" / "energy" / "trace1-timestamps.json")
    write_timestamps(tmp_path / "t.json", ts)
    assert read_timestamps(tmp_path / "t.json") == ts
    j = trace_from_samples([40e-6, 41e-6], 1000.0)
    assert j.uj.tolist() == pytest.approx([40.0, 41.0])
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x00abcd")
    with pytest.raises(ValueError, match="0xF1"):
        read_trace(bad)


def test_plot_is_a_png(tmp_path, golden):
    d = golden / "kws" / "energy"
    tr = read_trace(d / "trace1-energy.bin")
    ts = read_timestamps(d / "trace1-timestamps.json")
    png = plot_trace(tr, tmp_path / "energy.png", ts, title="kws01 reference")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_plot_labels_every_window_and_hides_none():
    """Energy per inference over each window, a legend outside the axes (the
    last window used to sit under it), the y axis from 0, and a note."""
    from emulator.power.trace import trace_figure

    rate = 1000.0
    uj = np.full(20_000, 34.0)  # 34 mW idle
    wins = [(1.0 + 3.5 * i, 3.0 + 3.5 * i) for i in range(5)]
    for a, b in wins:
        uj[int(a * rate) : int(b * rate)] = 40.0
    labels = [f"W{i + 1}\n{7400 + i:,.1f} µJ/inf" for i in range(5)]
    fig = trace_figure(EnergyTrace(rate, uj), [x for w in wins for x in w], wins, "kws01",
                       window_labels=labels, note="partial run: it stopped after 5 of 6 windows")
    ax = fig.axes[0]
    fig.canvas.draw()
    texts = [t.get_text() for t in ax.texts]
    assert all(lab in texts for lab in labels)
    assert any(t.startswith("partial run") for t in texts)
    assert ax.get_ylim()[0] == 0
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    axes_box = ax.get_window_extent(renderer)
    assert legend.y1 <= axes_box.y0  # below the plotting area: covers no window
    # the labels of windows next to each other do not overlap
    boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_text() in labels]
    assert not any(a.overlaps(b) for a, b in zip(boxes, boxes[1:]))
