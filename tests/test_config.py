"""One configuration (emulator.config.TwinConfig), one option set for the
commands that build twins, and the tinytwin:// URL's options."""
from __future__ import annotations

import json
import math
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial
from typer.testing import CliRunner

import emulator.urlhandler  # noqa: F401  (registers tinytwin://)
from emulator.cli import app
from emulator.config import URL_OPTIONS, TwinConfig, valid_url_options
from emulator.errors import ConfigError, TinytwinError

TINYTWIN = [sys.executable, "-m", "emulator.cli"]

#: what every command that builds a twin accepts
SHARED = ("--model", "--models-dir", "--io-profile", "--backend", "--profile", "--clock-mhz",
          "--timer-start-us", "--ignore-host-baud")


def test_config_parses_and_checks_its_fields(tmp_path):
    c = TwinConfig("kws01", speed="10", models_dir=str(tmp_path), timing_profile=str(tmp_path / "p.json"))
    assert c.speed.factor == 10 and c.models_dir == tmp_path and c.timing_profile == tmp_path / "p.json"
    assert TwinConfig("kws01").speed.is_fast and TwinConfig("kws01").honour_host_baud
    assert c.replace(speed="realtime").speed.is_realtime and c.speed.factor == 10  # frozen: a copy
    for kw, word in [({"speed": "warp"}, "speed"), ({"baud": 0}, "baud"), ({"timer_start_us": 2**32}, "timer_start_us"),
                     ({"clock_mhz": -1.0}, "clock_mhz"), ({"clock_mhz": math.nan}, "clock_mhz")]:
        with pytest.raises(ConfigError, match=word) as exc:
            TwinConfig("kws01", **kw)
        assert isinstance(exc.value, TinytwinError) and exc.value.option == word
    with pytest.raises(ConfigError, match="no model"):
        TwinConfig("")
    with pytest.raises(ConfigError, match="power profile"):
        TwinConfig("kws01", power_profile=tmp_path / "none.json").power_model()


def test_url_options_are_the_cli_options_with_underscores():
    # energy, baud and firmware_variant are tinytwin dut's own options (--energy, --baud, --firmware-variant)
    assert set(URL_OPTIONS) - {"energy", "baud", "speed", "firmware_variant"} == (
        {o[2:].replace("-", "_") for o in SHARED} - {"model"}
    )
    cfg, handler = TwinConfig.from_url(
        "tinytwin://kws01?models_dir=/m&io_profile=&speed=realtime&timer_start_us=4293967296&clock_mhz=80"
        "&ignore_host_baud=1&energy=true&baud=9600&backend=litert&instance=a"
    )
    assert cfg == TwinConfig("kws01", models_dir=Path("/m"), speed="realtime", timer_start_us=4293967296,
                             clock_mhz=80.0, honour_host_baud=False, energy_mode=True, baud=9600, backend="litert")
    assert handler == {"instance": "a"}
    own, _ = TwinConfig.from_url("tinytwin:///home/me/my.tflite?io_profile=kws01")
    assert own.model == "/home/me/my.tflite" and own.io_profile == "kws01"


@pytest.mark.parametrize("url,message", [
    ("tinytwin://kws01?profil=x", "unknown option 'profil'"),
    ("tinytwin://kws01?speed=fast&modelsdir=/x", "unknown option 'modelsdir'"),
    ("tinytwin://kws01?foo", "unknown option 'foo'"),
])
def test_url_rejects_unknown_options_naming_the_valid_ones(url, message):
    with pytest.raises(serial.SerialException) as exc:
        serial.serial_for_url(url)
    text = str(exc.value)
    assert message in text and all(o in text for o in valid_url_options())


@pytest.mark.parametrize("url,message", [
    ("tinytwin://kws01?profile=kws01", "io_profile=kws01"),  # the old spelling of the I/O profile
    ("tinytwin://kws01?speed=warp", "speed"),
    ("tinytwin://kws01?baud=fast", "baud= takes a whole number"),
    ("tinytwin://kws01?ignore_host_baud=maybe", "ignore_host_baud= takes 1 or 0"),
    ("tinytwin://kws99?speed=fast", "unknown model 'kws99'"),
])
def test_url_bad_values_are_one_serial_exception(url, message):
    with pytest.raises(serial.SerialException, match=re.escape(message)):
        serial.serial_for_url(url)


@pytest.mark.parametrize("command,extra", [
    ("dut", ("--link", "--baud", "--energy", "--speed")),
    ("rig", ("--dir", "--interface", "--power-profile", "--speed")),
    ("external", ("--energy", "--interface", "--power-profile", "--speed", "--dut-baud")),
])
def test_dut_rig_and_external_share_one_option_set(command, extra):
    r = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert r.exit_code == 0, r.output
    for opt in SHARED + extra:
        assert re.search(rf"{re.escape(opt)}\b", r.output), (command, opt)


@pytest.mark.parametrize("command", ["dut", "rig"])
def test_a_bad_option_value_is_a_usage_error_naming_it(command):
    r = CliRunner().invoke(app, [command, "--model", "kws01", "--speed", "warp"])
    assert r.exit_code == 2 and "--speed" in r.output and "realtime" in r.output
    r = CliRunner().invoke(app, [command, "--model", "kws01", "--timer-start-us", "-1"])
    assert r.exit_code == 2 and "--timer-start-us" in r.output


def test_cli_version_and_short_help():
    r = subprocess.run(TINYTWIN + ["--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and re.fullmatch(r"tinytwin \S+\n", r.stdout)
    r = subprocess.run(TINYTWIN + ["models", "download", "-h"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--force" in r.stdout
    assert "<bool>" not in r.stdout  # flags take no value, and --help does not say otherwise


def test_rig_serves_your_own_model_for_an_energy_run(models_dir, tmp_path):
    """`tinytwin rig --model my.tflite --io-profile kws01`, then an energy run against it."""
    from runner.synth import synthesize

    own = tmp_path / "my.tflite"
    shutil.copy(models_dir / "kws01.tflite", own)
    synthesize("kws01", tmp_path / "datasets", 2, models_dir=models_dir, seed=3)
    rigdir = tmp_path / "rig"
    rig = subprocess.Popen(
        TINYTWIN + ["rig", "--model", str(own), "--io-profile", "kws01", "--dir", str(rigdir), "--speed", "fast"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        out = tmp_path / "out"
        r = subprocess.run(
            TINYTWIN + ["run", "--mode", "energy", "--io-port", str(rigdir / "io"), "--emon-port", str(rigdir / "emon"),
                        "--dataset", str(tmp_path / "datasets"), "--out", str(out), "--iterations", "5",
                        "--windows", "2", "--no-progress"],
            capture_output=True, text=True, timeout=300,
        )
        assert r.returncode == 1, r.stderr[-2000:]  # invalid: 2 short windows, not 5 of 10 s
        rec = json.loads((out / "results.json").read_text())
        assert rec["dut"]["model"] == "kws01" and len(rec["energy"]["windows"]) == 2
        assert 5000 < rec["energy"]["median_uj_per_inference"] < 10000  # kws01 at 3.0 V: ~7400 µJ/inf
        assert (out / "trace1-energy.png").is_file()
    finally:
        rig.send_signal(signal.SIGTERM)
        rig.wait(timeout=10)
    assert rig.returncode == 0
