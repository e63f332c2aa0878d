"""Parts of tinytwin conform that need no board: reading answers off a real
pyserial port (loop://, which returns what is written), the prose lookup and
how bytes are shown."""
from __future__ import annotations

import pytest
import serial

from firmware_api_spec import load_spec
from runner.conform.report import prose_section, show_bytes, slug
from runner.conform.session import DEVIATION, NA, PASS, CaseResult, Conformance, ConformOptions
from runner.conform.wire import AnswerShape, Exchange, Wire


def loop_wire() -> Wire:
    return Wire(serial.serial_for_url("loop://", timeout=0.01))


def test_an_answer_ends_at_its_ready_line():
    w = loop_wire()
    ex = w.exchange("send", b"m-name-dut-[x]\r\nm-ready\r\n", AnswerShape(ready=1, lines=2, quiet=0.05))
    assert ex.ended == "complete"
    assert ex.text_lines() == ["m-name-dut-[x]", "m-ready"]
    assert [round(t, 1) for t, _ in ex.lines()] == [0.0, 0.0]


def test_an_answer_without_its_ready_line_ends_after_a_grace_period():
    w = loop_wire()
    ex = w.exchange("send", b"e-[Unknown command: ]\r\n", AnswerShape(ready=1, lines=2, quiet=0.05, ready_grace=0.2,
                                                                    silence=5.0))
    assert ex.ended == "quiet" and ex.duration() < 1.0
    assert ex.text_lines() == ["e-[Unknown command: ]"]


def test_no_answer_is_awaited_for_its_time_only():
    w = loop_wire()
    ex = w.exchange("send", b"", AnswerShape(ready=0, lines=0, no_answer=0.2))
    assert ex.ended == "no-answer" and ex.received == b""


def test_a_silent_board_ends_the_wait_at_the_silence_limit():
    w = loop_wire()
    ex = w.exchange("send", b"", AnswerShape(ready=1, lines=2, silence=0.3))
    assert ex.ended == "silence" and ex.received == b""


def test_input_sent_while_an_answer_arrives_is_recorded():
    w = loop_wire()
    seen = []

    def hook(line, ex):
        seen.append(line)
        return b"m-ready\r\n" if line == b"m-infer-start-1" else None

    ex = w.exchange("send", b"m-infer-start-1\r\n", AnswerShape(ready=1, lines=None, quiet=0.05), on_line=hook)
    assert [d for _, d in ex.injected] == [b"m-ready\r\n"]
    assert ex.text_lines() == ["m-infer-start-1", "m-ready"] and seen == [b"m-infer-start-1", b"m-ready"]


def test_prose_sections_and_their_anchors():
    title, anchor, body = prose_section("dut_protocol.md", "3.2")
    assert title == "3.2 The 80-character command buffer"
    assert anchor == "32-the-80-character-command-buffer"
    assert "80 characters" in body and "### " not in body
    assert prose_section("dut_protocol.md", "99") is None
    # a section with subsections stops at the first one
    assert "3.1" not in prose_section("dut_protocol.md", "3")[2]
    assert slug("5.6 `db <hex>`") == "56-db-hex"
    assert prose_section("lpm01a.md", "5.8")[1] == "58-volt-vget"


def test_bytes_are_shown_as_a_reader_needs_them():
    assert show_bytes(b"name\r\n%") == "name\\r\\n%"
    assert show_bytes(b"\x00\xff\t\\") == "\\x00\\xff\\t\\\\"


def test_cli_lists_cases_and_reports_errors_as_messages():
    from typer.testing import CliRunner

    from emulator.cli import app

    cli = CliRunner()
    res = cli.invoke(app, ["conform", "--list", "--profile", "lpm01a"])
    assert res.exit_code == 0 and "acquisition_stopped_by_the_host" in res.output and "inferred" in res.output
    res = cli.invoke(app, ["conform", "--port", "/nonexistent/tty-for-conform", "--port-wait", "0.2"])
    assert res.exit_code == 2 and "cannot open port /nonexistent/tty-for-conform" in res.output
    assert "after 0.2 s" in res.output
    assert "Traceback" not in res.output
    res = cli.invoke(app, ["conform", "--port", "loop://", "--profile", "nope"])
    assert res.exit_code == 2 and "unknown profile 'nope'" in res.output
    res = cli.invoke(app, ["conform"])
    assert res.exit_code == 2 and "--port is required" in res.output


def test_a_port_that_answers_nothing_is_named():
    from runner.conform import ConformOptions, run_conformance
    from runner.errors import DeviceError

    # loop:// returns what is written: "name%" comes back, which no DUT would answer
    try:
        run_conformance(ConformOptions(port="loop://", profile="dut-energy", timeout=0.3))
    except DeviceError as exc:
        assert "loop://" in str(exc) and "--profile" in str(exc)
    else:
        raise AssertionError("no error")


