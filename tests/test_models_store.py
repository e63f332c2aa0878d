"""Models directory resolution, download (from a loopback server / file://), verify, CLI."""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emulator.models import ModelError, store
from emulator.models.cli import app
from emulator.models.profiles import PROFILES


@pytest.fixture()
def server(mirror):
    """http://127.0.0.1:<port>/ serving the mirror; stopped after the test."""
    handler = functools.partial(_QuietHandler, directory=str(mirror))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_official_table_matches_profiles_and_shared(models_dir):
    for name, om in store.OFFICIAL.items():
        data = (models_dir / f"{name}.tflite").read_bytes()
        assert hashlib.md5(data).hexdigest() == om.md5
        if name in PROFILES:  # sww01 has its own firmware, not an EEMBC I/O profile
            assert om.md5 == PROFILES[name].official_md5
        assert hashlib.sha256(data).hexdigest() == om.sha256
        assert len(data) == om.size
    assert store.DEFAULT_BASE_URL.startswith("https://raw.githubusercontent.com/mlcommons/tiny/")
    assert len(store.PINNED_COMMIT) == 40
    assert set(store.OFFICIAL) == {"kws01", "vww01", "ic01", "ad01", "sww01"}
    assert store.OFFICIAL["sww01"].commit == store.SWW01_COMMIT != store.PINNED_COMMIT
    assert store.model_url("sww01").endswith(
        f"/{store.SWW01_COMMIT}/benchmark/training/streaming_wakeword/trained_models/str_ww_ref_model.tflite")
    assert store.model_url("kws01").startswith(store.DEFAULT_BASE_URL)


def test_resolution_order(tmp_path, monkeypatch):
    """explicit dir > $TINYTWIN_MODELS_DIR > the download cache > the ground-truth folder."""
    cache = tmp_path / "cache" / "tinytwin" / "models"
    shared = tmp_path / "shared"
    (shared / "models").mkdir(parents=True)
    (shared / "models" / "kws01.tflite").write_bytes(b"shared")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TINYTWIN_MODELS_DIR", raising=False)
    monkeypatch.setenv("TINYTWIN_SHARED", str(tmp_path / "nowhere"))
    assert store.search_dirs() == [cache]
    assert store.resolve_models_dir() == cache  # nothing anywhere: where download puts them
    with pytest.raises(ModelError, match="tinytwin models download"):
        store.resolve_model("kws01")
    monkeypatch.setenv("TINYTWIN_SHARED", str(shared))
    assert store.search_dirs() == [cache, shared / "models"]
    assert store.resolve_models_dir() == shared / "models"
    assert store.resolve_model("kws01") == shared / "models" / "kws01.tflite"
    cache.mkdir(parents=True)
    (cache / "kws01.tflite").write_bytes(b"cache")
    assert store.resolve_model("kws01") == cache / "kws01.tflite"  # the download cache first
    assert store.resolve_models_dir() == cache
    assert store.download_dir() == cache
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert store.default_models_dir() == Path.home() / ".cache" / "tinytwin" / "models"
    monkeypatch.setenv("TINYTWIN_MODELS_DIR", str(tmp_path / "env"))
    assert store.search_dirs() == [tmp_path / "env"]  # the variable alone: nothing else is searched
    assert store.resolve_models_dir() == tmp_path / "env" == store.download_dir()
    with pytest.raises(ModelError, match="does not exist"):
        store.resolve_model("kws01")
    assert store.resolve_models_dir(tmp_path / "arg") == tmp_path / "arg" == store.download_dir(tmp_path / "arg")
    assert store.resolve_model("kws01", shared / "models") == shared / "models" / "kws01.tflite"
    with pytest.raises(ModelError, match="unknown model 'kws99'"):
        store.resolve_model("kws99")
    own = tmp_path / "my.tflite"
    own.write_bytes(b"x")
    assert store.resolve_model(str(own)) == own


