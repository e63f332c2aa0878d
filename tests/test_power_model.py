"""The power model: physics, persistence, calibration, and the shipped profile
as the fit of the reference traces."""
from __future__ import annotations

import json

import pytest

from emulator.power.model import (
    DEFAULT_PROFILE,
    EnergyObservation,
    PowerModel,
    build_default_profile,
    fit_power,
    golden_observations,
    predicted_reference_figures,
    state_observation,
    window_observation,
)


@pytest.fixture
def default() -> PowerModel:
    return PowerModel.default()


def test_states_and_physics(default):
    m = default
    assert m.current_ua("off") == 0.0 and m.power_w("off", 3.3) == 0.0
    idle, tx, infer = (m.power_mw(s, 3.0, 120.0, "kws01") for s in ("idle", "tx", "infer"))
    assert idle < tx < infer
    assert m.power_mw("boot") == m.power_mw("busy") == idle  # the CPU runs the same way
    # the LDO: the current does not depend on VDD, the power is proportional to it
    assert m.power_mw("infer", 1.8, workload="kws01") / m.power_mw("infer", 3.3, workload="kws01") == pytest.approx(1.8 / 3.3)
    # dynamic current follows C * Vcore * f: range 1 (1.20 V) at 80 MHz, boost (1.28 V) at 120
    assert m.core_scale(80.0) == pytest.approx(1.20 / 1.28)
    assert m.core_scale(26.0) == pytest.approx(1.00 / 1.28)
    i80, i120 = m.current_ua("idle", 80.0), m.current_ua("idle", 120.0)
    assert i80 - m.static_ua == pytest.approx((i120 - m.static_ua) * (80 / 120) * (1.20 / 1.28))
    with pytest.raises(ValueError, match="highest clock"):
        m.current_ua("idle", 150.0)
    with pytest.raises(ValueError, match="unknown DUT state"):
        m.current_ua("sleeping")
    # workload-specific inference term, generic for an unknown model; aliases
    assert m.infer_extra("kws") == m.infer_extra("kws01") != m.infer_extra("my_model")
    assert m.infer_extra("my_model") == m.infer_extra_ua_per_mhz


def test_reference_levels_at_3v(default):
    """The README's figures: idle ~34 mW, inference ~40.8 mW at 3.0 V."""
    assert default.power_mw("idle", 3.0) == pytest.approx(34.0, rel=0.01)
    assert default.power_mw("infer", 3.0, 120.0, "kws01") == pytest.approx(40.84, rel=0.002)


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
                e = truth.power_w("busy", v, f) * hold + truth.power_w("infer", v, f, wl) * n * t_inf
                obs.append(window_observation(wl, n, e * 1e6, dur, voltage_v=v, clock_mhz=f, hold_s=hold))
    return obs


def test_fit_recovers_known_parameters_from_several_clocks():
    truth = PowerModel(512.0, 90.5, 640.0, 17.0, {"kws01": 19.5, "vww01": 15.25})
    start = PowerModel(100.0, 50.0, 0.0, 0.0, {})
    fit = fit_power(_synthetic(truth), base=start)
    m = fit.model
    assert "static_ua" in fit.free  # identifiable with three clocks
    assert m.static_ua == pytest.approx(512.0, rel=1e-9)
    assert m.run_ua_per_mhz == pytest.approx(90.5, rel=1e-9)
    assert m.tx_extra_ua == pytest.approx(640.0, rel=1e-9)
    assert m.infer_extra_ua_per_mhz_by_workload == pytest.approx({"kws01": 19.5, "vww01": 15.25}, rel=1e-9)
    assert m.infer_extra_ua_per_mhz == pytest.approx((19.5 + 15.25) / 2)
    assert fit.max_abs_pct < 1e-6


