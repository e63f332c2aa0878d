"""The sww01 bench on real pseudo-terminals (emulator/benches/sww01.py through
``build_rig`` / ``build_dut_bench``) and our runner's streaming procedure
against it (runner/sww.py via ``tinytwin run``'s energy and performance modes):
the figures, the output folder, and bad input."""
from __future__ import annotations

import json
import re
import struct
import time
from pathlib import Path

import pytest
import serial

from emulator.benches.dut import build_dut_bench
from emulator.benches.rig import RigError, build_rig
from emulator.hw.sdcard import SdCardError
from runner.energy import EnergyOptions, run_energy
from runner.session import EXIT_ERROR, EXIT_OK

SHORT = "short_wav_easy10s.wav"
ACCURACY = "Accuracy: 2 True positives, 1 False negatives, 0 False positives"
#: the submission checker's sww patterns (tools/submission/submission_checker.py, 1afd2c9)
CHECKER = {
    "accuracy": r"Accuracy: ([\d]+) True positives, ([\d]+) False negatives, ([\d]+) False positives",
    "duty": r"Average duty cycle:\s*([\d\.]+)",
    "throughput": r"Estimated throughput:\s*([\d\.]+) inf\./sec\..*",
    "power": r"Power\s+: ([\d\.]+) mW.*",
}


@pytest.fixture(scope="module")
def engine(models_dir):
    from emulator.dut.sww01.model import open_sww01

    if not (models_dir / "sww01.tflite").is_file():
        pytest.skip("sww01.tflite is missing: run `tinytwin models download`")
    return open_sww01(models_dir)


@pytest.fixture(scope="module")
def sd_card(shared) -> Path:
    if not (shared / "sd_card" / SHORT).is_file():
        pytest.skip(f"../shared/sd_card/{SHORT} is missing")
    return shared / "sd_card"


def rig_run(engine, sd_card, dataset, out, *, mode="energy", truth="sww_short_test.json", emon=True, **kw):
    rig = build_rig("sww01", interface="h573", speed="fast", dir=None, sd_card=sd_card, engine=engine,
                    emon="lpm01a" if emon else None)
    rig.start()
    try:
        opts = EnergyOptions(io_port=rig.io_port.device, emon_port=rig.emon_port.device if emon else None,
                             dataset=dataset, out=out, progress=False, truth=truth, mode=mode, **kw)
        outcome = run_energy(opts)
    finally:
        rig.close()
    assert not rig.twin.errors, rig.twin.errors
    return outcome, rig


def checker_values(text: str) -> dict:
    found = {}
    for key, pat in CHECKER.items():
        for line in text.splitlines():
            m = re.search(pat, line)
            if m:
                found[key] = m.groups()
    return found


# ---------------------------------------------------------------- the bench itself


def test_rig_needs_the_h573_and_a_real_sd_card(engine, tmp_path):
    with pytest.raises(RigError, match="interface h573"):
        build_rig("sww01", interface="arduino", dir=None, engine=engine)
    with pytest.raises(SdCardError, match="no such directory"):
        build_rig("sww01", interface="h573", dir=None, engine=engine, sd_card=tmp_path / "nope")
    with pytest.raises(RigError, match="sww01"):
        build_rig("kws01", interface="h573", dir=None, sd_card=tmp_path)


def test_rig_lists_the_card_over_its_pty(engine, sd_card):
    rig = build_rig("sww01", interface="h573", speed="fast", dir=None, sd_card=sd_card, engine=engine)
    assert any("SD card" in line and str(sd_card) in line for line in rig.describe())
    rig.start()
    try:
        with serial.Serial(rig.io_path, 115200, timeout=2) as port:
            port.write(b"ls%")
            got = b""
            deadline = time.monotonic() + 10
            while not got.endswith(b"m-ready\r\n") and time.monotonic() < deadline:
                got += port.read(max(1, port.in_waiting))
    finally:
        rig.close()
    names = sorted(p.name for p in sd_card.iterdir() if p.is_file() and not p.name.startswith("."))
    assert got.decode() == "".join(n + "\r\n" for n in names) + "m-ready\r\n"


def test_dut_bench_serves_the_sww01_firmware(engine):
    bench = build_dut_bench("sww01", engine=engine, speed="fast")
    from emulator.transport import PtyPort

    port = bench.bridge.attach(PtyPort("dut", initial_baud=115200))
    bench.twin.start()
    try:
        assert bench.dut.uart.baud == 115200 and bench.dut.profile.name == "sww01"
        with serial.Serial(port.device, 115200, timeout=2) as s:
            s.write(b"name%")
            got = b""
            deadline = time.monotonic() + 10
            while b"m-ready\r\n" not in got and time.monotonic() < deadline:
                got += s.read(max(1, s.in_waiting))
    finally:
        bench.twin.close()
    assert got == b"Received command: name\r\nm-name-dut-[ML Commons]\r\nm-ready\r\n"
