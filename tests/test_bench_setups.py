"""The bench set-ups of ``tinytwin rig`` / ``tinytwin external``
(:mod:`emulator.benches.setups`): what a program under the launcher lists
and what answers on each port. mlcommons/tiny's runner on them is in
``test_external_mlcommons.py``; the runner's reactions in
``firmware_api_spec/faults.md`` section 3."""
from __future__ import annotations

import json
import sys
import textwrap

import pytest

from emulator.benches.external import run_external
from emulator.benches.setups import BenchSetup
from emulator.errors import ConfigError
from test_external import ECHO_TIMING, KWS01, EchoEngine

LIST_AND_ASK = r"""
import json, sys, time, serial
from serial.tools import list_ports
out = {"ports": sorted((f"{p.vid:04X}:{p.pid:04X}", p.description) for p in list_ports.comports(True) if p.vid)}

def ask(dev, baud, cmd, until=b"m-ready\r\n", n=1):
    with serial.Serial(dev, baud, timeout=3) as s:
        s.write(cmd)
        got = b""
        for _ in range(n):
            got += s.read_until(until)
        return got.decode(errors="replace")

by_id = {}
for p in list_ports.comports(True):
    if p.vid:
        by_id.setdefault(f"{p.vid:04X}:{p.pid:04X}", []).append(p.device)
io = (by_id.get("0483:374E") or [None])[0]
if "io" in sys.argv[2]:
    time.sleep(0.3)
    out["setbaud"] = ask(io, 115200, sys.argv[3].encode() + b"%")
    time.sleep(0.5)
    out["dut_name"] = ask(io, 115200, b"dut name%", b"[dut]: m-ready\r\n")
if "dut" in sys.argv[2]:
    dut = [d for k, v in by_id.items() for d in v if k in ("0483:374B",)] or by_id["0483:374E"][1:]
    out["direct"] = ask(dut[0], int(sys.argv[4]), b"name%")
json.dump(out, open(sys.argv[1], "w"))
"""


def child(tmp_path, setup, *args):
    out = tmp_path / "out.json"
    rc = run_external([sys.executable, "-c", textwrap.dedent(LIST_AND_ASK), str(out), *args], KWS01, setup=setup,
                      engine=EchoEngine(), timing=ECHO_TIMING, hide_real_ports=True, log=lambda m: None)
    assert rc == 0
    return json.loads(out.read_text())


def test_performance_firmware_behind_the_h573(tmp_path):
    r = child(tmp_path, BenchSetup(interface="h573", firmware="performance", emon="none"), "io", "setbaud 115200",
              "0")
    assert r["ports"] == [["0483:374E", "STLINK-V3"]]  # the interface board alone: no DUT port, no EMON
    assert "set baud to: 115200" in r["setbaud"]
    assert r["dut_name"].endswith("[dut]: m-name-dut-[unspecified]\r\n[dut]: m-ready\r\n")


def test_interface_board_without_an_energy_monitor_powers_the_dut_from_a_bench_supply(tmp_path):
    r = child(tmp_path, BenchSetup(interface="h573", firmware="energy", emon="none"), "io", "setbaud 9600", "0")
    assert r["ports"] == [["0483:374E", "STLINK-V3"]]
    assert r["dut_name"].endswith("[dut]: m-name-dut-[unspecified]\r\n[dut]: m-ready\r\n")  # powered: it answers


def test_the_duts_usb_still_plugged_in_during_an_energy_run(tmp_path):
    r = child(tmp_path, BenchSetup(interface="h573", firmware="energy", emon="lpm01a", dut_usb=True), "dut", "-",
              "9600")
    assert r["ports"] == [["0483:374B", "STM32 STLink"], ["0483:374E", "STLINK-V3"], ["0483:5740", "PowerShield"]]
    # the LPM01A has not switched the DUT on: its own port answers nothing yet
    assert r["direct"] == ""


def test_the_duts_usb_answers_at_the_energy_firmwares_baud_when_powered(tmp_path):
    r = child(tmp_path, BenchSetup(interface="h573", firmware="energy", emon="none", dut_usb=True), "dut io",
              "setbaud 9600", "9600")
    assert r["direct"] == "m-name-dut-[unspecified]\r\nm-ready\r\n"  # the DUT's own VCP
    assert r["dut_name"].endswith("[dut]: m-name-dut-[unspecified]\r\n[dut]: m-ready\r\n")  # and through the board


def test_a_dut_with_an_stlink_v3_shares_the_h573s_identity(tmp_path):
    r = child(tmp_path, BenchSetup(interface="h573", firmware="performance", emon="none", dut_usb=True,
                                   dut_stlink="v3"), "dut", "-", "115200")
    assert r["ports"] == [["0483:374E", "STLINK-V3"], ["0483:374E", "STLINK-V3"]]
    assert r["direct"] == "m-name-dut-[unspecified]\r\nm-ready\r\n"


def test_setup_options_resolve_and_errors_name_the_option():
    assert BenchSetup.resolve(energy=True) == BenchSetup("h573", "energy", "lpm01a")
    assert BenchSetup.resolve(energy=False) == BenchSetup("none", "performance", "none", dut_usb=True)
    assert BenchSetup.resolve(energy=False, interface="h573").firmware == "performance"
    assert BenchSetup.resolve(energy=True, emon="js220").dut_supply == "supply"
    assert BenchSetup.resolve(energy=True, emon="both").dut_supply == "lpm01a"
    for kw, word in [({"emon": "js110"}, "unknown emon 'js110'"), ({"interface": "uno"}, "unknown interface 'uno'"),
                     ({"dut_stlink": "v4"}, "unknown dut-stlink"), ({"supply_v": 5.0}, "--supply-v")]:
        with pytest.raises(ConfigError, match=word):
            BenchSetup(**kw)