def test_part_of_a_command_is_not_awaited_as_a_whole_silence():
    """A setup write without a terminator (``na``, before ``me%``) gets no
    answer: the tester waits ``no_answer``, not ``--timeout``. A write with a
    command in it is read up to its ending line, as before."""
    import os
    import time

    from runner.conform import ConformOptions
    from runner.conform.profiles import make_driver, profile_named

    for name, part, whole in (("dut", b"na", b"name%"), ("ioman-arduino", b"na", b"name%"), ("lpm01a", b"htc", b"htc\r\n")):
        drv = make_driver(profile_named(name), ConformOptions(port="unused", profile=name, timeout=30.0))
        assert drv.setup_shape(part).lines == 0, name
        assert drv.setup_shape(whole) == drv.prep_shape(1), name
    master, slave = os.openpty()  # a port on which nothing answers
    try:
        w = Wire(serial.Serial(os.ttyname(slave), timeout=0.01))
        drv = make_driver(profile_named("dut"), ConformOptions(port="unused", profile="dut", timeout=30.0))
        t0 = time.monotonic()
        ex = w.exchange("setup", b"na", drv.setup_shape(b"na"))
        assert ex.ended == "no-answer" and time.monotonic() - t0 < 10.0
        assert os.read(master, 16) == b"na"
        w.close()
    finally:
        os.close(master)
        os.close(slave)


def test_an_lpm01a_answer_framed_by_blank_lines_is_allowed_not_a_runner_breaking_deviation():
    # whether blank lines frame the PowerShield's answers is inferred (a 2019
    # host driver reads exactly "\r\nPowerShield > ack htc\r\n\r\n"), and the
    # runners skip blank lines: such a board breaks no runner
    conf = Conformance(ConformOptions(port="unused", profile="lpm01a"))  # (opens nothing)
    case = conf.spec.case("htc")

    def classify(answer: bytes) -> CaseResult:
        ex = Exchange("send", case.send, 0.0, chunks=[(0.001, answer)])
        return conf._classify(case, ex, CaseResult(case, ""))

    assert classify(b"PowerShield > ack htc\r\n").status == PASS
    framed = classify(b"\r\nPowerShield > ack htc\r\n\r\n")
    assert framed.status == NA and not framed.breaks_runner and "blank lines" in framed.reason
    wrong = classify(b"\r\nPowerShield > error htc\r\n\r\n")
    assert wrong.status == DEVIATION and wrong.breaks_runner
    # the DUT's spec fixes its framing: there a blank line is a deviation
    assert not load_spec().matches_but_for_blank_lines(["m-ready"], b"\r\nm-ready\r\n", None)
    assert conf.spec.matches_but_for_blank_lines(["PowerShield > ack htc"], b"\r\nPowerShield > ack htc\r\n\r\n", None)


def test_setups_load_with_the_runners_chunk():
    """A port whose command buffer holds what the runners send (31 bytes a db
    command) must not be failed by the tester's own setups."""
    from firmware_api_spec.dut_spec import DB_CHUNK, db_commands
    from runner.protocol import DB_CHUNK_BYTES

    assert DB_CHUNK == DB_CHUNK_BYTES
    assert max(len(c) for c in db_commands(bytes(490))) == len(b"db ") + 2 * DB_CHUNK_BYTES + 1


class ScriptedDut:
    """A pyserial-like port with a board that answers name%, profile% and
    timestamp% from a table (the line ends and extra lines a port may print)."""

    def __init__(self, answers: dict[bytes, bytes]):
        self.answers, self._out, self._in = answers, bytearray(), bytearray()
        self.timeout, self.baudrate = 0.0, 115200

    def write(self, data: bytes) -> int:
        self._in += data
        while b"%" in self._in:
            cmd, _, rest = bytes(self._in).partition(b"%")
            self._in = bytearray(rest)
            self._out += self.answers.get(cmd, b"e-[Unknown command: " + cmd + b"]\r\nm-ready\r\n")
        return len(data)

    @property
    def in_waiting(self) -> int:
        return len(self._out)

    def read(self, n: int = 1) -> bytes:
        out, self._out = bytes(self._out[:n]), self._out[n:]
        return out

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize("name_answer, breaks", [
    (b"m-name-dut-[unspecified]\nm-ready\n", False),  # LF only: both runners drop CR
    (b"m-name-dut-[unspecified]\r\nbooting the NPU\r\nm-ready\r\n", False),  # an info line runners skip
    (b"m-name-dut-[unspecified]\r\nm-readyy\r\n", True),  # a protocol line wrong: no m-ready
    (b"m-name-dut-[unspecified]\r\nm-lap-us-12\r\nm-ready\r\n", True),  # a protocol line too many
    (b"m-name-dut-[unspecified]\r\nInput db has 3 elemented, expected 490\r\nm-ready\r\n", True),  # an error ours reads
])
def test_a_runner_case_read_the_same_by_the_runners_breaks_none(name_answer, breaks):
    from runner.conform import ConformOptions, run_conformance
    from runner.conform.session import DEVIATION

    board = ScriptedDut({
        b"name": name_answer,
        b"profile": b"m-profile-[ULPMark for tinyML Firmware V0.0.1]\r\nm-model-[kws01]\r\nm-ready\r\n",
        b"timestamp": b"m-lap-us-1000\r\nm-ready\r\n",
    })
    rep = run_conformance(ConformOptions(port="scripted", profile="dut", only=["name", "profile"], timeout=0.3,
                                         quiet=0.05, opener=lambda port, baud: board))
    name, profile = rep.result("name"), rep.result("profile")
    assert profile.status == "pass"
    assert name.status == DEVIATION and name.breaks_runner is breaks, name.reason
    assert ("breaks none of them" in name.reason) is not breaks


