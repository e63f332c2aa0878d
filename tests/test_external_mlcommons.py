"""Acceptance: mlcommons/tiny's Python runner, unmodified, against the twin.

Set ``TINYTWIN_MLCOMMONS_RUNNER`` to a checkout of ``benchmark/runner`` of
mlcommons/tiny (master), e.g.::

    mkdir -p /tmp/mlc && git -C TINY_CLONE archive HEAD:benchmark/runner | tar -x -C /tmp/mlc
    TINYTWIN_MLCOMMONS_RUNNER=/tmp/mlc python -m pytest -q tests/test_external_mlcommons.py

Its Python requirements (pyyaml, numpy, scikit-learn, matplotlib, pyserial,
pyusb, and libusb for pyusb; ``joulescope`` for the JS220 tests) must be
installed. Each test runs the runner's own ``main.py`` with its own
``devices_*.yaml`` and ``tests_*.yaml`` under ``tinytwin external`` (a
devices YAML of our own only where the set-up needs one, said so), in a
temporary working directory (the runner writes ``sessions/`` there), and
reads the figures off its ``results.txt`` and output. The runner's files are
checked to be unchanged afterwards.
"""
from __future__ import annotations

import hashlib
import os
import re
import signal
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


def launch(runner: Path, cwd: Path, *, model: str, mode: str, devices: str | Path, tests: str, dataset: Path,
           models_dir: Path, launcher_args=(), timeout: float = 1800) -> tuple[int | None, str, str]:
    """``tinytwin external ... -- python main.py ...``: (exit status, stdout,
    stderr); the status is None when the run was still going at ``timeout``
    (the launcher and the runner are then killed)."""
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
    # unbuffered: what a run killed at the timeout printed is still read
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the runner it started
        out, err = proc.communicate()
        rc = None
    assert tree_digest(runner) == before, "the runner's files changed"
    return rc, out, err


def run_runner(runner: Path, cwd: Path, *, model: str, mode: str, devices: str | Path, tests: str, dataset: Path,
               models_dir: Path, launcher_args=(), timeout: float = 1800) -> tuple[str, str]:
    """:func:`launch` that must succeed; returns (results.txt, stdout + stderr)."""
    rc, stdout, stderr = launch(runner, cwd, model=model, mode=mode, devices=devices, tests=tests, dataset=dataset,
                                models_dir=models_dir, launcher_args=launcher_args, timeout=timeout)
    tail = (stdout[-3000:] + "\n--- stderr ---\n" + stderr[-3000:])
    assert rc == 0, tail
    sessions = sorted((cwd / "sessions").glob("*/results.txt"))
    assert sessions, "the runner wrote no results.txt\n" + tail
    return sessions[-1].read_text(), stdout + "\n--- stderr ---\n" + stderr


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


def median_energy(results: str) -> float:
    m = re.findall(r"Median energy cost is\s+([\d.]+) uJ/inf\.", results)
    assert m, results
    return float(m[-1])


@pytest.fixture(scope="module")
def lpm01a_kws01(runner, shared, models_dir, tmp_path_factory) -> tuple[str, str]:
    """The runner's own devices YAML and tests_energy.yaml, unmodified, on the
    H573 + LPM01A bench: (results.txt, output)."""
    text = (runner / "devices_kws_ic_vww.yaml").read_text()
    assert re.findall(r"^\s*voltage:\s*([\d.]+)", text, re.M) == ["1.8"], "the runner's YAML changed upstream"
    return run_runner(runner, tmp_path_factory.mktemp("lpm01a"), model="kws01", mode="e",
                      devices="devices_kws_ic_vww.yaml", tests="tests_energy.yaml", dataset=shared / "datasets",
                      models_dir=models_dir, launcher_args=["--energy", "--interface", "h573"])


def test_kws01_energy(lpm01a_kws01):
    """Its LPM01A supplies 1.8 V, the reference's supply (m-voltage-mv[1800]
    in the board's logs), so its median is the reference's 7373.7 uJ/inf."""
    results, out = lpm01a_kws01
    assert "Not valid for submission" not in out, out[-3000:]
    assert results.count("Energy/Inf") == 5, results
    uj = median_energy(results)
    assert abs(uj - KWS01_UJ) <= 0.03 * KWS01_UJ, results


