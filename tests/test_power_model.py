"""The power model: physics, persistence, calibration, the shipped profile as
the fit of the reference traces (at the 1.8 V the logs give), and the
held-out (leave-one-out) check of its single inference term."""
from __future__ import annotations

import json

import pytest

from emulator.power.model import (
    DEFAULT_PROFILE,
    PARAMETERS,
    EnergyObservation,
    PowerModel,
    build_default_profile,
    fit_power,
    golden_observations,
    leave_one_out,
    log_voltage_v,
    state_observation,
    window_observation,
)


@pytest.fixture
def default() -> PowerModel:
    return PowerModel.default()


def test_states_and_physics(default):
    m = default
    assert m.current_ua("off") == 0.0 and m.power_w("off", 3.3) == 0.0
    idle, tx, infer = (m.power_mw(s, 1.8, 120.0) for s in ("idle", "tx", "infer"))
    assert idle < tx < infer
    assert m.power_mw("boot") == m.power_mw("busy") == idle  # the CPU runs the same way
    # the LDO: the current does not depend on VDD, the power is proportional to it
    assert m.power_mw("infer", 1.8) / m.power_mw("infer", 3.3) == pytest.approx(1.8 / 3.3)
    assert m.power_mw("infer") == m.power_mw("infer", 1.8)  # the reference supply is the default
    # dynamic current follows C * Vcore * f: range 1 (1.20 V) at 80 MHz, boost (1.28 V) at 120
    assert m.core_scale(80.0) == pytest.approx(1.20 / 1.28)
    assert m.core_scale(26.0) == pytest.approx(1.00 / 1.28)
    i80, i120 = m.current_ua("idle", 80.0), m.current_ua("idle", 120.0)
    assert i80 - m.static_ua == pytest.approx((i120 - m.static_ua) * (80 / 120) * (1.20 / 1.28))
    with pytest.raises(ValueError, match="highest clock"):
        m.current_ua("idle", 150.0)
    with pytest.raises(ValueError, match="unknown DUT state"):
        m.current_ua("sleeping")


def test_reference_levels_at_1v8(default):
    """The board's levels: idle ~34 mW, inference ~40.7 mW, at 1.8 V, i.e.
    ~18.9 mA idle and ~22.6 mA inferring (the currents at any supply)."""
    assert default.power_mw("idle", 1.8) == pytest.approx(34.0, rel=0.01)
    assert default.power_mw("infer", 1.8) == pytest.approx(40.7, rel=0.01)
    assert default.current_ua("idle") == pytest.approx(18_900, rel=0.01)
    assert default.current_ua("infer") == pytest.approx(22_650, rel=0.01)
    # at 3.0 V the same currents give 5/3 of the power
    assert default.power_mw("infer", 3.0) == pytest.approx(default.power_mw("infer", 1.8) * 5 / 3)


def test_profile_roundtrip(tmp_path, default):
    path = default.save(tmp_path / "p.json")
    again = PowerModel.load(path)
    assert again.to_dict() == default.to_dict()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"parameters": {"static_ua": 1}}))
    with pytest.raises(ValueError, match="malformed"):
        PowerModel.load(bad)
    with pytest.raises(FileNotFoundError):
        PowerModel.load(tmp_path / "missing.json")
    # an old profile with per-model inference terms is refused, saying what to do
    old = default.to_dict()
    old["parameters"]["infer_extra_ua_per_mhz_by_workload"] = {"kws01": 19.1}
    bad.write_text(json.dumps(old))
    with pytest.raises(ValueError, match="no per-model terms.*calibrate --energy"):
        PowerModel.load(bad)


