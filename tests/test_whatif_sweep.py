"""`tinytwin sweep` (plans, local processes, a local two-worker Dask cluster),
`tinytwin whatif`, `tinytwin calibrate --board` and the accuracy run through
the twin."""
from __future__ import annotations

import csv
import io
import json
import re

import pytest
from typer.testing import CliRunner

from emulator.cli import app
from emulator.whatif import sweep as SW
from emulator.whatif.cli import run_plan

PLAN = """
models: [kws01, ad01]
clocks_mhz: [80, 120]
supplies_v: [1.8, 3.0]
profiles:
  - name: reference
  - name: on-u575
    board: NUCLEO-U575ZI-Q
  - name: on-h7
    board: NUCLEO-H7A3ZI-Q
app: {period_s: 2.0, sleep_mode: stop2, battery_mah: 220}
accuracy: {datasets_dir: DATASETS, limit: 12}
models_dir: MODELS
"""


@pytest.fixture()
def plan_file(tmp_path, shared):
    p = tmp_path / "plan.yaml"
    p.write_text(PLAN.replace("DATASETS", str(shared / "datasets")).replace("MODELS", str(shared / "models")))
    return p


def test_plan_errors(tmp_path):
    with pytest.raises(SW.PlanError, match="models"):
        SW.plan_from_dict({"clocks_mhz": [80]})
    with pytest.raises(SW.PlanError, match="unknown keys"):
        SW.plan_from_dict({"models": ["kws01"], "clock": [80]})
    with pytest.raises(SW.PlanError, match="list of numbers"):
        SW.plan_from_dict({"models": ["kws01"], "clocks_mhz": "fast"})
    with pytest.raises(SW.PlanError, match="sleep_mode"):
        SW.plan_from_dict({"models": ["kws01"], "app": {"period_s": 1}})
    with pytest.raises(SW.PlanError, match="not found"):
        SW.load_plan(tmp_path / "nope.yaml")
    plan = SW.plan_from_dict({"models": ["kws01", "x/my.tflite"], "profiles": [{"profile": "s.json"}]}, tmp_path)
    assert plan.models[1] == str((tmp_path / "x/my.tflite").resolve())
    assert plan.profiles[0].profile == str((tmp_path / "s.json").resolve())
    assert len(plan.points()) == 2


def test_local_run_table(plan_file):
    plan = SW.load_plan(plan_file)
    rows = run_plan(plan, workers=2)
    assert [r["index"] for r in rows] == list(range(3 * 2 * 2 * 2))
    by = {(r["profile"], r["model"], r["clock_mhz"], r["supply_v"]): r for r in rows}
    ref = by[("reference", "kws01", 120.0, 1.8)]
    assert ref["latency_us"] == pytest.approx(181579.25, rel=1e-6)  # the shipped profile at its own point
    assert ref["energy_lo_uj"] < ref["energy_uj"] < ref["energy_hi_uj"]
    # LDO board: energy scales with the supply; SMPS board: it does not
    assert by[("reference", "kws01", 120.0, 3.0)]["energy_uj"] / ref["energy_uj"] == pytest.approx(3.0 / 1.8)
    u5 = by[("on-u575", "kws01", 120.0, 3.0)]
    assert u5["energy_uj"] == pytest.approx(by[("on-u575", "kws01", 120.0, 1.8)]["energy_uj"])
    assert u5["board"] == "NUCLEO-U575ZI-Q" and u5["core"] == "M33" and u5["memory_fits"] is True
    # slower clock: longer inference; battery life and accuracy on every kws row
    assert by[("reference", "kws01", 80.0, 1.8)]["latency_us"] > ref["latency_us"]
    assert ref["battery_life_lo_h"] < ref["battery_life_h"] < ref["battery_life_hi_h"]
    assert all(r["accuracy_n"] == 12 for r in rows if r["model"] == "kws01")
    assert all("AUC" in r["note"] for r in rows if r["model"] == "ad01")
    # a board without power data still answers latency and memory, and says why there is no energy
    h7 = by[("on-h7", "ad01", 120.0, 3.0)]
    assert h7["latency_us"] and h7["energy_uj"] == "" and "calibrate" in h7["note"]
    # the sleep mode stop2 does not exist on that board either: no battery figures, a note instead
    assert h7["battery_life_h"] == ""


