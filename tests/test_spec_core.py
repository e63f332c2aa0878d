"""Conformance: every case of firmware_api_spec/dut_protocol.yaml against the
pure protocol core (:mod:`emulator.dut.core`), instantly, no I/O.

Cases that run the model use the real model engine (and ``../shared``);
they skip while either is missing. The pseudo-terminal run of the same cases
is in test_spec_pty.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from firmware_api_spec import MissingData, load_spec

from emulator.dut import core as dutcore
from emulator.dut.core import DutCore, run_script

SPEC = load_spec()
MODELS = list(SPEC.models)


@dataclass(frozen=True)
class SpecProfile:
    """A model's I/O profile exactly as the spec's ``models`` table states it
    (what the core needs to parse commands; no model behind it)."""

    name: str
    model_version: str
    max_db_input_size: int
    input_count: int
    input_elem_size: int


def spec_profile(model: str) -> SpecProfile:
    m = SPEC.models[model]
    return SpecProfile(model, m["model_version"], m["max_db_input_size"], m["input_count"], m["input_elem_bytes"])


def open_engine(model: str, models_dir: Path):
    try:
        from emulator.models.engine import open_engine as _open
    except ImportError:
        pytest.skip("the model engine (emulator.models.engine) is not available yet")
    return _open(model, models_dir=models_dir)


def instances(scope: str):
    """(case, model, mode) triples: "any" cases for every model, "any"-mode
    cases for both firmware builds."""
    out = []
    for case in SPEC.cases:
        if case.scope not in ("both", scope):
            continue
        for model in MODELS if case.model == "any" else [case.model]:
            for mode in ("performance", "energy") if case.mode == "any" else [case.mode]:
                out.append(pytest.param(case, model, mode, id=f"{case.id}[{model}-{mode}]"))
    return out


def run_on_core(case, model: str, profile, engine, shared: Path | None, mode: str = "performance") -> bytes:
    core = DutCore(profile, energy_mode=mode == "energy")
    run_script(core, core.boot_script(), engine)
    core.enable_parser()
    for chunk in case.setup_bytes(shared, model):
        for script in core.receive(chunk):
            run_script(core, script, engine)
    return b"".join(run_script(core, script, engine) for script in core.receive(case.send_for(model)))


def _shared_or_none() -> Path | None:
    from conftest import shared_dir

    return shared_dir()


@pytest.mark.parametrize("case,model,mode", instances("core"))
def test_case_on_core(case, model, mode, request):
    shared = _shared_or_none()
    if case.needs_model:
        models_dir = request.getfixturevalue("models_dir")
        engine = open_engine(model, models_dir)
        profile = engine.profile
    else:
        engine, profile = None, spec_profile(model)
    try:
        out = run_on_core(case, model, profile, engine, shared, mode)
    except MissingData as exc:
        pytest.skip(str(exc))
    case.check(out, model)
    # every line the firmware printed is one the spec's catalogue knows
    assert SPEC.message_regex(model).fullmatch(out), out


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("mode", ["performance", "energy"])
def test_boot_banner_on_core(model, mode):
    core = DutCore(spec_profile(model), energy_mode=mode == "energy")
    # the core prints the firmware's own lines and TFLM's; the model's
    # th_final_initialize() output (ad01's "Initialized") is the device's
    init = SPEC.models[model]["init_lines"]
    own = [line for line in init if line.encode() + b"\r\n" != dutcore.MSG_ARENA_ALIGNMENT]
    extra = b"".join(line.encode() + b"\r\n" for line in own)
    out = run_script(core, core.boot_script(extra), None)
    assert list(core.receive(b"name%")) == []  # the parser is still off
    core.enable_parser()
    out += dutcore.MSG_READY
    SPEC.match(SPEC.banner(model, mode), out, model, what=f"banner {mode}")


def test_nothing_is_answered_before_boot_completes():
    core = DutCore(spec_profile("kws01"))
    assert list(core.receive(b"name%profile%")) == []
    core.enable_parser()
    out = b"".join(run_script(core, s, None) for s in core.receive(b"name%"))
    assert out == b"m-name-dut-[unspecified]\r\nm-ready\r\n"


@pytest.mark.parametrize("model", MODELS)
def test_engine_profile_matches_spec(model, models_dir):
    engine = open_engine(model, models_dir)
    p, m = engine.profile, SPEC.models[model]
    assert p.model_version == m["model_version"]
    assert p.max_db_input_size == m["max_db_input_size"]
    assert p.input_count == m["input_count"]
    assert p.input_elem_size == m["input_elem_bytes"]
    assert p.perf_baud == m["perf_baud"]
    assert p.energy_baud == SPEC.framing["energy_baud"]


def test_every_case_runs_somewhere():
    # a case no model or scope would pick up is a typo in the YAML
    ids = [c.id for c in SPEC.cases]
    assert len(ids) == len(set(ids))
    for case in SPEC.cases:
        assert case.model == "any" or case.model in SPEC.models, case.id
        assert case.mode in ("any", "performance", "energy"), case.id
        assert case.scope in ("both", "device"), case.id
        assert case.why, case.id


def test_every_case_is_classified():
    """Each case says whether the runners depend on it (and how a deviation
    breaks them) and which section of the prose it checks."""
    prose = (SPEC.path.parent / "dut_protocol.md").read_text(encoding="utf-8")
    for case in SPEC.cases:
        assert case.requirement in ("runner", "reference"), case.id
        assert (case.requirement == "runner") == bool(case.breaks), case.id
        assert re.search(rf"^##+ {re.escape(case.section)} ", prose, re.M), (case.id, case.section)
        assert not case.hangs or case.risky, case.id
    # hanging cases come last: nothing can run after them
    hangs = [i for i, c in enumerate(SPEC.cases) if c.hangs]
    assert hangs == list(range(len(SPEC.cases) - len(hangs), len(SPEC.cases)))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("mode", ["performance", "energy"])
def test_boot_cases_are_the_banner(model, mode):
    case = next(c for c in SPEC.cases if c.boot and c.mode == mode)
    assert SPEC.expand(case.expect, model) == SPEC.banner(model, mode)


def test_matcher_rejects_wrong_output():
    # the matcher itself must be able to fail
    case = next(c for c in SPEC.cases if c.id == "name")
    with pytest.raises(AssertionError):
        case.check(b"m-name-dut-[unspecified]\r\n", "kws01")  # m-ready missing
    with pytest.raises(AssertionError):
        case.check(b"m-name-dut-[unspecified]\r\nm-ready\r\nm-ready\r\n", "kws01")  # one too many
    with pytest.raises(AssertionError):
        case.check(b"m-name-dut-[unspecified]\nm-ready\n", "kws01")  # LF only
    lap = next(c for c in SPEC.cases if c.id == "timestamp_performance")
    lap.check(b"m-lap-us-4294967295\r\nm-ready\r\n", "kws01")
    with pytest.raises(AssertionError):
        lap.check(b"m-lap-us-4294967296\r\nm-ready\r\n", "kws01")  # not a 32-bit value
    with pytest.raises(AssertionError):
        lap.check(b"m-lap-us--5\r\nm-ready\r\n", "kws01")
    res = next(c for c in SPEC.cases if c.id == "results_vww01_trailing_comma")
    res.check(b"m-results-[0.023438,0.976563,]\r\nm-ready\r\n", "vww01")
    with pytest.raises(AssertionError):
        res.check(b"m-results-[0.023438,0.976563]\r\nm-ready\r\n", "vww01")  # no trailing comma
    with pytest.raises(AssertionError):
        res.check(b"m-results-[0.023,0.977,]\r\nm-ready\r\n", "vww01")  # 3 decimals


def test_timing_windows_last_half_a_second_on_the_reference_board(golden):
    """The timing cases run infer {timing_n}: long enough that a host's USB
    and scheduling jitter (tens of ms) cannot decide them, on every model."""
    from emulator.cpu.calibrate import read_reference_csv

    ref = read_reference_csv(golden / "reference.csv")
    timing = [c for c in SPEC.cases if c.timing and b"infer" in c.send]
    assert timing
    for model in MODELS:
        n = int(SPEC.models[model]["timing_iterations"])
        per_s = 1.0 / float(ref[model]["perf_median_ips"])
        assert n >= 2 and n * per_s >= 0.5, (model, n, per_s)
        for case in timing:
            assert case.send_for(model) == b"infer %d 0%%" % n, case.id
