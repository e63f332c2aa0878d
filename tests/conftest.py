"""Shared test fixtures.

Ground truth lives in ``../shared`` next to the repository (or wherever
``TINYTWIN_SHARED`` points). Tests that need it skip with a clear reason when it
is absent, so a user's machine without it still runs the rest of the suite.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    env = os.environ.get("TINYTWIN_SHARED")
    p = Path(env) if env else REPO.parent / "shared"
    return p if (p / "models").is_dir() else None


@pytest.fixture(scope="session")
def shared() -> Path:
    p = shared_dir()
    if p is None:
        pytest.skip("../shared (models, datasets, golden logs) is not present; set TINYTWIN_SHARED")
    return p


@pytest.fixture(scope="session")
def models_dir(shared: Path) -> Path:
    return shared / "models"


@pytest.fixture(scope="session")
def golden(shared: Path) -> Path:
    return shared / "golden" / "l4r5zi-tflm-v0.5"


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
