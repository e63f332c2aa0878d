"""Issue 16's acceptance on published runs (benchmarks/data/published_runs.csv)
and the energy what-ifs (emulator.whatif.energy)."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from emulator.whatif import validate as V
from emulator.whatif.boards import Board, BoardError
from emulator.whatif.energy import DutyCycle, duty_cycle, fit_power, predict_energy
from emulator.whatif.stack import Run, StackError, StackProfile

DATA = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "published_runs.csv"


@pytest.fixture(scope="module")
def systems():
    return V.read_published(DATA)


@pytest.fixture(scope="module")
def held(systems, models_dir):
    return V.held_out(systems, sizes=(2, 3), models_dir=models_dir)


# ------------------------------------------------------------------ the table
def test_table_cites_every_row_and_leaves_out_the_held_back_runs():
    text = DATA.read_text()
    rows = list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))
    assert len(rows) >= 150
    for r in rows:
        assert r["source"].startswith("mlcommons/tiny_results_v") and "results.txt" in r["source"]
        if r["energy_uj"]:
            assert r["supply_v"] and ("m-voltage-mv[" in r["supply_from"] or "Hardware Notes" in r["supply_from"])
    # held back for an independent check: never in the table
    assert "microtvm_cmsis_nn/NUCLEO_L4R5ZI" not in text
    assert "NUCLEO-L4R5ZI_MICROTVM-CMSIS-NN" not in text and "NUCLEO-L4R5ZI_MicroTVM_CMSIS_NN" not in text
    assert "EK-RA6M4" not in text
    # the reference energy was measured at 1.8 V (read off its log, not assumed)
    ref = [r for r in rows if r["stack"] == "tflm-2.3.1-cmsis-nn"]
    assert {r["supply_v"] for r in ref} == {"1.8"}


# ------------------------------------------------------------------ held out
def test_published_runs_latency_within_25_pct_in_most_cases(held):
    """Issue 16: calibrating a stack on the same board from two or three of
    its models predicts its remaining models' latency within 25 % in most
    cases (non-reference systems; every miss is listed by
    benchmarks/whatif_validation.py)."""
    assert {r["n_cal"] for r in held} == {2, 3}
    assert not any(r["stack"] == "tflm-2.3.1-cmsis-nn" for r in held)
    for n in (2, 3):
        rs = [r for r in held if r["n_cal"] == n]
        within = sum(abs(r["latency_err_pct"]) <= 25 for r in rs)
        assert within > 0.6 * len(rs), (n, within, len(rs))
        covered = sum(r["latency_covered"] for r in rs)
        assert covered > 0.8 * len(rs), (n, covered, len(rs))


def test_the_held_back_runs_are_predicted_as_the_table_is(models_dir):
    """The runs kept out of the table and of every choice of method
    (benchmarks/data/held_back_runs.csv: only the held-back systems, none of
    them in the table), predicted the same way, meet the same bar as the
    table's: the method was frozen before they were read."""
    back = DATA.with_name("held_back_runs.csv")
    systems = V.read_published(back)
    table = DATA.read_text()
    assert len(systems) == 4
    for s in systems.values():
        assert s.system not in table
        for src in s.sources.values():
            folder = src.split(" ; ")[0].split(":", 1)[1].rsplit("/", 3)[0]  # the system's results folder
            assert folder.count("/") >= 3 and folder not in table, src
    rows = V.held_out(systems, sizes=(2, 3), models_dir=models_dir)
    for n in (2, 3):
        rs = [r for r in rows if r["n_cal"] == n]
        within = sum(abs(r["latency_err_pct"]) <= 25 for r in rs)
        assert within > 0.6 * len(rs), (n, within, len(rs))
        assert sum(r["latency_covered"] for r in rs) > 0.8 * len(rs)
        es = [r for r in rs if "energy_err_pct" in r]
        assert es and sum(abs(r["energy_err_pct"]) <= 25 for r in es) > 0.6 * len(es)
        assert sum(r["energy_covered"] for r in es) > 0.8 * len(es)


def test_datasheet_power_is_checked_on_its_own(systems):
    """The uncalibrated power path: the boards whose power is the datasheet's
    headline current (never the reference board's fitted profile), times the
    published latency, against the published energy."""
    rows = V.datasheet_power(systems)
    assert {r["board"] for r in rows} == {"NUCLEO-U575ZI-Q", "NUCLEO-L4R5ZI-P"} and len(rows) == 24
    for r in rows:
        assert r["energy_lo_uj"] < r["pred_energy_uj"] < r["energy_hi_uj"]
        assert r["energy_err_pct"] == pytest.approx(100 * (r["pred_energy_uj"] / r["energy_uj"] - 1))
    # what the README says of it: low every time (36-53 %), inside its interval every time
    errs = [r["energy_err_pct"] for r in rows]
    assert max(errs) < -36 and min(errs) > -54
    assert all(r["energy_covered"] for r in rows)


