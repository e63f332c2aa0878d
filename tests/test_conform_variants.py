"""Each firmware variant of the twin (emulator.dut.core.VARIANTS: one porting
mistake each) is caught by ``tinytwin conform`` through a real pty: the report
names the deviating case and says whether it breaks a runner, in the terminal
summary, report.json and transcript.md alike."""
from __future__ import annotations

import io
import json

import pytest

from emulator.benches.dut import build_dut_bench
from emulator.transport import PtyPort
from runner.conform import ConformOptions, run_conformance
from runner.conform.report import print_summary, write_report
from runner.conform.session import DEVIATION, PASS

#: variant -> (the runner case it breaks, a reference case it also changes, a case it leaves alone)
VARIANTS = {
    "results-format": ("infer_runner_window", "results_before_inference", "db_load"),
    "no-ready-after-error": ("db_hex_odd_digits", "unknown_command", "name"),
    "cmd-buffer-64": ("db_runner_chunk_31_bytes", "line_of_85_chars_keeps_80", "line_of_81_chars_truncates_hex"),
    "lost-lap-line": ("infer_runner_window", "infer_defaults", "timestamp_performance"),
}


def run_variant(models_dir, variant, cases):
    bench = build_dut_bench("kws01", models_dir=models_dir, speed="fast", firmware_variant=variant)
    pty = bench.bridge.attach(PtyPort("dut", initial_baud=bench.dut.uart.baud))
    try:
        return run_conformance(ConformOptions(port=pty.device, profile="dut", only=list(cases),
                                              on_open=lambda ser: bench.twin.start(), boot_wait=2.0))
    finally:
        bench.twin.close()


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_tester_names_the_deviation_and_whether_it_breaks_a_runner(models_dir, variant, tmp_path):
    breaking, quirk, untouched = VARIANTS[variant]
    rep = run_variant(models_dir, variant, VARIANTS[variant])
    r = rep.result(breaking)
    assert r.status == DEVIATION and r.breaks_runner, (r.status, r.reason)
    q = rep.result(quirk)
    assert q.status == DEVIATION and not q.breaks_runner, (q.status, q.reason)
    assert rep.result(untouched).status == PASS
    assert [x.id for x in rep.breaking] == [breaking]
    # the three outputs say it
    console_text = io.StringIO()
    from rich.console import Console

    print_summary(rep, Console(file=console_text, width=200))
    assert f"will break a runner: {breaking}" in console_text.getvalue()
    js, md = write_report(rep, tmp_path)
    data = json.loads(js.read_text())
    assert data["summary"]["breaks_runner"] == [breaking]
    case = next(c for c in data["cases"] if c["id"] == breaking)
    assert case["status"] == "deviation" and case["breaks_runner"] and case["breaks"]
    text = md.read_text()
    assert f"`{breaking}` — DEVIATION" in text and "This breaks a runner" in text
    assert f"`{quirk}` — DEVIATION" in text and "No runner depends on this" in text


def test_the_reference_firmware_passes_the_same_cases(models_dir):
    cases = sorted({c for v in VARIANTS.values() for c in v})
    rep = run_variant(models_dir, "reference", cases)
    assert [r.status for r in rep.results] == [PASS] * len(rep.results), [(r.id, r.reason) for r in rep.results]


def test_what_each_variant_breaks(models_dir):
    """The reasons are specific: they say which line is wrong."""
    rep = run_variant(models_dir, "results-format", ["infer_runner_window"])
    assert "m-results-[{floats}]" in rep.result("infer_runner_window").reason
    rep = run_variant(models_dir, "no-ready-after-error", ["db_hex_odd_digits"])
    assert "no m-ready line" in rep.result("db_hex_odd_digits").reason
    rep = run_variant(models_dir, "cmd-buffer-64", ["db_runner_chunk_31_bytes"])
    assert "Insufficent number of hex digits" in rep.result("db_runner_chunk_31_bytes").reason
    rep = run_variant(models_dir, "lost-lap-line", ["infer_runner_window"])
    assert "m-lap-us-" in rep.result("infer_runner_window").reason


def test_explain_walks_through_the_lesson(models_dir, shared):
    """The tutorial against a realtime twin on a pty: every step of the
    lesson shows its rule, the bytes on the wire and why."""
    from rich.console import Console

    from firmware_api_spec import load_spec
    from runner.conform.explain import run_explain

    bench = build_dut_bench("kws01", models_dir=models_dir, speed="realtime")
    pty = bench.bridge.attach(PtyPort("dut", initial_baud=bench.dut.uart.baud))
    out = io.StringIO()
    try:
        code = run_explain(pty.device, pause=False, console=Console(file=out, width=120),
                           on_open=lambda ser: bench.twin.start(), data=shared)
    finally:
        bench.twin.close()
    text = out.getvalue()
    lesson = load_spec().data["lesson"]
    assert code == 0, text[-2000:]
    for n, case_id in enumerate(lesson, 1):
        assert f"Step {n} of {len(lesson)}: {case_id}" in text
    assert text.count("As the spec says.") == len(lesson)
    assert "-> name%" in text and "<- " in text and "m-name-dut-[unspecified]\\r\\n" in text
    assert "dut_protocol.md § 3.2 The 80-character command buffer" in text
    assert "Why:" in text and "sent while the board was busy" in text


@pytest.mark.parametrize("variant, only, code", [
    ("reference", "name,unknown_command,db_hex_odd_digits", 0),
    ("no-ready-after-error", "name,unknown_command", 3),  # a reference quirk only: a port may differ
    ("no-ready-after-error", "name,unknown_command,db_hex_odd_digits", 1),  # breaks a runner
])
def test_the_exit_code_says_whether_a_runner_breaks(models_dir, variant, only, code):
    from typer.testing import CliRunner

    from emulator.cli import app

    url = f"tinytwin://kws01?models_dir={models_dir}&firmware_variant={variant}"
    res = CliRunner().invoke(app, ["conform", "--port", url, "--only", only, "--timeout", "1"])
    assert res.exit_code == code, res.output


def test_a_port_that_fails_mid_run_keeps_the_cases_before(tmp_path):
    """The board leaves the bus during a case (a reset re-enumerating its USB):
    exit 2 with the reason, and the report of the cases before it is written."""
    from typer.testing import CliRunner

    from emulator.cli import app
    from test_runner_faults import DutBench

    b = DutBench(tmp_path, "faults: [{do: unplug, port: dut, when: {after_command: 12}}]")
    try:
        out = tmp_path / "report"
        res = CliRunner().invoke(app, ["conform", "--port", str(b.link), "--out", str(out), "--timeout", "1",
                                       "--port-wait", "0", "--only", "name,profile,help,db_load,db_load_zero,"
                                       "db_hex_until_count,db_hex_in_pieces,db_print_full_line"])
    finally:
        b.close()
    assert res.exit_code == 2, res.output
    assert "failed during case" in res.output and "Traceback" not in res.output
    data = json.loads((out / "report.json").read_text())
    assert data["stopped"] and "failed during case" in data["stopped"]
    assert 1 <= len(data["cases"]) < 8 and data["cases"][0]["id"] == "name"