def test_dask_two_worker_cluster_gives_the_same_table(plan_file):
    """Issue 16: the same plan on a local two-worker Dask cluster (processes)
    gives the same table as the local run."""
    distributed = pytest.importorskip("distributed", reason="pip install 'tinytwin[dask]' (dask, distributed)")
    plan = SW.load_plan(plan_file)
    local = SW.to_csv(run_plan(plan, workers=2))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            assert len(client.scheduler_info()["workers"]) == 2
            remote = SW.to_csv(run_plan(plan, cluster=cluster.scheduler_address))
    assert remote == local


def test_sweep_command_writes_table_json_and_plot(plan_file, tmp_path):
    out = tmp_path / "t.csv"
    js = tmp_path / "t.json"
    png = tmp_path / "t.png"
    r = CliRunner().invoke(app, ["sweep", str(plan_file), "--workers", "1", "--csv", str(out), "--json", str(js),
                                 "--plot", str(png)])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 24 and tuple(rows[0]) == SW.COLUMNS
    assert json.loads(js.read_text())[0]["model"] == "kws01"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in r.output and "kws01" in r.output
    bad = CliRunner().invoke(app, ["sweep", str(plan_file), "--cluster", "tcp://127.0.0.1:9", "--cluster-timeout", "1"])
    assert bad.exit_code == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9 within 1 s" in bad.output
    assert "--cluster-timeout" in bad.output


def test_whatif_command(models_dir):
    r = CliRunner().invoke(app, ["whatif", "--model", "kws01", "--models-dir", str(models_dir), "--period-s", "1",
                                 "--battery-mah", "220", "--json"])
    assert r.exit_code == 0, r.output
    a = json.loads(r.output)
    assert a["board"] == "NUCLEO-L4R5ZI" and a["supply_v"] == 1.8
    assert a["latency_lo_us"] < a["latency_us"] < a["latency_hi_us"] and a["battery_life_h"] > 0
    text = CliRunner().invoke(app, ["whatif", "--model", "ad01", "--models-dir", str(models_dir), "--board",
                                    "NUCLEO-U575ZI-Q", "--supply-v", "3.3"])
    assert text.exit_code == 0 and "NUCLEO-U575ZI-Q" in text.output and "power independent of VDD" in text.output
    assert "this energy is a lower estimate" in text.output  # the datasheet path (benchmarks/whatif_validation.py)
    bad = CliRunner().invoke(app, ["whatif", "--model", "kws01", "--board", "NUCLEO-L4R5ZI", "--clock-mhz", "200"])
    assert bad.exit_code == 2 and "clock range" in bad.output


def test_whatif_says_when_its_latency_is_in_sample(models_dir):
    """The reference profile was fitted to the board's four latencies at 120 MHz:
    there the answer is a fit, and says so; at another clock it is a prediction."""
    fitted = CliRunner().invoke(app, ["whatif", "--model", "kws01", "--models-dir", str(models_dir)])
    assert fitted.exit_code == 0, fitted.output
    assert "in-sample      kws01 at 120 MHz is one of the measurements this profile was fitted to" in fitted.output
    assert "its latency is a fit, not a prediction" in fitted.output
    other = CliRunner().invoke(app, ["whatif", "--model", "kws01", "--models-dir", str(models_dir), "--clock-mhz", "80",
                                     "--json"])
    assert other.exit_code == 0, other.output
    assert "in_sample" not in json.loads(other.output)
    moved = CliRunner().invoke(app, ["whatif", "--model", "kws01", "--models-dir", str(models_dir), "--board",
                                     "NUCLEO-U575ZI-Q", "--clock-mhz", "120", "--json"])
    assert moved.exit_code == 0, moved.output
    assert "in_sample" not in json.loads(moved.output)  # the stack was fitted on the L4R5ZI, not here