def test_published_runs_energy_within_25_pct_in_most_cases(held):
    for n in (2, 3):
        rs = [r for r in held if r["n_cal"] == n and "energy_err_pct" in r]
        assert len(rs) >= 80
        within = sum(abs(r["energy_err_pct"]) <= 25 for r in rs)
        assert within > 0.6 * len(rs), (n, within, len(rs))
        assert sum(r["energy_covered"] for r in rs) > 0.8 * len(rs)


def test_supply_scaling_on_the_ldo_board_within_3_pct(systems):
    """Issue 16: the same X-CUBE-AI 7.3 firmware on the NUCLEO-L4R5ZI, published
    at 1.8 V (STMicroelectronics, v1.0) and 3.0 V (Krai, v1.1): the power
    model's P = V x I scales the 1.8 V energies to the 3.0 V ones within 3 %."""
    pairs = [p for p in V.supply_pairs(systems) if p["regulator"] == "LDO"]
    assert {p["model"] for p in pairs} == {"kws01", "vww01", "ic01", "ad01"}
    for p in pairs:
        assert p["from_supply_v"] == 1.8 and p["to_supply_v"] == 3.0
        assert abs(p["latency_ratio"] - 1) < 0.01  # same firmware: same speed
        assert abs(p["energy_err_pct"]) <= 3.0, p


# ------------------------------------------------------------------ energy
def test_fit_power_and_energy_prediction(models_dir):  # the reference stack is fitted on the official models' graphs
    b = Board.load("NUCLEO-L4R5ZI")
    runs = [Run("kws01", 120, 75058.2, 1.8, 3371.738, 75108.9), Run("ic01", 120, 226911.7, 1.8, 10681.623, 226808.8)]
    pw = fit_power(runs, b)
    i_kws = 3371.738 / (1.8 * 75108.9) * 1e6
    i_ic = 10681.623 / (1.8 * 226808.8) * 1e6
    k = math.sqrt((i_kws - pw.static_ua) * (i_ic - pw.static_ua)) / 120  # geometric mean of the k_i
    assert pw.static_ua == 300 and pw.current_ua(120) == pytest.approx(pw.static_ua + 120 * k, rel=1e-9)
    assert pw.power_mw(120, 3.0) / pw.power_mw(120, 1.8) == pytest.approx(3.0 / 1.8)
    ref = StackProfile.reference()
    ep = predict_energy(ref, "kws01", 120, 1.8, pw)
    assert ep.energy_uj == pytest.approx(pw.power_mw(120, 1.8) * ep.latency.latency_us * 1e-3)
    assert ep.lo_uj < ep.energy_uj < ep.hi_uj and ep.sd_log > ep.latency.sd_log
    with pytest.raises(StackError, match="no energies"):
        fit_power([Run("kws01", 120, 1000)], b)


def test_smps_power_does_not_scale_with_supply():
    b = Board.load("NUCLEO-U575ZI-Q")
    pw = fit_power([Run("kws01", 160, 44232.1, 1.8, 1138.534, 44074.2)], b)
    assert pw.power_mw(160, 3.3) == pytest.approx(pw.power_mw(160, 1.8))


def test_duty_cycle_and_battery_life(models_dir):  # the reference stack is fitted on the official models' graphs
    ref = StackProfile.reference()
    ep = predict_energy(ref, "ad01", 120, 1.8)
    b = ref.board
    d = duty_cycle(ep, b, DutyCycle(10.0, "stop2", 1000.0))
    sleep_mw = 1.8 * b.low_power_modes["stop2"].ua * 1e-3
    t = ep.latency.latency_us * 1e-6
    assert d["avg_power_mw"] == pytest.approx((ep.energy_uj * 1e-3 + sleep_mw * (10 - t)) / 10)
    assert d["battery_life_h"] == pytest.approx(1000.0 / (d["avg_power_mw"] / 1.8))
    assert d["battery_life_lo_h"] < d["battery_life_h"] < d["battery_life_hi_h"]
    longer = duty_cycle(ep, b, DutyCycle(100.0, "standby", 1000.0))
    assert longer["battery_life_h"] > d["battery_life_h"]
    with pytest.raises(BoardError, match="low-power mode"):
        duty_cycle(ep, b, DutyCycle(10.0, "hibernate"))
    with pytest.raises(StackError, match="period"):
        duty_cycle(ep, b, DutyCycle(1e-4, "stop2"))


def test_another_board_same_stack(systems, models_dir):
    """A stack calibrated on one board moved to another board of the same
    submission (the core's prior cycle factor): held out, most within 25 %."""
    rows = V.cross_board(systems, models_dir=models_dir)
    assert len(rows) >= 300
    assert {(r["from_core"], r["to_core"]) for r in rows} >= {("M4F", "M7"), ("M7", "M33"), ("M33", "M4F")}
    assert sum(abs(r["latency_err_pct"]) <= 25 for r in rows) > 0.6 * len(rows)
    assert sum(r["latency_covered"] for r in rows) > 0.8 * len(rows)
