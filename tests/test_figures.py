"""The figures tinytwin draws (an energy run's trace, an sww01 run's stream, a
what-if sweep) leave the caller's matplotlib as it was: they are drawn on a
figure of their own, never through pyplot, so a notebook's backend is not
switched to Agg under its user, no figure is left in pyplot's registry, and
the runner can draw from any thread."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PNG = b"\x89PNG\r\n\x1a\n"

DRAW = {
    "energy trace": """
        import numpy as np
        from emulator.power.trace import EnergyTrace, plot_trace
        uj = np.full(5000, 34.0)
        uj[1000:2000] = 40.0
        plot_trace(EnergyTrace(1000.0, uj), out, [1.0, 2.0], title="kws01")
    """,
    "sww01 stream": """
        from types import SimpleNamespace
        from runner.sww import plot_stream
        stream = {"energy": {"start_sample": 100, "end_sample": 900, "power_mw": 12.0, "elapsed_s": 0.8},
                  "detection_windows": [(0.2, 0.4)], "detections_after_sync_s": [0.3], "false_positives": [0.6]}
        plot_stream(out, [1e-5] * 1000, 1000.0, [SimpleNamespace(sample=50)], stream, "sww01")
    """,
    "what-if sweep": """
        from emulator.whatif.sweep import plot
        rows = [dict(model="kws01", profile="l4r5", supply_v=1.8, clock_mhz=f, latency_us=1e5 / f,
                     latency_lo_us=0.9e5 / f, latency_hi_us=1.1e5 / f, energy_uj=2e5 / f,
                     energy_lo_uj=1.8e5 / f, energy_hi_uj=2.2e5 / f) for f in (40.0, 80.0, 120.0)]
        plot(rows, out, level=0.9)
    """,
}


@pytest.mark.parametrize("what", list(DRAW))
def test_a_figure_leaves_the_callers_matplotlib_alone(what, tmp_path):
    out = tmp_path / "figure.png"
    script = "\n".join([
        "import sys, matplotlib",
        "matplotlib.use('svg')  # the caller's backend, as a notebook or an application sets one",
        f"out = {str(out)!r}",
        textwrap.dedent(DRAW[what]),
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)",
    ])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "False"]  # the backend is the caller's, and pyplot was never imported
    assert out.read_bytes()[:8] == PNG
