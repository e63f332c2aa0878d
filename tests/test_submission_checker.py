"""Acceptance: MLPerf Tiny's own submission checker accepts what our runner writes.

Opt-in. Set ``TINYTWIN_MLCOMMONS_TINY`` to a checkout (or an archive) of
mlcommons/tiny that holds ``tools/submission/submission_checker.py``
(checked against commit 1afd2c9, checks of version v1.4), e.g.::

    mkdir -p /tmp/mlc-tiny && git -C TINY_CLONE archive HEAD tools/submission | tar -x -C /tmp/mlc-tiny
    TINYTWIN_MLCOMMONS_TINY=/tmp/mlc-tiny python -m pytest -q tests/test_submission_checker.py

The checker needs pandas. The test runs our runner against in-process kws01
twins in performance and accuracy mode (the full 1000-input set of
``shared/datasets/kws01``) and in energy mode against the energy rig (fast
mode), puts the three output folders, unchanged, into a submission tree::

    closed/tinytwin/systems/<system>.json
    closed/tinytwin/results/<system>/kws/{performance,accuracy,energy}/

runs the checker, unmodified, as a subprocess on it and reads its verdict
off its log and its summary CSV. The checker never exits non-zero (its
``sys.exit`` is commented out), and several problems it finds (a result
folder's file list, for one) are logged as ``ERROR`` without changing its
summary, so the test asserts on the summary line *and* on the absence of
``ERROR`` lines.
"""
from __future__ import annotations

import ast
import csv
import importlib.util
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

TINY_ENV = "TINYTWIN_MLCOMMONS_TINY"
CHECKER = Path("tools") / "submission" / "submission_checker.py"
VERSION = "v1.4"

DIVISION = "closed"
SUBMITTER = "tinytwin"
SYSTEM = "tinytwin-nucleo-l4r5zi"
#: what the submission describes: the twin, not a board (the fields of the v0.5 reference's
#: system description; the checker reads "Status" and copies the others into its summary)
SYSTEM_JSON = {
    "Submitter": SUBMITTER,
    "Division": DIVISION,
    "Status": "rdi",
    "System Name": "tinytwin (NUCLEO-L4R5ZI twin)",
    "Board Name": "tinytwin (NUCLEO-L4R5ZI twin)",
    "SoC Name": "none: a simulated STM32L4R5ZIT6",
    "Processor(s) Name": "none: a simulated Arm Cortex-M4F; the model runs on the host",
    "Processor(s) Frequencies": "120 MHz (simulated clock)",
    "Processor memory type and capacity": "simulated: 640 KB SRAM, 2 MB flash",
    "Accelerator": "",
    "Accelerator(s) Frequencies": "",
    "Accelerator memory type and capacity": "",
    "Hardware Notes": "No hardware: a Python digital twin of the board, the EEMBC IO manager and the LPM01A "
                      "energy monitor; its time and power are simulated, calibrated to the v0.5 reference results.",
    "Inference Framework": "TensorFlow Lite for Microcontrollers (tflite-micro Python interpreter, on the host)",
    "Software Libraries": "tinytwin",
    "Software Notes": "Recorded by tinytwin's runner against the twin in fast mode; not a measurement of a device.",
    "Quantization Method": "TensorFlow Int8 Quantization (the official kws01 model, unchanged)",
}

PERF = r".* Median throughput is\s+([\d\.]+) inf\./sec\..*"  # check_performance_dir
TOP1 = r".* Top[- ]1%?\s?[:=] ([\d\.]+).*"  # ACC_PATTERN["top-1"]
ENERGY = r"Median energy cost is ([\d\.]+) uJ/inf"  # check_power_dir
OK_LINE = "SUMMARY: submission looks OK"
BAD_LINE = "SUMMARY: submission has errors"


@pytest.fixture(scope="module")
def checker() -> Path:
    path = os.environ.get(TINY_ENV)
    if not path:
        pytest.skip(f"{TINY_ENV} is not set (path to a checkout of mlcommons/tiny with {CHECKER})")
    script = Path(path) / CHECKER
    assert script.is_file(), f"{TINY_ENV}={path}: no {CHECKER} there"
    missing = [m for m in ("pandas",) if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"the submission checker's requirements are not installed in {sys.executable}: "
                    f"{', '.join(missing)} (pip install {' '.join(missing)})")
    return script


def checker_config(script: Path) -> dict:
    """``MODEL_CONFIG[VERSION]`` of the checker, read as data (its module is not imported)."""
    tree = ast.parse(script.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "MODEL_CONFIG" for t in node.targets):
            return ast.literal_eval(node.value)[VERSION]
    raise AssertionError(f"{script}: no MODEL_CONFIG")


def last_match(folder: Path, pattern: str, *, search: bool = False) -> str | None:
    """The value the checker reads off ``results.txt`` (its last match wins)."""
    value = None
    for line in (folder / "results.txt").read_text().splitlines(keepends=True):
        m = (re.search if search else re.match)(pattern, line)
        if m:
            value = m.group(1)
    return value


