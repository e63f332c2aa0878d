"""Shared test fixtures: the one place that decides where the test data are.

Models come from the one model resolver, :mod:`emulator.models.store`
(``$TINYTWIN_MODELS_DIR``, else the download cache of ``tinytwin models
download``, else a development checkout's ``../shared/models``). The reference
board's logs and the datasets come from the project's ground-truth folder
(``../shared`` next to the repository, or ``$TINYTWIN_SHARED``). Tests that
need either skip, saying how to get them, when they are absent, so a fresh
clone runs the rest of the suite.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from emulator.models import store

REPO = Path(__file__).resolve().parents[1]

MODELS_MISSING = (
    "the official models are not in {where}: run `tinytwin models download` "
    "(or set TINYTWIN_MODELS_DIR to a directory that has them)"
)
SHARED_MISSING = (
    "needs the project's ground-truth folder (the reference board's logs, datasets), which is not "
    "here: put it at ../shared beside the repository or set TINYTWIN_SHARED to it"
)


def shared_dir() -> Path | None:
    """The ground-truth folder (see :func:`emulator.models.store.shared_dir`)."""
    return store.shared_dir()


def models_dir_or_none() -> Path | None:
    """The directory that holds the four official models, verified, or None."""
    d = store.resolve_models_dir(names=store.OFFICIAL)
    if all(r.ok for r in store.verify(d)):
        return d
    return None


@pytest.fixture(scope="session")
def models_dir() -> Path:
    d = models_dir_or_none()
    if d is None:
        pytest.skip(MODELS_MISSING.format(where=", ".join(str(p) for p in store.search_dirs())))
    return d


@pytest.fixture(scope="session")
def shared() -> Path:
    p = shared_dir()
    if p is None:
        pytest.skip(SHARED_MISSING)
    return p


@pytest.fixture(scope="session")
def optional_shared() -> Path | None:
    """The ground-truth folder if it is there (for tests that use it when they can)."""
    return shared_dir()


@pytest.fixture(scope="session")
def golden(shared: Path) -> Path:
    g = shared / "golden" / "l4r5zi-tflm-v0.5"
    if not g.is_dir():
        pytest.skip(f"the reference board's logs are not in {g}: " + SHARED_MISSING)
    return g


@pytest.fixture()
def mirror(tmp_path, models_dir) -> Path:
    """A directory laid out like mlcommons/tiny at the pinned commit (what
    ``tinytwin models download --base-url file://...`` reads)."""
    root = tmp_path / "mirror"
    for name, om in store.OFFICIAL.items():
        dst = root / om.upstream_path
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(models_dir / f"{name}.tflite", dst)
    return root


@pytest.fixture()
def downloaded(tmp_path, mirror, monkeypatch) -> Path:
    """A user's machine after ``tinytwin models download``: the models only in
    the download cache (no TINYTWIN_MODELS_DIR, no ground-truth folder)."""
    from typer.testing import CliRunner

    from emulator.models.cli import app

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(store.ENV_DIR, raising=False)
    monkeypatch.setenv(store.ENV_SHARED, str(tmp_path / "no-shared"))
    r = CliRunner().invoke(app, ["download", "--base-url", mirror.as_uri()])
    assert r.exit_code == 0, r.output
    cache = tmp_path / "cache" / "tinytwin" / "models"
    assert sorted(p.name for p in cache.glob("*.tflite")) == sorted(f"{n}.tflite" for n in store.OFFICIAL)
    return cache


@pytest.fixture(scope="session")
def sww01_engine(models_dir):
    """The sww01 model through TFLM (the streaming firmware's th_ai_run)."""
    from emulator.dut.sww01.model import open_sww01

    if not (models_dir / "sww01.tflite").is_file():
        pytest.skip("sww01.tflite is missing: run `tinytwin models download`")
    return open_sww01(models_dir)


@pytest.fixture(scope="session")
def sww01_sd_card(shared) -> Path:
    """The interface board's SD card folder with the runner's short test file."""
    if not (shared / "sd_card" / "short_wav_easy10s.wav").is_file():
        pytest.skip("../shared/sd_card/short_wav_easy10s.wav is missing (mlcommons/tiny benchmark/runner/sd_card)")
    return shared / "sd_card"
