"""Inferences per second of each model on each backend (wall time of the host).

    python benchmarks/inference_speed.py --models-dir ../shared/models

Each inference is one ``Engine.set_input`` + ``Engine.invoke(1)`` on a fresh
random input, as the twin does for ``infer 1 0``.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from emulator.models import ModelError
from emulator.models.backends import BACKENDS
from emulator.models.engine import open_engine

MODELS = ("kws01", "vww01", "ic01", "ad01")


def rate(engine, seconds: float) -> float:
    p = engine.profile
    rng = np.random.default_rng(0)
    nbytes = p.input_count * p.input_elem_size
    inputs = []
    for _ in range(8):
        if p.input_elem_size == 4:
            inputs.append(rng.normal(0, 1, p.input_count).astype("<f4").tobytes())
        else:
            inputs.append(rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes())
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        engine.set_input(inputs[n % len(inputs)])
        engine.invoke(1)
        engine.results_text()
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| model | " + " | ".join(f"{b} inf/s" for b in BACKENDS) + " |")
    print("|---|" + "---|" * len(BACKENDS))
    for m in MODELS:
        cells = []
        for b in BACKENDS:
            try:
                cells.append(f"{rate(open_engine(m, args.models_dir, backend=b), args.seconds):,.0f}")
            except ModelError as exc:
                cells.append(f"n/a ({str(exc)[:40]})")
        print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