@pytest.fixture(scope="module")
def submission(checker, shared, models_dir, tmp_path_factory) -> Path:
    """A submission tree holding our runner's three kws01 result folders, as written."""
    import emulator.urlhandler  # noqa: F401  (registers tinytwin://)
    from emulator.benches.rig import build_rig
    from emulator.urlhandler.protocol_tinytwin import shutdown_all
    from runner.energy import EnergyOptions, run_energy
    from runner.session import EXIT_OK, RunOptions, run

    root = tmp_path_factory.mktemp("submission")
    sub = root / DIVISION / SUBMITTER
    bench = sub / "results" / SYSTEM / "kws"
    datasets = shared / "datasets"

    try:
        for mode in ("performance", "accuracy"):
            url = f"tinytwin://kws01?models_dir={models_dir}&speed=fast&instance={uuid.uuid4().hex}"
            res = run(RunOptions(port=url, mode=mode, dataset=datasets, out=bench / mode, progress=False))
            assert res.exit_code == EXIT_OK, f"{mode}: {res.message}"
    finally:
        shutdown_all()

    rig = build_rig("kws01", models_dir=models_dir, speed="fast", dir=tmp_path_factory.mktemp("rig"))
    rig.start()
    try:
        outcome = run_energy(EnergyOptions(io_port=rig.io_path, emon_port=rig.emon_path, dataset=datasets,
                                           out=bench / "energy", progress=False))
    finally:
        rig.close()
    assert outcome.exit_code == EXIT_OK, f"energy: {outcome.message}"

    (sub / "systems").mkdir(parents=True)
    (sub / "systems" / f"{SYSTEM}.json").write_text(json.dumps(SYSTEM_JSON, indent=2) + "\n")
    return root


@pytest.fixture(scope="module")
def verdict(checker, submission) -> tuple[str, Path]:
    """(the checker's whole output, its summary CSV); run from outside the tree, as
    ``python tools/submission/submission_checker.py --input <submission root>``."""
    work = submission.parent / f"{submission.name}-checker"
    work.mkdir()
    summary = work / "summary.csv"
    proc = subprocess.run(
        [sys.executable, str(checker), "--input", str(submission), "--version", VERSION, "--csv", str(summary)],
        cwd=work, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out, summary


def bench_dir(submission: Path) -> Path:
    return submission / DIVISION / SUBMITTER / "results" / SYSTEM / "kws"


def test_checker_accepts_the_submission(verdict, submission):
    out, _ = verdict
    lines = out.splitlines()
    errors = [ln for ln in lines if ln.startswith("ERROR:") or BAD_LINE in ln]
    assert not errors, "the submission checker reported errors:\n" + "\n".join(errors) + "\n---\n" + out[-4000:]
    assert any(ln.endswith(OK_LINE) for ln in lines), out[-4000:]
    assert any(ln.endswith("Results=1, NoResults=0") for ln in lines), out[-4000:]
    assert "function main() returned 0" in lines, out[-4000:]
    assert any(ln.endswith(f"Detected power logs for {DIVISION}/{SUBMITTER}/results/{SYSTEM}/kws") for ln in lines), out[-4000:]

    b = bench_dir(submission)
    perf = float(last_match(b / "performance", PERF))
    energy = float(last_match(b / "energy", ENERGY, search=True))
    expect = f"Results {DIVISION}/{SUBMITTER}/results/{SYSTEM}/kws {perf:f} with power_metric = {energy:f}"
    assert any(ln.endswith(expect) for ln in lines), f"no line ending {expect!r}:\n{out[-4000:]}"


def test_summary_csv_holds_our_figures(verdict, submission):
    _, summary = verdict
    rows = list(csv.DictReader(summary.read_text().splitlines()))
    assert len(rows) == 1, rows
    row = rows[0]
    b = bench_dir(submission)
    perf_txt = last_match(b / "performance", PERF)
    top1_txt = last_match(b / "accuracy", TOP1)
    energy_txt = last_match(b / "energy", ENERGY, search=True)
    assert None not in (perf_txt, top1_txt, energy_txt), (perf_txt, top1_txt, energy_txt)

    assert (row["Organization"], row["Division"], row["SystemDesc"], row["Model"], row["MlperfModel"]) == (
        SUBMITTER, DIVISION, SYSTEM, "kws", "kws")
    assert row["Availability"] == SYSTEM_JSON["Status"] and row["BoardName"] == SYSTEM_JSON["Board Name"]
    assert float(row["Result"]) == float(perf_txt) and row["ResultUnit"] == "inf./sec."
    assert row["Accuracy"] == top1_txt
    assert row["HasPower"] == "True" and row["PowerUnit"] == "uJ/inf."
    assert float(row["Power"]) == float(energy_txt)

    # and those are the figures the runner recorded in results.json
    perf = json.loads((b / "performance" / "results.json").read_text())["performance"]
    acc = json.loads((b / "accuracy" / "results.json").read_text())["accuracy"]
    en = json.loads((b / "energy" / "results.json").read_text())["energy"]
    assert perf["valid"] and en["valid"] and acc["meets_target"] is True
    assert len(acc["inferences"]) == 1000
    assert en["median_uj_per_inference"] == pytest.approx(float(energy_txt), abs=5e-4)
    # the kws01 twin reproduces the v0.5 reference board (reference.csv)
    assert top1_txt == "90.1"
    assert float(perf_txt) == pytest.approx(5.497, rel=0.005)
    assert float(energy_txt) == pytest.approx(7373.7, rel=0.03)


def test_folders_hold_the_files_the_checker_config_requires(checker, submission):
    """The checker's v1.4 config lists ``required_files`` (log.txt, results.json,
    results.txt) but its code never enforces them (results.json is even in
    ``files_diff``'s optional list); this test does, for all three folders."""
    required = checker_config(checker)["required_files"]
    assert set(required) >= {"log.txt", "results.txt", "results.json"}, required
    for mode in ("performance", "accuracy", "energy"):
        folder = bench_dir(submission) / mode
        missing = [f for f in required if not (folder / f).is_file()]
        assert not missing, f"{folder} lacks {missing}, which the checker's {VERSION} config requires"
