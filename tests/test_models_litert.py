"""The optional LiteRT backend: same Engine API; how far its results are from TFLM's
(which match the board) on the 1000 kws01 inputs.

Measured with ai-edge-litert 2.3.0 (the counts are pinned so that a LiteRT upgrade that
changes them is noticed and the docs updated):
  litert (default, XNNPACK delegate)       636 / 1000 result lines equal TFLM's
  litert-ref (reference kernels)           991 / 1000
  litert-builtin (no default delegates)    996 / 1000
"""
from __future__ import annotations

import pytest

pytest.importorskip("ai_edge_litert", reason="the litert backend needs ai-edge-litert")

from emulator.models import open_engine  # noqa: E402

EXPECTED_EQUAL = {"litert": 636, "litert-ref": 991, "litert-builtin": 996}


@pytest.fixture(scope="module")
def kws_inputs(shared):
    files = sorted((shared / "datasets" / "kws01").glob("*.bin"))
    assert len(files) == 1000
    return [f.read_bytes() for f in files]


@pytest.fixture(scope="module")
def tflm_lines(models_dir, kws_inputs):
    e = open_engine("kws01", models_dir=models_dir)
    out = []
    for raw in kws_inputs:
        e.set_input(raw)
        e.invoke(1)
        out.append(e.results_text())
    return out


@pytest.mark.parametrize("backend", sorted(EXPECTED_EQUAL))
def test_litert_fidelity_on_kws(models_dir, kws_inputs, tflm_lines, backend):
    e = open_engine("kws01", models_dir=models_dir, backend=backend)
    assert e.backend_name == backend and e.arena_used is None
    same = 0
    for raw, want in zip(kws_inputs, tflm_lines):
        e.set_input(raw)
        e.invoke(1)
        same += e.results_text() == want
    assert same == EXPECTED_EQUAL[backend]


def test_litert_keeps_the_input_so_repeats_are_identical(models_dir, kws_inputs):
    """LiteRT keeps graph inputs alive: invoke(100) gives the invoke(1) result
    (unlike TFLM and the board); the engine short-cuts the repeats exactly."""
    e = open_engine("kws01", models_dir=models_dir, backend="litert-builtin")
    e.set_input(kws_inputs[0])
    e.invoke(1)
    one = e.results_text()
    e.invoke(100)
    assert e.results_text() == one and e.invokes == 101
    # check the short cut against really invoking
    it = e.backend._it
    for _ in range(3):
        it.invoke()
    assert e.results_text() == one
    assert (it.get_tensor(e.backend._in).reshape(-1) == e.convert_input(kws_inputs[0])).all()


@pytest.mark.parametrize("name", ["vww01", "ic01", "ad01"])
def test_litert_runs_the_other_models(models_dir, shared, name):
    e = open_engine(name, models_dir=models_dir, backend="litert")
    if name == "ad01":
        raw = (shared / "datasets" / "ad01" / "normal_id_01_00000000_hist_librosa.bin").read_bytes()[:2560]
    else:
        raw = bytes(range(256)) * (e.profile.input_bytes // 256)
    e.set_input(raw)
    e.invoke(2)
    assert e.results_text().startswith("m-results-[")