def _synthetic(truth: PowerModel) -> list[EnergyObservation]:
    obs = []
    for f in (120.0, 80.0, 48.0):
        for v in (1.8, 3.3):
            for state in ("idle", "tx"):
                t = 0.75
                obs.append(state_observation(state, truth.power_w(state, v, f) * t * 1e6, t, voltage_v=v, clock_mhz=f))
            for wl, n, t_inf in (("kws01", 20, 0.18), ("vww01", 10, 0.6)):
                hold = 0.0033 * 120 / f
                dur = hold + n * t_inf
                e = truth.power_w("busy", v, f) * hold + truth.power_w("infer", v, f) * n * t_inf
                obs.append(window_observation(wl, n, e * 1e6, dur, voltage_v=v, clock_mhz=f, hold_s=hold))
    return obs


def test_fit_recovers_known_parameters_from_several_clocks():
    truth = PowerModel(512.0, 90.5, 640.0, 17.0)
    fit = fit_power(_synthetic(truth), base=PowerModel(100.0, 50.0, 0.0, 0.0))
    m = fit.model
    assert "static_ua" in fit.free  # identifiable with three clocks
    assert m.params() == pytest.approx(truth.params(), rel=1e-9)
    assert fit.max_abs_pct < 1e-6


def test_fit_at_one_clock_keeps_the_static_prior():
    truth = PowerModel(300.0, 91.0, 600.0, 18.0)
    obs = [o for o in _synthetic(truth) if o.clock_mhz == 120.0]
    fit = fit_power(obs, base=PowerModel(300.0, 1.0, 1.0, 1.0))
    assert "static_ua" not in fit.free and "static_ua" in fit.fixed
    assert fit.model.static_ua == 300.0
    assert fit.model.run_ua_per_mhz == pytest.approx(91.0, rel=1e-9)
    # a wrong prior is absorbed by run_ua_per_mhz and shows up as residuals only at other clocks
    off = fit_power(obs, base=PowerModel(800.0, 1.0, 1.0, 1.0))
    assert off.max_abs_pct < 1e-6 and off.model.run_ua_per_mhz < 91.0


def test_fit_with_fixed_parameters_and_without_print_data():
    truth = PowerModel(300.0, 91.0, 600.0, 18.0)
    obs = [o for o in _synthetic(truth) if "tx" not in o.state_s]
    base = PowerModel(300.0, 91.0, 777.0, 5.0)
    fit = fit_power(obs, base=base, fix=("run_ua_per_mhz",))
    assert fit.model.tx_extra_ua == 777.0  # not constrained by the data: kept
    assert fit.model.run_ua_per_mhz == 91.0 and "run_ua_per_mhz" in fit.fixed
    assert fit.model.infer_extra_ua_per_mhz == pytest.approx(18.0, rel=1e-9)
    with pytest.raises(ValueError, match="unknown parameters"):
        fit_power(obs, fix=("leakage",))
    with pytest.raises(ValueError, match="at least one"):
        fit_power([])


def test_windows_alone_fit_the_inference_term_on_the_base_run_level():
    """Energy windows only measure run + inference current together: the
    run-mode level stays the base's, the inference term takes the rest."""
    truth = PowerModel(300.0, 91.0, 600.0, 18.0)
    windows = [o for o in _synthetic(truth) if "infer" in o.state_s and o.clock_mhz == 120.0]
    base = PowerModel(300.0, 80.0, 600.0, 0.0)
    fit = fit_power(windows, base=base)
    assert fit.free == ["infer_extra_ua_per_mhz"]
    assert fit.model.run_ua_per_mhz == 80.0
    # the few ms of timestamp hold (run mode) are all that tells the two apart
    assert fit.model.infer_extra_ua_per_mhz == pytest.approx(18.0 + 11.0, rel=1e-3)
    assert fit.max_abs_pct < 0.01


def test_observations_are_checked():
    with pytest.raises(ValueError, match="add up"):
        EnergyObservation("x", 10.0, 1.0, {"idle": 0.5})
    with pytest.raises(ValueError, match="unknown states"):
        EnergyObservation("x", 10.0, 1.0, {"napping": 1.0})
    with pytest.raises(ValueError, match="hold"):
        window_observation("kws01", 1, 10.0, 0.001, hold_s=0.0033)
    with pytest.raises(ValueError, match="voltage"):
        state_observation("idle", 10.0, 1.0, voltage_v=0.0)


