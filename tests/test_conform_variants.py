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