def test_cli_list_follows_the_profile_and_explain_is_the_dut_lesson():
    from typer.testing import CliRunner

    from emulator.cli import app
    from firmware_api_spec import load_spec

    spec = load_spec()
    energy_only = next(c.id for c in spec.cases if c.mode == "energy")
    perf_only = next(c.id for c in spec.cases if c.mode == "performance")
    cli = CliRunner()
    res = cli.invoke(app, ["conform", "--list", "--profile", "dut"])
    assert res.exit_code == 0 and perf_only in res.output and energy_only not in res.output
    res = cli.invoke(app, ["conform", "--list", "--profile", "dut-energy"])
    assert res.exit_code == 0 and energy_only in res.output and perf_only not in res.output
    res = cli.invoke(app, ["conform", "--explain", "--profile", "lpm01a", "--no-pause"])
    assert res.exit_code == 2 and "--explain walks through the DUT protocol" in res.output


def test_model_chosen_over_the_boards_own_is_said():
    from runner.conform import ConformOptions, run_conformance

    board = ScriptedDut({
        b"name": b"m-name-dut-[unspecified]\r\nm-ready\r\n",
        b"profile": b"m-profile-[ULPMark for tinyML Firmware V0.0.1]\r\nm-model-[kws01]\r\nm-ready\r\n",
        b"timestamp": b"m-lap-us-1000\r\nm-ready\r\n",
    })
    rep = run_conformance(ConformOptions(port="scripted", profile="dut", model="ic01", only=["name"], timeout=0.3,
                                         quiet=0.05, opener=lambda port, baud: board))
    assert rep.model == "ic01"
    assert any("the board names its model 'kws01'" in n and "--model ic01" in n for n in rep.notes)


@pytest.mark.parametrize("results, status, breaks", [
    (b"0.003,0.386,0.000,0.597,0.000,0.000,0.000,0.000,0.000,0.000,0.000,0.011", "pass", False),  # the reference's
    (b"0.004,0.380,0.000,0.605,0.000,0.000,0.000,0.000,0.000,0.000,0.000,0.011", "n/a", False),  # other numbers, same class
    # another class: a deviation, but one input is no runner failure (the reference board gets some wrong too)
    (b"0.003,0.597,0.000,0.386,0.000,0.000,0.000,0.000,0.000,0.000,0.000,0.011", "deviation", False),
])
def test_golden_results_may_differ_in_numbers_not_in_the_top_class(shared, results, status, breaks):
    from runner.conform import ConformOptions, run_conformance

    infer = (b"m-warmup-start-0\r\nm-warmup-done\r\nm-infer-start-1\r\nm-lap-us-1000\r\nm-lap-us-183000\r\n"
             b"m-infer-done\r\nm-results-[" + results + b"]\r\nm-ready\r\n")
    board = ScriptedDut({
        b"name": b"m-name-dut-[unspecified]\r\nm-ready\r\n",
        b"profile": b"m-profile-[ULPMark for tinyML Firmware V0.0.1]\r\nm-model-[kws01]\r\nm-ready\r\n",
        b"timestamp": b"m-lap-us-1000\r\nm-ready\r\n",
        b"infer 1 0": infer,
    })
    rep = run_conformance(ConformOptions(port="scripted", profile="dut", only=["infer_golden_kws01_no"], data=shared,
                                         timeout=0.3, quiet=0.05, opener=lambda port, baud: board))
    r = rep.result("infer_golden_kws01_no")
    assert (r.status, r.breaks_runner) == (status, breaks), r.reason
    if status == "deviation":
        assert "pick class 1, the reference board's class 3" in r.reason and "accuracy run" in r.reason



def test_early_restart_needs_the_timer_to_go_back():
    """A timer that restarts (values go back) is told apart from one that only
    runs fast (timing_timer_rate's to judge)."""
    from runner.conform.timing import _early_restart

    def lap(t, v):
        return Exchange("send", b"timestamp%", t, chunks=[(t + 0.001, b"m-lap-us-%d\r\n" % v)])  # times: monotonic

    assert _early_restart([lap(0.0, 35_000_000), lap(2.0, 1_200_000)]) is not None  # went back: restarted
    assert _early_restart([lap(0.0, 1_000_000), lap(2.0, 60_000_000)]) is None  # 30x fast, not a restart
    assert _early_restart([lap(0.0, 2**32 - 500_000), lap(2.0, 1_500_000)]) is None  # the real wrap