def test_leave_one_out_recovers_a_shared_term():
    truth = PowerModel(300.0, 91.0, 600.0, 18.0)
    loo = leave_one_out(_synthetic(truth), base=PowerModel(300.0, 1.0, 1.0, 1.0))
    assert [r["model"] for r in loo] == ["kws01", "vww01"]
    for r in loo:
        assert r["fitted_on"] == [{"kws01": "vww01", "vww01": "kws01"}[r["model"]]]
        assert abs(r["error_pct"]) < 1e-6
        assert r["parameters"]["infer_extra_ua_per_mhz"] == pytest.approx(18.0, rel=1e-6)


# -- the reference traces and the shipped profile -----------------------------------


def test_the_logs_say_1v8(golden):
    for short in ("kws", "ic", "vww", "ad"):
        log = (golden / short / "energy" / "log.txt").read_text(errors="replace")
        assert log_voltage_v(log) == 1.8, short
    with pytest.raises(ValueError, match="m-voltage-mv"):
        log_voltage_v("00001.000 emon: m-ready\n", "x.log")
    assert "Operating at 1.8V" in (golden / "system_description.json").read_text()


def test_golden_observations_are_what_the_logs_say(golden):
    obs = {o.label: o for o in golden_observations(golden)}
    assert {o.voltage_v for o in obs.values()} == {1.8}
    w = obs["kws01 energy windows (5 x 100)"]
    # the EnergyRunner's five windows: 40835..40849 uW
    assert w.power_mw == pytest.approx(40.84, abs=0.01)
    assert w.state_s["busy"] == pytest.approx(5 * 100_000 * 4 / 120e6)
    assert obs["kws01 idle head"].power_mw == pytest.approx(34.15, abs=0.05)


def test_shipped_profile_is_the_fit_of_the_reference_traces(golden):
    refit, report = build_default_profile(golden)
    shipped = json.loads(DEFAULT_PROFILE.read_text())
    p, q = refit.to_dict()["parameters"], shipped["parameters"]
    # the physical parameters only: no per-model term of any kind
    assert set(q) == set(PARAMETERS) | {"ref_clock_mhz", "vcore_ranges"}
    for k in PARAMETERS:
        assert q[k] == pytest.approx(p[k], rel=1e-7), k
    prov = shipped["provenance"]
    assert "PRIOR" in prov["parameters"]["static_ua"] and prov["fit"]["residuals"]
    assert "m-voltage-mv[1800]" in prov["supply_voltage"]["source"]
    assert "Operating at 1.8V" in prov["supply_voltage"]["source"]
    assert set(prov["supply_voltage"]["volts_by_log"].values()) == {1.8}
    # in-sample: every segment of the traces (idle before/after, prints, windows) within 3%
    assert report["fit"].max_abs_pct < 3.0
    assert {r["label"] for r in report["fit"].residuals} >= {"kws01 idle head", "vww01 energy windows (5 x 100)"}
    assert prov["leave_one_out"]["results"] == report["leave_one_out"]


def test_energy_leave_one_out(golden):
    """Held out: fitted on three models' traces, the model predicts the
    fourth's window power within 3 % for at least three of the four."""
    loo = leave_one_out(golden_observations(golden), base=PowerModel(300.0, 0.0, 0.0, 0.0), fix=("static_ua",))
    assert [r["model"] for r in loo] == ["ad01", "ic01", "kws01", "vww01"]
    for r in loo:
        assert r["model"] not in r["fitted_on"] and len(r["fitted_on"]) == 3
    within = [r["model"] for r in loo if abs(r["error_pct"]) <= 3.0]
    assert len(within) >= 3, loo
    # the held-out fits agree with each other: one physical term, not a lookup
    terms = [r["parameters"]["infer_extra_ua_per_mhz"] for r in loo]
    assert max(terms) / min(terms) < 1.1