def test_calibrate_board_then_estimate_and_whatif(tmp_path, models_dir):
    """`tinytwin calibrate --board` from three published runs (latency, energy,
    supply), then `estimate` and `whatif` take the stack profile."""
    runs = tmp_path / "runs.csv"
    runs.write_text("model,clock_mhz,us_per_inference,supply_v,uj_per_inference,energy_us_per_inference\n"
                    "kws01,160,44232.1,1.8,1138.534,44074.2\n"
                    "ic01,160,139703.8,1.8,3641.998,138888.9\n"
                    "ad01,160,4849.4,1.8,119.113,4822.4\n")
    prof = tmp_path / "stack.json"
    power = tmp_path / "power.json"
    r = CliRunner().invoke(app, ["calibrate", "--board", "NUCLEO-U575ZI-Q", "--stack", "x-cube-ai-7.3",
                                 "--measurements", str(runs), "--out", str(prof), "--power-out", str(power),
                                 "--models-dir", str(models_dir)])
    assert r.exit_code == 0, r.output
    assert "leave-one-out" in r.output and "in-sample" in r.output
    e = CliRunner().invoke(app, ["estimate", "--model", str(models_dir / "vww01.tflite"), "--profile", str(prof),
                                 "--clock-mhz", "160"])
    assert e.exit_code == 0, e.output
    assert "90 % interval" in e.output and "flash 4 WS" in e.output
    lo, hi = (float(x.replace(",", "")) for x in re.search(r"interval: ([\d,.]+) \.\. ([\d,.]+) ms", e.output).groups())
    assert lo < 133.4 < hi  # ST's published vww01 latency on this board and stack (v1.0), held out
    w = CliRunner().invoke(app, ["whatif", "--model", "vww01", "--models-dir", str(models_dir), "--profile", str(prof),
                                 "--json"])
    a = json.loads(w.output)
    assert a["energy_lo_uj"] < 3364.456 < a["energy_hi_uj"]  # its published energy, held out
    from emulator.power.model import PowerModel

    pm = PowerModel.load(power)
    assert pm.regulator == "smps" and pm.rail_ref_v == 1.8
    bad = CliRunner().invoke(app, ["calibrate", "--board", "NUCLEO-U575ZI-Q", "--measurements", str(runs)])
    assert bad.exit_code == 2 and "--out" in bad.output


def test_accuracy_through_the_twin_equals_the_boards_log(shared, models_dir):
    """The accuracy run feeds the twin the firmware's commands; its top-1 on
    the first 40 keyword-spotting inputs equals the one the board's own
    m-results lines give (accuracy log of the v0.5 reference)."""
    from emulator.benches.accuracy import labelled_inputs, run_accuracy

    n = 40
    got = run_accuracy("kws01", shared / "datasets" / "kws01", n, models_dir)
    log = (shared / "golden" / "l4r5zi-tflm-v0.5" / "kws" / "accuracy" / "log.txt").read_text()
    lines = re.findall(r"m-results-\[([^\]]*)\]", log)[:n]
    labels = [lab for _p, lab in labelled_inputs(shared / "datasets" / "kws01", n)]
    board = sum(max(range(12), key=[float(x) for x in l.split(",")].__getitem__) == lab for l, lab in zip(lines, labels))
    assert got["accuracy_n"] == n and got["accuracy_top1"] == board / n



def test_accuracy_through_the_twin_reads_vww01s_trailing_comma(models_dir, tmp_path):
    """vww01 prints m-results-[a,b,] (a comma after each value); the what-if
    accuracy run read it as an empty number and every vww01 sweep row said
    'accuracy not run'."""
    from emulator.benches.accuracy import run_accuracy
    from runner.synth import synthesize

    synthesize("vww01", tmp_path, 3, models_dir=models_dir, seed=2)
    got = run_accuracy("vww01", tmp_path / "vww01", None, models_dir)
    assert got["accuracy_n"] == 3 and got["accuracy_top1"] == 1.0  # the generated labels are the twin's classes
