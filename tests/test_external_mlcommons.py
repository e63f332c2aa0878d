"""Acceptance: mlcommons/tiny's Python runner, unmodified, against the twin.

Set ``TINYTWIN_MLCOMMONS_RUNNER`` to a checkout of ``benchmark/runner`` of
mlcommons/tiny (master), e.g.::

    mkdir -p /tmp/mlc && git -C TINY_CLONE archive HEAD:benchmark/runner | tar -x -C /tmp/mlc
    TINYTWIN_MLCOMMONS_RUNNER=/tmp/mlc python -m pytest -q tests/test_external_mlcommons.py

Its Python requirements (pyyaml, numpy, scikit-learn, matplotlib, pyserial,
pyusb, and libusb for pyusb) must be installed. Each test runs the runner's
own ``main.py`` with its own ``devices_*.yaml`` and ``tests_*.yaml`` under
``tinytwin external``, in a temporary working directory (the runner writes
``sessions/`` there), and reads the figures off its ``results.txt`` and
output. The runner's files are checked to be unchanged afterwards.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

RUNNER_ENV = "TINYTWIN_MLCOMMONS_RUNNER"

#: reference board (golden/l4r5zi-tflm-v0.5/reference.csv)
KWS01_IPS = 5.497
AD01_IPS = 99.49
KWS01_UJ = 7373.7
KWS01_TOP1 = "90.1"


@pytest.fixture(scope="module")
def runner() -> Path:
    path = os.environ.get(RUNNER_ENV)
    if not path:
        pytest.skip(f"{RUNNER_ENV} is not set (path to mlcommons/tiny's benchmark/runner)")
    p = Path(path)
    if (p / "benchmark" / "runner" / "main.py").is_file():
        p = p / "benchmark" / "runner"
    assert (p / "main.py").is_file(), f"{RUNNER_ENV}={path}: no main.py there (nor in benchmark/runner/)"
    try:
        import sklearn  # noqa: F401
        import usb.core  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"the runner's requirements are not installed: {exc} (pip install pyusb scikit-learn pyyaml matplotlib)")
    return p


def tree_digest(root: Path) -> dict[str, str]:
    out = {}
    for f in sorted(root.rglob("*")):
        if f.is_file() and "sessions" not in f.relative_to(root).parts and "__pycache__" not in f.parts:
            out[str(f.relative_to(root))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def run_runner(runner: Path, cwd: Path, *, model: str, mode: str, devices: str, tests: str, dataset: Path,
               models_dir: Path, launcher_args: list[str] = (), timeout: float = 1800) -> tuple[str, str]:
    """``tinytwin external ... -- python main.py ...``; returns (results.txt, stdout)."""
    before = tree_digest(runner)
    cmd = [
        sys.executable, "-m", "emulator.cli", "external", "--model", model, "--models-dir", str(models_dir),
        *launcher_args, "--",
        sys.executable, str(runner / "main.py"),
        "--dataset_path", str(dataset),
        "--test_script", str(runner / tests),
        "--device_list", str(runner / devices),
        "--mode", mode,
    ]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert tree_digest(runner) == before, "the runner's files changed"
    tail = (proc.stdout[-3000:] + "\n--- stderr ---\n" + proc.stderr[-3000:])
    assert proc.returncode == 0, tail
    sessions = sorted((cwd / "sessions").glob("*/results.txt"))
    assert sessions, "the runner wrote no results.txt\n" + tail
    return sessions[-1].read_text(), proc.stdout + "\n--- stderr ---\n" + proc.stderr


def median_throughput(results: str) -> float:
    m = re.findall(r"Median throughput is\s+([\d.]+) inf\./sec\.", results)
    assert m, results
    return float(m[-1])


def test_kws01_accuracy(runner, shared, models_dir, tmp_path):
    results, out = run_runner(runner, tmp_path, model="kws01", mode="a", devices="devices_kws_ic_vww.yaml",
                              tests="tests_accuracy.yaml", dataset=shared / "datasets", models_dir=models_dir)
    m = re.findall(r"ulp-mlperf: Top 1% = ([\d.]+)", results)
    assert m == [KWS01_TOP1], results


def test_kws01_performance(runner, shared, models_dir, tmp_path):
    results, out = run_runner(runner, tmp_path, model="kws01", mode="p", devices="devices_kws_ic_vww.yaml",
                              tests="tests_performance.yaml", dataset=shared / "datasets", models_dir=models_dir)
    assert "ERROR" not in results, results
    assert results.count("Runtime requirements have been met.") == 5, results
    ips = median_throughput(results)
    assert abs(ips - KWS01_IPS) <= 0.005 * KWS01_IPS, results


def ad01_dataset(shared: Path, root: Path, count: int = 5) -> Path:
    """An ad01 dataset of ``count`` inputs in the runner's layout: the shared
    input and copies of it with its 128-bin frames rotated (the runner's
    performance loop moves to the next file in every iteration, so it needs
    at least 5; see firmware_api_spec/external_runner.md)."""
    src_dir = shared / "datasets" / "ad01"
    line = (src_dir / "y_labels.csv").read_text().strip().splitlines()[0]
    name, *rest = line.split(",")
    data = np.frombuffer((src_dir / name).read_bytes(), dtype="<f4").reshape(-1, 128)
    out = root / "ad01"
    out.mkdir(parents=True)
    rows = []
    for i in range(count):
        fname = name if i == 0 else f"tinytwin_rot{i:02d}_{name}"
        (out / fname).write_bytes(np.roll(data, 7 * i, axis=0).astype("<f4").tobytes())
        rows.append(",".join([fname, *rest]))
    (out / "y_labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_ad01_performance(runner, shared, models_dir, tmp_path):
    dataset = ad01_dataset(shared, tmp_path / "datasets")
    work = tmp_path / "work"
    work.mkdir()
    results, out = run_runner(runner, work, model="ad01", mode="p", devices="devices_ad.yaml",
                              tests="tests_performance.yaml", dataset=dataset, models_dir=models_dir)
    assert "ERROR" not in results, results
    assert results.count("Runtime requirements have been met.") == 5, results
    ips = median_throughput(results)
    assert abs(ips - AD01_IPS) <= 0.005 * AD01_IPS, results


def test_kws01_energy(runner, shared, models_dir, tmp_path):
    """The runner's own devices YAML and tests_energy.yaml, unmodified: its
    LPM01A supplies 1.8 V, the reference's supply (m-voltage-mv[1800] in the
    board's logs), so its median is the reference's 7373.7 uJ/inf."""
    text = (runner / "devices_kws_ic_vww.yaml").read_text()
    assert re.findall(r"^\s*voltage:\s*([\d.]+)", text, re.M) == ["1.8"], "the runner's YAML changed upstream"
    results, out = run_runner(runner, tmp_path, model="kws01", mode="e", devices="devices_kws_ic_vww.yaml",
                              tests="tests_energy.yaml", dataset=shared / "datasets", models_dir=models_dir,
                              launcher_args=["--energy", "--interface", "h573"])
    m = re.findall(r"Median energy cost is\s+([\d.]+) uJ/inf\.", results)
    assert m, results
    assert "Not valid for submission" not in out, out[-3000:]
    assert results.count("Energy/Inf") == 5, results
    uj = float(m[-1])
    assert abs(uj - KWS01_UJ) <= 0.03 * KWS01_UJ, results