def elapsed(results: str) -> list[float]:
    return [float(x) for x in re.findall(r"Elapsed time\s*:\s*([\d.]+)", results)]


def test_kws01_energy_with_the_js220(runner, shared, models_dir, tmp_path, lpm01a_kws01):
    """The JS220 bench: the runner's own devices YAML (its JS220 entry,
    raw 1 MHz), the LPM01A absent, the DUT on a 1.8 V bench supply, the real
    joulescope package on the twin's stand-in driver. The runner measures each
    window between the GPI0 *rising* edges, the LPM01A run between the D7
    *falling* edges: each edge is the end of the DUT's timestamp pulse
    instead of its start, so the window moves by the pulse width (the energy
    firmware's hold) and keeps its length; the energy is the LPM01A run's
    within 3 %."""
    pytest.importorskip("joulescope", reason="pip install joulescope (the JS220's host package)")
    results, out = run_runner(runner, tmp_path, model="kws01", mode="e", devices="devices_kws_ic_vww.yaml",
                              tests="tests_energy.yaml", dataset=shared / "datasets", models_dir=models_dir,
                              launcher_args=["--energy", "--interface", "h573", "--emon", "js220"], timeout=2400)
    assert "JS220 on a 1.8 V supply" in out and "speed 0.5x (auto)" in out
    assert "[JS220] Stream reading started" in out and "Sample fetch failed" not in out
    assert results.count("Energy/Inf") == 5, results
    lpm_results, _ = lpm01a_kws01
    assert elapsed(results) == pytest.approx(elapsed(lpm_results), abs=0.002)
    js, lpm = median_energy(results), median_energy(lpm_results)
    assert abs(js - lpm) <= 0.03 * lpm, (js, lpm)


def test_kws01_performance_through_the_h573(runner, shared, models_dir, tmp_path):
    """The performance firmware behind the interface board: the runner uses
    the interface whenever one is present (setbaud 115200, then every DUT
    command through `dut ...`); the DUT's timestamps give the board's figure."""
    results, out = run_runner(runner, tmp_path, model="kws01", mode="p", devices="devices_kws_ic_vww.yaml",
                              tests="tests_performance.yaml", dataset=shared / "datasets", models_dir=models_dir,
                              launcher_args=["--interface", "h573"])
    assert "h573 interface board, performance firmware, no energy monitor" in out
    assert "ERROR" not in results and results.count("Runtime requirements have been met.") == 5, results
    assert abs(median_throughput(results) - KWS01_IPS) <= 0.005 * KWS01_IPS, results


def test_energy_run_with_the_duts_usb_still_plugged_in_fails(runner, shared, models_dir, tmp_path):
    """The DUT's own USB listed too: the runner's device manager takes the
    DUT port (its `dut` entry) over the interface board, so the DUT has no
    power manager, no samples are gathered and print_energy_results fails."""
    rc, out, err = launch(runner, tmp_path, model="kws01", mode="e", devices="devices_kws_ic_vww.yaml",
                          tests="tests_energy.yaml", dataset=shared / "datasets", models_dir=models_dir,
                          launcher_args=["--energy", "--interface", "h573", "--dut-usb"], timeout=900)
    assert rc not in (0, None), (out[-2000:], err[-2000:])
    assert "zero-size array to reduction operation minimum which has no identity" in out + err
    assert "Median energy cost" not in out


