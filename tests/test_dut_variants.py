"""The DUT core's firmware variants (emulator.dut.core.VARIANTS): each differs
from the reference firmware in exactly its documented way, and the default is
the reference firmware."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from emulator.dut.core import VARIANTS, DutCore, check_variant, run_script


@dataclass(frozen=True)
class Prof:
    name: str = "kws01"
    model_version: str = "kws01"
    max_db_input_size: int = 490
    input_count: int = 490
    input_elem_size: int = 1


class Engine:
    """The smallest engine the core's scripts need (no model)."""

    def set_input(self, raw: bytes) -> None:
        pass

    def load_short(self, raw: bytes) -> None:
        pass

    def invoke(self, count: int = 1) -> None:
        pass

    def results_text(self) -> str:
        return "m-results-[0.000,0.996]\r\n"


def talk(variant: str, *commands: bytes, energy: bool = False) -> bytes:
    core = DutCore(Prof(), energy_mode=energy, variant=variant)
    run_script(core, core.boot_script(), None)
    core.enable_parser()
    ticks = iter(range(1000, 10**6, 1000))
    out = b""
    for cmd in commands:
        for script in core.receive(cmd):
            out += run_script(core, script, Engine(), lambda: next(ticks))
    return out


def test_the_default_is_the_reference_firmware():
    assert DutCore(Prof()).variant == "reference"
    assert DutCore(Prof()).cmd_size == 80
    with pytest.raises(ValueError, match="unknown firmware variant 'nope'"):
        check_variant("nope")
    with pytest.raises(ValueError):
        DutCore(Prof(), variant="nope")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_is_documented_in_the_module(variant):
    import emulator.dut.core as core

    assert f"``{variant}``" in core.__doc__ or variant == "reference"


def test_results_format():
    ref = talk("reference", b"results%")
    assert ref == b"m-results-[0.000,0.996]\r\nm-ready\r\n"
    assert talk("results-format", b"results%") == b"m-results-0.000,0.996\r\nm-ready\r\n"
    # everything else is the reference firmware's
    assert talk("results-format", b"name%", b"foo%") == talk("reference", b"name%", b"foo%")


def test_no_ready_after_error():
    assert talk("no-ready-after-error", b"foo%") == b"e-[Unknown command: foo]\r\n"
    assert talk("no-ready-after-error", b"infer 0%") == b"e-[Inference iterations must be >0]\r\n"
    # unprefixed errors and normal answers keep their m-ready
    assert talk("no-ready-after-error", b"db load 9999%").endswith(b"m-ready\r\n")
    assert talk("no-ready-after-error", b"name%") == talk("reference", b"name%")


def test_cmd_buffer_64():
    cmd = b"db " + b"00" * 31 + b"%"  # the mlcommons runner's 31-byte chunk: 65 characters
    assert talk("reference", b"db load 31%", cmd).endswith(b"m-load-done\r\nm-ready\r\n")
    assert talk("cmd-buffer-64", b"db load 31%", cmd).endswith(b"e-[Insufficent number of hex digits]\r\nm-ready\r\n")
    assert talk("cmd-buffer-64", b"x" * 70 + b"%") == b"e-[Unknown command: " + b"x" * 64 + b"]\r\nm-ready\r\n"


def test_lost_lap_line():
    ref = talk("reference", b"infer 1 0%")
    lost = talk("lost-lap-line", b"infer 1 0%")
    assert ref.count(b"m-lap-us-") == 2 and lost.count(b"m-lap-us-") == 1
    assert lost.replace(b"m-results", b"").count(b"m-") == ref.replace(b"m-results", b"").count(b"m-") - 1
    # energy mode: one timestamp (edge) fewer; nothing printed either way
    assert talk("lost-lap-line", b"infer 1 0%", energy=True) == talk("reference", b"infer 1 0%", energy=True)


def test_the_variant_is_a_twin_option():
    """TwinConfig carries it to the DUT (tinytwin dut --firmware-variant, the
    tinytwin:// URL's firmware_variant=); a bad name is refused with the choices."""
    from emulator.config import TwinConfig
    from emulator.errors import ConfigError

    cfg, _ = TwinConfig.from_url("tinytwin://kws01?firmware_variant=cmd-buffer-64")
    assert cfg.firmware_variant == "cmd-buffer-64"
    assert TwinConfig("kws01").firmware_variant == "reference"
    with pytest.raises(ConfigError, match="results-format") as exc:
        TwinConfig("kws01", firmware_variant="typo")
    assert exc.value.option == "firmware_variant"
