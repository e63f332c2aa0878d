"""Every user error is one ModelError with a message naming the thing and the fix."""
from __future__ import annotations

import shutil
import sys

import flatbuffers
import pytest
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

from emulator.models import ModelError, open_engine
from emulator.models.modelfile import parse_model


def _one_line(msg: str) -> None:
    assert "\n" not in msg and "Traceback" not in msg and len(msg) < 700


def _err(**kw) -> str:
    with pytest.raises(ModelError) as ei:
        open_engine(**kw)
    msg = str(ei.value)
    _one_line(msg)
    return msg


def test_missing_models_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("TINYTWIN_MODELS_DIR", raising=False)
    msg = _err(model="kws01", models_dir=tmp_path / "nope")
    assert str(tmp_path / "nope") in msg
    assert "tinytwin models download" in msg and "--models-dir" in msg and "TINYTWIN_MODELS_DIR" in msg


def test_default_dir_from_env(tmp_path, monkeypatch, models_dir):
    monkeypatch.setenv("TINYTWIN_MODELS_DIR", str(models_dir))
    assert open_engine("kws01").model_path == models_dir / "kws01.tflite"
    monkeypatch.setenv("TINYTWIN_MODELS_DIR", str(tmp_path))
    msg = _err(model="kws01")
    assert str(tmp_path / "kws01.tflite") in msg and "missing" in msg and "tinytwin models download" in msg


def test_missing_file(tmp_path):
    msg = _err(model="vww01", models_dir=tmp_path)
    assert "vww01.tflite is missing" in msg and "tinytwin models download" in msg


def test_checksum_mismatch(tmp_path, models_dir):
    data = bytearray((models_dir / "ic01.tflite").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "ic01.tflite").write_bytes(bytes(data))
    msg = _err(model="ic01", models_dir=tmp_path)
    assert "not the official ic01 model" in msg and "md5" in msg and "2d6dd48722471313e4c4528249205ae3" in msg
    assert "tinytwin models download" in msg


@pytest.mark.parametrize(
    "mutate, expect",
    [
        (lambda d: d[:5000], "corrupt flatbuffer"),
        (lambda d: d[:4] + b"XXXX" + d[8:], "no TFL3"),
        (lambda d: b"\x10\x00\x00\x00TFL3" + bytes(range(256)) * 8, "corrupt flatbuffer"),
        (lambda d: b"hello", "only 5 bytes"),
    ],
)
def test_not_a_valid_tflite(tmp_path, models_dir, mutate, expect):
    p = tmp_path / "broken.tflite"
    p.write_bytes(mutate((models_dir / "kws01.tflite").read_bytes()))
    msg = _err(model=str(p), profile="kws01")
    assert "is not a valid .tflite" in msg and expect in msg and str(p) in msg


def test_unknown_model_name_and_backend_and_profile(models_dir):
    msg = _err(model="kws02", models_dir=models_dir)
    assert "unknown model 'kws02'" in msg and "kws01, vww01, ic01, ad01, sww01" in msg
    msg = _err(model="kws01", models_dir=models_dir, backend="onnx")
    assert "unknown backend 'onnx'" in msg and "tflm" in msg
    msg = _err(model="kws01", models_dir=models_dir, profile="ic02")
    assert "unknown I/O profile 'ic02'" in msg


def test_user_path_missing_and_profile_needed(tmp_path, models_dir):
    msg = _err(model=str(tmp_path / "mine.tflite"), profile="kws01")
    assert "does not exist" in msg
    # a user model that is not an official file needs --io-profile
    data = bytearray((models_dir / "kws01.tflite").read_bytes())
    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(bytes(data), 0))
    m.description = b"my retrained kws"
    p = tmp_path / "mine.tflite"
    p.write_bytes(_pack(m))
    msg = _err(model=str(p))
    assert "--io-profile" in msg
    eng = open_engine(str(p), profile="kws01")
    assert eng.profile.name == "kws01" and not eng.official
    # an official file given by path finds its own profile
    shutil.copy(models_dir / "ad01.tflite", tmp_path / "renamed.tflite")
    assert open_engine(str(tmp_path / "renamed.tflite")).profile.name == "ad01"


def test_model_does_not_fit_profile(models_dir):
    msg = _err(model=str(models_dir / "ic01.tflite"), profile="kws01")
    assert "does not fit the kws01 I/O profile" in msg
    assert "int8[1, 32, 32, 3]" in msg and "490 elements" in msg and "12 elements" in msg
    msg = _err(model="kws01", models_dir=models_dir, profile="vww01")
    assert "drop --io-profile" in msg


def _pack(model_t) -> bytes:
    b = flatbuffers.Builder(1024)
    b.Finish(model_t.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_ops_the_firmware_does_not_register(tmp_path, models_dir):
    data = (models_dir / "kws01.tflite").read_bytes()
    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))
    for oc in m.operatorCodes:  # average pool -> max pool: same options, not registered by kws01
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == fb.BuiltinOperator.AVERAGE_POOL_2D:
            oc.builtinCode = oc.deprecatedBuiltinCode = fb.BuiltinOperator.MAX_POOL_2D
    p = tmp_path / "maxpool.tflite"
    p.write_bytes(_pack(m))
    assert parse_model(p.read_bytes()).op_set.count("MAX_POOL_2D") == 1
    msg = _err(model=str(p), profile="kws01")
    assert "MAX_POOL_2D" in msg and "does not register" in msg
    # allowed on request: TFLM runs it
    eng = open_engine(str(p), profile="kws01", check_ops=False)
    eng.set_input(bytes(490))
    eng.invoke(1)
    assert eng.results_text().startswith("m-results-[")


def test_backend_package_not_installed(models_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    msg = _err(model="kws01", models_dir=models_dir, backend="litert")
    assert "pip install ai-edge-litert" in msg


def test_tflm_package_not_installed(models_dir, monkeypatch):
    for mod in ("tflite_micro", "tflite_micro.python", "tflite_micro.python.tflite_micro",
                "tflite_micro.python.tflite_micro.runtime"):
        monkeypatch.setitem(sys.modules, mod, None)
    msg = _err(model="kws01", models_dir=models_dir)
    assert "pip install tflite-micro" in msg


def test_arena_too_small_for_the_firmware(tmp_path, models_dir, monkeypatch):
    """A model whose activations do not fit kTensorArenaSize fails like the board."""
    from emulator.models import profiles

    small = profiles.PROFILES["kws01"].__class__(**{**profiles.PROFILES["kws01"].__dict__, "arena_size": 8 * 1024})
    monkeypatch.setitem(profiles.PROFILES, "kws01", small)
    msg = _err(model="kws01", models_dir=models_dir)
    assert "needs a 24272-byte tensor arena" in msg and "8192-byte tensor arena" in msg
    assert "reference firmware would fail" in msg


def test_model_tflm_cannot_prepare(tmp_path, models_dir):
    data = (models_dir / "kws01.tflite").read_bytes()
    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))
    for oc in m.operatorCodes:  # RESHAPE -> SQUEEZE: SQUEEZE takes one input, not two
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == fb.BuiltinOperator.RESHAPE:
            oc.builtinCode = oc.deprecatedBuiltinCode = fb.BuiltinOperator.SQUEEZE
    p = tmp_path / "squeeze.tflite"
    p.write_bytes(_pack(m))
    msg = _err(model=str(p), profile="kws01", check_ops=False)
    assert "TFLM cannot prepare this model" in msg