def test_download_over_http_then_verify(tmp_path, server):
    dest = tmp_path / "models"
    res = store.download(dest, base_url=server, timeout=10)
    assert [r.status for r in res] == ["downloaded"] * 5
    assert all(r.detail.startswith(server) for r in res)
    assert [r.status for r in store.verify(dest)] == ["ok"] * 5
    assert sorted(p.name for p in dest.iterdir()) == [
        "ad01.tflite", "ic01.tflite", "kws01.tflite", "sww01.tflite", "vww01.tflite"]
    # present and correct: kept, not fetched again
    assert [r.status for r in store.download(dest, base_url=server, timeout=10)] == ["ok"] * 5


def test_download_rejects_wrong_bytes(tmp_path, mirror, server):
    bad = mirror / store.OFFICIAL["ic01"].upstream_path
    bad.write_bytes(bad.read_bytes()[:-1] + b"\x00")
    dest = tmp_path / "models"
    res = {r.name: r for r in store.download(dest, base_url=server, timeout=10)}
    assert res["ic01"].status == "failed" and "expected 2d6dd48722471313e4c4528249205ae3" in res["ic01"].detail
    assert not (dest / "ic01.tflite").exists()
    assert not list(dest.glob("*.part"))
    assert res["kws01"].status == "downloaded"


def test_download_unreachable_and_env_url(tmp_path, mirror, monkeypatch):
    res = store.download(tmp_path / "a", base_url="http://127.0.0.1:9/", timeout=2, names=["kws01"])
    assert res[0].status == "failed" and "cannot fetch" in res[0].detail
    monkeypatch.setenv("TINYTWIN_MODELS_URL", mirror.as_uri())
    res = store.download(tmp_path / "b", names=["ad01"])
    assert res[0].status == "downloaded"
    with pytest.raises(ModelError):
        store.download(tmp_path / "c", names=["kws02"])


def test_verify_reports_missing_and_mismatch(tmp_path, models_dir):
    shutil.copy(models_dir / "kws01.tflite", tmp_path / "kws01.tflite")
    (tmp_path / "vww01.tflite").write_bytes(b"not a model")
    st = {r.name: r.status for r in store.verify(tmp_path)}
    assert st == {"kws01": "ok", "vww01": "mismatch", "ic01": "missing", "ad01": "missing", "sww01": "missing"}


def test_cli_download_verify_info(tmp_path, server, monkeypatch):
    monkeypatch.delenv("TINYTWIN_MODELS_DIR", raising=False)
    runner = CliRunner()
    dest = tmp_path / "m"
    r = runner.invoke(app, ["download", "--dir", str(dest), "--base-url", server])
    assert r.exit_code == 0, r.output
    assert "all 5 models verified" in r.output
    r = runner.invoke(app, ["verify", str(dest)])
    assert r.exit_code == 0 and r.output.count(": ok") == 5
    r = runner.invoke(app, ["info", "--models-dir", str(dest), "--json"])
    assert r.exit_code == 0, r.output
    info = {m["name"]: m for m in json.loads(r.output)["models"]}
    assert info["kws01"]["md5_ok"] and info["kws01"]["size"] == 53936
    assert info["kws01"]["input"]["shape"] == [1, 49, 10, 1] and info["ad01"]["output"]["shape"] == [1, 640]
    for name, m in info.items():
        assert 0 < m["arena_used"] <= (PROFILES[name].arena_size if name in PROFILES else 32 * 1024)
    assert info["sww01"]["input"]["shape"] == [1, 30, 1, 40] and info["sww01"]["output"]["shape"] == [1, 3]
    assert info["sww01"]["firmware_arena"] is None
    r = runner.invoke(app, ["info", "--models-dir", str(dest)])
    assert r.exit_code == 0 and "arena" in r.output
    (dest / "ad01.tflite").unlink()
    r = runner.invoke(app, ["verify", str(dest)])
    assert r.exit_code == 1 and "ad01: missing" in r.output
    r = runner.invoke(app, ["info", "--models-dir", str(tmp_path / "none")])
    assert r.exit_code == 1 and "missing" in r.output and "tinytwin models download" in r.output
    r = runner.invoke(app, ["download", "--dir", str(tmp_path / "x"), "--base-url", "http://127.0.0.1:9/"])
    assert r.exit_code == 1 and "Traceback" not in r.output