def test_dut_with_the_stlink_v3_identity(runner, shared, models_dir, tmp_path):
    """A DUT whose VCP is 0483:374E, the H573's identity: with the runner's
    own YAML it is taken for the interface board and the run never gets past
    the DUT's name (the runner waits for an `m-ready` after the DUT's error for
    `dut name`, for ever); a YAML listing the DUT with that identity and
    `check_name` first (upstream PR #189's approach) tells them apart."""
    (tmp_path / "a").mkdir()
    rc, out, err = launch(runner, tmp_path / "a", model="kws01", mode="p", devices="devices_kws_ic_vww.yaml",
                          tests="tests_performance.yaml", dataset=shared / "datasets", models_dir=models_dir,
                          launcher_args=["--dut-stlink", "v3"], timeout=60)
    assert rc is None, (out[-2000:], err[-2000:])  # still waiting when killed
    assert "Retrieving name from DUT" in out and "Device name retrieved" not in out
    own = tmp_path / "devices_stlink_v3.yaml"
    own.write_text("- name: l4r5zi\n  type: dut\n  check_name: unspecified\n  baud:\n    energy: 9600\n"
                   "    performance: 115200\n    accuracy: 115200\n  usb:\n    0x0483: 0x374E\n"
                   + (runner / "devices_kws_ic_vww.yaml").read_text())
    (tmp_path / "b").mkdir()
    results, out = run_runner(runner, tmp_path / "b", model="kws01", mode="p", devices=own,
                              tests="tests_performance.yaml", dataset=shared / "datasets", models_dir=models_dir,
                              launcher_args=["--dut-stlink", "v3"])
    assert "0483:374E" in out and results.count("Runtime requirements have been met.") == 5, results


def test_stale_lpm01a_stream(runner, shared, models_dir, tmp_path, lpm01a_kws01):
    """The LPM01A still streams from an earlier run (at the board's default
    3.3 V): "Power Manager did not acknowledge" for every setting the runner
    makes during the acquisition, its `volt 1800m` among them; the run goes on
    at 3.3 V and reports 3.3/1.8 of the right energy without an error."""
    plan = tmp_path / "stale.yaml"
    plan.write_text("faults:\n  - do: stream-emon\n")
    (tmp_path / "w").mkdir()
    results, out = run_runner(runner, tmp_path / "w", model="kws01", mode="e", devices="devices_kws_ic_vww.yaml",
                              tests="tests_energy.yaml", dataset=shared / "datasets", models_dir=models_dir,
                              launcher_args=["--energy", "--interface", "h573", "--faults", str(plan)])
    assert out.count("Power Manager did not acknowledge") >= 5
    right = median_energy(lpm01a_kws01[0])
    assert median_energy(results) == pytest.approx(right * 3.3 / 1.8, rel=0.01)


# ---------------------------------------------------------------- sww01 (streaming wakeword)

SWW_ACCURACY = "Accuracy: 2 True positives, 1 False negatives, 0 False positives"  # the runner README's own figure
SWW_PLAYED_S = 9.984  # short_wav_easy10s.wav: 156 of its 157 4-KiB blocks are played


def sww_tests_yaml(runner: Path, mode: str, tmp: Path) -> Path:
    """The runner's tests YAML with the one edit its README asks for: the
    sww01 entry's truth_file set to the short test."""
    src = (runner / ("tests_energy.yaml" if mode == "e" else "tests_performance.yaml")).read_text()
    assert src.count("truth_file: sww_long_test.json") == 1, "the runner's YAML changed upstream"
    out = tmp / f"tests_sww_{mode}.yaml"
    out.write_text(src.replace("truth_file: sww_long_test.json", "truth_file: sww_short_test.json"))
    return out


def sww_figure(results: str, label: str) -> float:
    m = re.findall(rf"{label}\s*:\s*([\d.]+)", results)
    assert m, (label, results)
    return float(m[-1])