def test_fit_at_one_clock_keeps_the_static_prior():
    truth = PowerModel(300.0, 91.0, 600.0, 18.0, {"kws01": 19.0})
    obs = [o for o in _synthetic(truth) if o.clock_mhz == 120.0]
    fit = fit_power(obs, base=PowerModel(300.0, 1.0, 1.0, 1.0, {}))
    assert "static_ua" not in fit.free and "static_ua" in fit.fixed
    assert fit.model.static_ua == 300.0
    assert fit.model.run_ua_per_mhz == pytest.approx(91.0, rel=1e-9)
    # a wrong prior is absorbed by run_ua_per_mhz and shows up as residuals only at other clocks
    off = fit_power(obs, base=PowerModel(800.0, 1.0, 1.0, 1.0, {}))
    assert off.max_abs_pct < 1e-6 and off.model.run_ua_per_mhz < 91.0


def test_fit_with_fixed_parameters_and_without_print_data():
    truth = PowerModel(300.0, 91.0, 600.0, 18.0, {})
    obs = [o for o in _synthetic(truth) if "tx" not in o.state_s]
    base = PowerModel(300.0, 91.0, 777.0, 5.0, {})
    fit = fit_power(obs, base=base, fix=("run_ua_per_mhz",), per_workload=False)
    assert fit.model.tx_extra_ua == 777.0  # not constrained by the data: kept
    assert fit.model.run_ua_per_mhz == 91.0 and "run_ua_per_mhz" in fit.fixed
    assert fit.model.infer_extra_ua_per_mhz == pytest.approx(18.0, rel=1e-9)
    with pytest.raises(ValueError, match="unknown parameters"):
        fit_power(obs, fix=("leakage",))
    with pytest.raises(ValueError, match="at least one"):
        fit_power([])


def test_observations_are_checked():
    with pytest.raises(ValueError, match="add up"):
        EnergyObservation("x", 10.0, 1.0, {"idle": 0.5})
    with pytest.raises(ValueError, match="unknown states"):
        EnergyObservation("x", 10.0, 1.0, {"napping": 1.0})
    with pytest.raises(ValueError, match="hold"):
        window_observation("kws01", 1, 10.0, 0.001, hold_s=0.0033)


# -- the shipped profile ------------------------------------------------------------


def test_shipped_profile_is_the_fit_of_the_reference_traces(golden):
    refit, report = build_default_profile(golden)
    shipped = json.loads(DEFAULT_PROFILE.read_text())
    p, q = refit.to_dict()["parameters"], shipped["parameters"]
    for k in ("static_ua", "run_ua_per_mhz", "tx_extra_ua", "infer_extra_ua_per_mhz"):
        assert q[k] == pytest.approx(p[k], rel=1e-7), k
    assert q["infer_extra_ua_per_mhz_by_workload"] == pytest.approx(p["infer_extra_ua_per_mhz_by_workload"], rel=1e-7)
    prov = shipped["provenance"]
    assert "PRIOR" in prov["parameters"]["static_ua"] and prov["fit"]["residuals"]
    # every segment of the traces (idle before/after, prints, windows) within 3%
    assert report["fit"].max_abs_pct < 3.0
    assert {r["label"] for r in report["fit"].residuals} >= {"kws01 idle head", "vww01 energy windows (5 x 100)"}


def test_golden_observations_are_what_the_logs_say(golden):
    obs = {o.label: o for o in golden_observations(golden)}
    w = obs["kws01 energy windows (5 x 100)"]
    # the EnergyRunner's five windows: 40835..40849 uW
    assert w.power_mw == pytest.approx(40.84, abs=0.01)
    assert w.state_s["busy"] == pytest.approx(5 * 100_000 * 4 / 120e6)
    assert obs["kws01 idle head"].power_mw == pytest.approx(34.15, abs=0.05)


def test_reference_figures_from_the_shipped_profile(golden, default):
    figs = predicted_reference_figures(default, golden)
    for wl, f in figs.items():
        assert abs(f["energy_error_pct"]) < 1.0, wl
        assert abs(f["power_error_pct"]) < 0.1, wl
