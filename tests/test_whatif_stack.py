"""Board descriptions and kernel-stack profiles (emulator.whatif): fitting from
two or three latencies, intervals, the reference stack's leave-one-out, and
the profiles as the cycle model, `tinytwin estimate` and the twin take them."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from emulator.cpu import cycles as C
from emulator.models.store import resolve_model
from emulator.whatif import stack as S
from emulator.whatif.boards import Board, BoardError, board_names, shipped_boards
from emulator.whatif.validate import reference_loo


# ------------------------------------------------------------------ boards
def test_every_shipped_board_cites_its_documents():
    names = board_names()
    assert {"NUCLEO-L4R5ZI", "NUCLEO-U575ZI-Q", "NUCLEO-H7A3ZI-Q"} <= set(names)
    for b in shipped_boards():
        raw = b.raw
        assert b.core in ("M4F", "M7", "M33", "M55")
        assert raw["flash"]["source"].startswith("RM") and raw["memory"]["source"].startswith("DS")
        assert b.regulator in ("LDO", "SMPS") and "DS" in raw["supply"]["source"]
        if raw.get("power"):
            assert "DS" in raw["power"]["source"] and b.run_ua_per_mhz > 0
            assert raw["low_power_modes"]["source"].startswith("DS") and b.low_power_modes
        else:
            assert "calibrate" in raw["power_note"]


def test_board_wait_states_and_ranges():
    l4 = Board.load("nucleo-l4r5zi")
    assert [l4.wait_states(f) for f in (20, 40, 80, 120)] == [0, 1, 3, 5]
    u5 = Board.load("NUCLEO-U575ZI-Q")
    assert u5.wait_states(160) == 4 and u5.wait_states(32) == 0
    with pytest.raises(BoardError, match="clock range"):
        u5.check_clock(200)
    with pytest.raises(BoardError, match="supply range"):
        l4.check_supply(5.0)
    with pytest.raises(BoardError, match="shipped boards are"):
        Board.load("NUCLEO-XYZ")
    assert Board.generic("M7", 216).wait_states(216) == 0


def test_board_power_ldo_vs_smps():
    l4, _ = Board.load("NUCLEO-L4R5ZI").power_model()
    # the reference board's fitted profile: LDO, power proportional to VDD
    assert l4.power_mw("infer", 3.0) / l4.power_mw("infer", 1.8) == pytest.approx(3.0 / 1.8)
    u5, how = Board.load("NUCLEO-U575ZI-Q").power_model()
    assert how == "datasheet" and u5.regulator == "smps"
    assert u5.power_mw("infer", 3.3, 160) == pytest.approx(u5.power_mw("infer", 1.8, 160))
    with pytest.raises(BoardError, match="calibrate"):
        Board.load("NUCLEO-H7A3ZI-Q").power_model()


# ------------------------------------------------------------------ fitting
def _synthetic_runs(board: Board, truth: S.StackProfile, models, clock=None):
    return [S.Run(m, clock or board.clock_mhz, truth.predict(m, clock).latency_us) for m in models]


def test_fit_recovers_the_reference_library_at_another_speed(models_dir):
    """The reference library (its prior: the shipped posterior) built so that
    every compute cost takes 0.6x the cycles: two models fix that factor and
    the other two are predicted within a few %, inside their intervals."""
    b = Board.load("NUCLEO-L4R5ZI")
    truth = S.StackProfile.reference()
    truth.theta[0] += math.log(0.6)
    runs = _synthetic_runs(b, truth, ("kws01", "ic01"))
    prof = S.fit(runs, b, S.REFERENCE_LIBRARY, models_dir=models_dir)
    for m in ("vww01", "ad01"):
        p = prof.predict(m)
        t = truth.predict(m).latency_us
        assert abs(p.latency_us / t - 1) < 0.05
        assert p.lo_us < t < p.hi_us
    # with the structural prior (a library the model knows nothing of) the FC-only
    # ad01 is not pinned by two conv models: the error is larger, and inside the interval
    generic = S.fit(runs, b, "unknown-lib", models_dir=models_dir).predict("ad01")
    t = truth.predict("ad01").latency_us
    assert abs(generic.latency_us / t - 1) > 0.2 and generic.lo_us < t < generic.hi_us


def test_interval_widens_with_level_and_narrows_with_data(models_dir):
    b = Board.load("NUCLEO-L4R5ZI")
    ref = S.StackProfile.reference()
    runs2 = _synthetic_runs(b, ref, ("kws01", "ic01"))
    runs3 = _synthetic_runs(b, ref, ("kws01", "ic01", "ad01"))
    p2 = S.fit(runs2, b, models_dir=models_dir).predict("ad01")
    p3 = S.fit(runs3, b, models_dir=models_dir).predict("ad01")
    assert p3.sd_log < p2.sd_log  # measuring ad01 itself pins the FC cost
    lo, hi = S.fit(runs2, b, models_dir=models_dir).predict("vww01", level=0.5), \
        S.fit(runs2, b, models_dir=models_dir).predict("vww01", level=0.95)
    assert hi.lo_us < lo.lo_us < lo.latency_us < lo.hi_us < hi.hi_us


def test_reference_profile_as_a_distribution_keeps_the_shipped_parameters(models_dir):  # the reference stack is fitted on the official models' graphs
    ref = S.StackProfile.reference()
    shipped = C.KernelProfile.load()
    for k, v in ref.params().items():
        assert v == pytest.approx(shipped.params.get(k, 1.0), rel=1e-9)
    for r in ref.provenance["in_sample"]:
        assert abs(r["error_pct"]) < 0.1
    # the covariance is a covariance
    assert np.allclose(ref.cov, ref.cov.T) and np.all(np.linalg.eigvalsh(ref.cov) > -1e-12)
    assert 0.05 < ref.sigma_model < 0.4


def test_reference_leave_one_out_acceptance(models_dir):
    """Issue 16: on the reference stack 3 of 4 held-out latencies within 20 %
    and the intervals cover the held-out truth in at least 3 of 4."""
    rows = reference_loo(models_dir)
    assert {r["model"] for r in rows} == {"kws01", "vww01", "ic01", "ad01"}
    assert sum(abs(r["latency_err_pct"]) <= 20 for r in rows) >= 3
    assert sum(r["latency_covered"] for r in rows) >= 3
    ad = next(r for r in rows if r["model"] == "ad01")
    assert ad["latency_err_pct"] > 20  # the known miss: the FC cost is not pinned by conv models


def test_the_likelihood_the_validation_compares(models_dir):
    """README: with measurement noise alone in the likelihood, the reference
    leave-one-out misses ad01 by +49.6 % (+73.6 % with the model error, the
    what-if fit's); the other three stay within 10 %."""
    noise = {r["model"]: r["latency_err_pct"] for r in reference_loo(models_dir, noise_only=True)}
    both = {r["model"]: r["latency_err_pct"] for r in reference_loo(models_dir)}
    assert noise["ad01"] == pytest.approx(49.6, abs=0.1) and both["ad01"] == pytest.approx(73.6, abs=0.1)
    assert all(abs(noise[m]) < 10 for m in ("kws01", "ic01", "vww01"))


def test_moving_a_stack_to_another_core_widens_it(models_dir):  # the reference stack is fitted on the official models' graphs
    ref = S.StackProfile.reference()
    m7 = ref.on_board(Board.load("NUCLEO-H7A3ZI-Q"))
    a, b = ref.predict("kws01"), m7.predict("kws01")
    assert b.cycles < a.cycles  # the M7's prior cycle factor
    assert b.sd_log > a.sd_log
    assert m7.kernel_profile().memory["flash_mhz_per_ws"] == 42


# ------------------------------------------------------------------ files and front ends
def test_stack_profile_round_trip_and_kernel_profile(tmp_path, models_dir):
    b = Board.load("NUCLEO-U575ZI-Q")
    runs = [S.Run("kws01", 160, 44232.1), S.Run("ic01", 160, 139703.8), S.Run("ad01", 160, 4849.4)]
    prof = S.fit(runs, b, "x-cube-ai", models_dir=models_dir)
    path = prof.save(tmp_path / "stack.json")
    back = S.StackProfile.load(path)
    assert back.predict("vww01").latency_us == pytest.approx(prof.predict("vww01").latency_us)
    # the same file is a kernel profile the cycle model runs: same latency
    kp = C.KernelProfile.load(path)
    est = C.estimate(resolve_model("vww01", models_dir), kp, 160)
    assert est.flash_wait_states == 4
    assert est.latency_us == pytest.approx(prof.predict("vww01").latency_us, rel=1e-9)
    # and the twin's DUT timing takes it
    from emulator.dut.timing import timing_for

    t = timing_for("vww01", model_path=resolve_model("vww01", models_dir), profile=path, clock_mhz=160)
    assert t.inference_us == pytest.approx(est.latency_us)


def test_read_runs_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("model,us_per_inference\nkws01,1\n")
    with pytest.raises(S.StackError, match="header"):
        S.read_runs(bad)
    e = tmp_path / "e.csv"
    e.write_text("model,clock_mhz,us_per_inference,uj_per_inference\nkws01,120,1000,50\n")
    with pytest.raises(S.StackError, match="supply_v"):
        S.read_runs(e)
    ok = tmp_path / "ok.csv"
    ok.write_text("# comment\nmodel,clock_mhz,us_per_inference,supply_v,uj_per_inference\nkws01,120,1000,1.8,50\n"
                  "ad01,120,100,,\n")
    runs = S.read_runs(ok)
    assert runs[0].uj_per_inference == 50 and runs[1].supply_v is None
    with pytest.raises(S.StackError, match="what-if section"):
        S.StackProfile.from_dict(json.loads(C.DEFAULT_PROFILE.read_text()))