@pytest.mark.parametrize("mode", ["e", "p"])
def test_sww01_stream(runner, shared, models_dir, tmp_path, mode):
    """devices_sww.yaml unmodified (interface 0483:374E, LPM01A at 3.3 V, DUT at
    115200), the short test: the README's accuracy line, a 32 ms period, and in
    energy mode the window from 'start' to 'stop'."""
    if not (shared / "sd_card" / "short_wav_easy10s.wav").is_file():
        pytest.skip("../shared/sd_card/short_wav_easy10s.wav is missing")
    work = tmp_path / "work"
    work.mkdir()
    yaml_path = sww_tests_yaml(runner, mode, tmp_path)
    results, out = run_runner(
        runner, work, model="sww01", mode=mode, devices="devices_sww.yaml", tests=str(yaml_path),
        dataset=shared / "datasets", models_dir=models_dir,
        launcher_args=["--energy", "--interface", "h573", "--sd-card", str(shared / "sd_card")],
    )
    assert SWW_ACCURACY in results, results
    assert sww_figure(results, "Average period") == pytest.approx(0.032, rel=0.005)
    duty = sww_figure(results, "Average duty cycle")
    assert 0.5 < duty < 0.65, results
    assert "Estimated throughput" in results
    session = sorted((work / "sessions").glob("*/results.txt"))[-1].parent
    if mode == "e":
        elapsed = sww_figure(results, "Elapsed time")
        # the played audio plus what the sequence adds: the rest of 'start', record_detections,
        # play's start, 'succeeded', the runner's 0.25 s sleep, 'stop' and HAL_SAI_DMAStop's 4 ms
        assert SWW_PLAYED_S + 0.25 < elapsed < SWW_PLAYED_S + 0.5, results
        assert re.search(r"Power\s+: ([\d.]+) mW", results), results
        assert "samples:" in out and "timestamps:2" in out, out[-2000:]
        assert (session / "energy_inf_000.png").is_file()
    else:
        assert "Power Edition" not in results


def test_sww01_stream_wav_uart(runner, shared, models_dir, tmp_path):
    """stream_wav_uart.py straight to the twin's sww01 DUT (0483:374B):
    db load / db <hex> / extract_uart_stream for every 512-sample frame of the
    1 s marvin file; its features and scores are the pure chain's.

    The script's byte swap overflows int16 for samples whose low byte is 0x80
    or more (``(sample & 0xFF) << 8`` on a numpy int16): it sends them as
    negative hex ("-702"), which the firmware rejects ("number of hex digits
    ... must be even"), on a board as on the twin. So the file here is the
    marvin recording with every sample's low byte cleared."""
    pytest.importorskip("scipy")
    src = shared / "sd_card" / "marvin_617de221_0.wav"
    if not src.is_file():
        pytest.skip(f"{src} is missing")
    raw = src.read_bytes()
    samples = np.frombuffer(raw[44:], dtype="<i2") & np.int16(-256)
    wav = tmp_path / "marvin_msb.wav"
    wav.write_bytes(raw[:44] + samples.astype("<i2").tobytes())
    spec = tmp_path / "spec.npz"
    cmd = [sys.executable, "-m", "emulator.cli", "external", "--model", "sww01", "--models-dir", str(models_dir),
           "--hide-real-ports", "--", sys.executable, str(runner / "stream_wav_uart.py"), "--wav_file", str(wav),
           "--specfile", str(spec)]
    before = tree_digest(runner)
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert tree_digest(runner) == before
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = np.load(spec)
    from scipy.io import wavfile

    from emulator.dut.sww01.core import Sww01Core, run_until_idle
    from emulator.dut.sww01.model import open_sww01

    _, data = wavfile.read(wav)
    mono = data[:, 0].astype("<i2")
    core = Sww01Core(engine=open_sww01(models_dir))
    feats, acts = [], []
    for i in range(0, len(mono), 512):  # as the script: the last frame may be short (db load of fewer bytes)
        frame = mono[i : i + 512].tobytes()
        core.feed(b"db load %d%%" % len(frame))
        for k in range(0, len(frame), 512):
            core.feed(b"db " + frame[k : k + 512].hex().encode() + b"%")
        run_until_idle(core)
        core.feed(b"extract_uart_stream%")
        text = run_until_idle(core).decode()
        feats.append([int(v) for v in re.search(r"m-features-\[([^\]]+)\]", text).group(1).split(",")])
        acts.append([int(v) for v in re.search(r"m-activations-\[([^\]]+)\]", text).group(1).split(",")])
    assert got["specgram"].shape == (32, 40)  # 16000 samples: 31 frames and a short one
    assert np.array_equal(got["specgram"], np.array(feats))
    assert np.array_equal(got["activations"], np.array(acts))
