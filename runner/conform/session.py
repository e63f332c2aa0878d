"""Running a spec's cases against a port and classifying each result.

Each case gets a verdict:

* ``pass``: the board's answer is the spec's, byte for byte (and its timing
  check, if any, holds);
* ``deviation``: it is not; the case's ``requirement`` (in the YAML) says
  whether that breaks a runner (``runner``) or is a reference-firmware quirk
  a port need not copy (``reference``). A ``runner`` case whose answer the
  runners still read as the spec's (only CR, NUL, empty lines or unknown
  lines differ; :attr:`Driver.known_line`) breaks none of them;
* ``n/a``: the case does not apply to this board (another model or firmware
  build, nothing attached where it needs something), or the board gave an
  answer the spec explicitly allows a port (its own vendor name, version
  string, numerics: the case's ``allow``);
* ``skipped``: the case could run but did not (opt-in risky cases, missing
  data files, a board that stopped answering after a case that hangs it).

A board cannot be reset over its serial port, so the tester recreates the
state each case assumes (see :mod:`.profiles`) and runs every case in one
session, as a runner would.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import serial
from firmware_api_spec import Case, MissingData

from emulator.models import store

from ..errors import DeviceError
from ..link import AUTO_BAUD_WAIT_S, PORT_APPEAR_S, open_serial
from .profiles import Driver, Profile, make_driver, profile_named
from .timing import TIMING_CHECKS, TimingVerdict
from .wire import AnswerShape, Exchange, Wire

PASS, DEVIATION, NA, SKIPPED = "pass", "deviation", "n/a", "skipped"
STATUSES = (PASS, DEVIATION, NA, SKIPPED)


@dataclass
class ConformOptions:
    port: str
    profile: str = "dut"
    baud: int | None = None
    only: list[str] | None = None
    include_risky: bool = False
    #: the model whose cases to run (default: what the board's profile% says)
    model: str | None = None
    #: the shared data folder (db_file cases); default $TINYTWIN_SHARED, else ../shared beside a checkout
    data: Path | None = None
    #: seconds to wait for a boot banner after opening the port (0: do not look)
    boot_wait: float = 0.0
    #: IO managers: a powered DUT with the reference firmware is behind the board
    with_dut: bool = False
    #: H573 with a DUT: the DUT's baud (setbaud)
    dut_baud: int = 9600
    #: longest silence between two lines of an answer (s)
    timeout: float = 5.0
    #: silence that ends a complete answer (s)
    quiet: float = 0.1
    #: longest one inference may take (s), for the silent stretches of infer
    inference_timeout: float = 10.0
    #: called with the open pyserial port (tests start a twin here, so that its
    #: boot banner reaches the open port)
    on_open: Callable[[Any], None] | None = None
    #: called with each case's result as it is known
    on_result: Callable[["CaseResult"], None] | None = None
    #: opens a port: (port, baud) -> pyserial port (default runner.link.open_serial)
    opener: Callable[[str, int], Any] | None = None
    #: how long a port path that does not exist yet is waited for (s)
    port_wait_s: float = PORT_APPEAR_S


@dataclass
class CaseResult:
    case: Case
    status: str
    reason: str = ""
    #: this deviation breaks a runner (the case's requirement is "runner")
    breaks_runner: bool = False
    #: the answer differs from the spec's byte for byte, but the runners read it as the spec's
    read_as_spec: bool = False
    exchanges: list[Exchange] = field(default_factory=list)
    #: the exchange whose answer was checked
    answer: Exchange | None = None
    expected: list[str] = field(default_factory=list)
    measured: dict[str, Any] = field(default_factory=dict)
    allowed_as: list[str] | None = None
    seconds: float = 0.0

    @property
    def id(self) -> str:
        return self.case.id


@dataclass
class ConformReport:
    profile: Profile
    port: str
    baud: int | None
    spec_path: str
    spec_version: Any
    model: str | None
    identity: dict[str, str]
    started: str
    results: list[CaseResult] = field(default_factory=list)
    preamble: list[Exchange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    #: the spec's primer (the protocol in a nutshell), for transcripts
    primer: str = ""
    #: why the run stopped before its last case (the port failed); None if it did not
    stopped: str | None = None

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def breaking(self) -> list[CaseResult]:
        return [r for r in self.results if r.status == DEVIATION and r.breaks_runner]

    @property
    def pass_rate(self) -> float | None:
        """Passed among the cases that ran and applied."""
        ran = self.count(PASS) + self.count(DEVIATION)
        return None if ran == 0 else self.count(PASS) / ran

    def result(self, case_id: str) -> CaseResult:
        for r in self.results:
            if r.id == case_id:
                return r
        raise KeyError(case_id)


def _data_dir(opts: ConformOptions) -> Path | None:
    """``--data``, else the ground-truth folder every command finds
    (:func:`emulator.models.store.shared_dir`)."""
    if opts.data is not None:
        return Path(opts.data)
    return store.shared_dir()


class Conformance:
    """One session: a port, a profile, its cases."""

    def __init__(self, opts: ConformOptions):
        self.opts = opts
        self.profile = profile_named(opts.profile)
        self.driver: Driver = make_driver(self.profile, opts)
        self.spec = self.driver.spec
        self.wire: Wire | None = None
        self.baud: int | None = None
        self.hung_after: str | None = None
        self.boot_baud: int | None = None

    # -- port ----------------------------------------------------------------------
    def open(self) -> list[Exchange]:
        """Open the port, catch a boot banner, find the baud, identify the board."""
        opener = self.opts.opener or functools.partial(open_serial, wait_s=self.opts.port_wait_s)
        bauds = (self.opts.baud,) if self.opts.baud else self.profile.bauds
        # as the runner guesses a baud: a quick look at each candidate (a running
        # board answers within milliseconds), then the full --timeout at each (one
        # still booting answers late)
        plan: list[tuple[int, float | None]] = [(bauds[0], None)]
        if len(bauds) > 1:
            quick = min(self.opts.timeout, AUTO_BAUD_WAIT_S)
            plan = [(b, quick) for b in bauds] + [(b, None) for b in bauds]
        log: list[Exchange] = []
        for i, (baud, silence) in enumerate(plan):
            if self.wire is None:
                self.wire = Wire(opener(self.opts.port, baud), log)
                if self.opts.on_open is not None:
                    self.opts.on_open(self.wire.ser)
                if self.opts.boot_wait > 0:
                    self.boot_baud = baud
                    self.wire.listen("boot", self._boot_shape(), first_byte_wait=self.opts.boot_wait,
                                     note="what the board prints after a reset")
            elif baud != self.baud:
                self.wire.ser.baudrate = baud
                self.wire.discard_input()
            self.baud = baud
            if self.driver.probe(self.wire, silence):
                break
            if i == len(plan) - 1:
                self.close()
                raise DeviceError(
                    f"nothing answers on {self.opts.port} at {' or '.join(str(b) for b in bauds)} baud "
                    f"(profile {self.profile.name}: {self.profile.description}); is the board powered, the port "
                    "right? see --baud, --profile"
                )
        self.driver.identify(self.wire)
        return log

    def _boot_shape(self) -> AnswerShape:
        sh = self.driver.prep_shape(1 if self.driver.ready_lines else 0)
        sh.quiet = max(self.opts.quiet, 0.2)
        sh.silence = 2.0
        return sh

    def close(self) -> None:
        if self.wire is not None:
            self.wire.close()
            self.wire = None

    # -- the run ---------------------------------------------------------------------
    def selected(self) -> list[Case]:
        cases = self.spec.cases
        if self.opts.only:
            wanted = set(self.opts.only)
            unknown = wanted - {c.id for c in cases}
            if unknown:
                raise DeviceError(
                    f"--only: {', '.join(sorted(unknown))} {'is' if len(unknown) == 1 else 'are'} not a case of "
                    f"{self.profile.spec_file}"
                )
            cases = [c for c in cases if c.id in wanted]
        return cases

    def run(self) -> ConformReport:
        t0 = time.monotonic()
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        preamble = self.open()
        assert self.wire is not None
        report = ConformReport(
            profile=self.profile,
            port=self.opts.port,
            baud=self.baud,
            spec_path=self.profile.spec_file,
            spec_version=self.spec.data.get("spec_version"),
            model=self.driver.model,
            identity=dict(self.driver.identity),
            started=started,
            preamble=list(preamble),
            notes=list(self.driver.notes),
            primer=str(self.spec.data.get("primer", "")),
            options={
                "include_risky": self.opts.include_risky,
                "only": self.opts.only,
                "boot_wait": self.opts.boot_wait,
                "with_dut": self.opts.with_dut,
            },
        )
        boot = next((ex for ex in preamble if ex.kind == "boot"), None)
        try:
            for case in self.selected():
                log_start = len(self.wire.log)
                t_case = time.monotonic()
                try:
                    result = self.run_case(case, boot)
                except (serial.SerialException, OSError) as exc:
                    # the board reset or left the bus (USB re-enumeration): keep what was found
                    report.stopped = (
                        f"the port {self.opts.port} failed during case {case.id}: {exc}; the cases before it are "
                        "in the report (was the board reset or unplugged? run again, or --only the cases left)"
                    )
                    report.notes.append(report.stopped)
                    break
                result.exchanges = self.wire.log[log_start:]
                result.seconds = time.monotonic() - t_case
                report.results.append(result)
                if self.opts.on_result is not None:
                    self.opts.on_result(result)
        finally:
            self.close()
        if self.hung_after:
            report.notes.append(
                f"the board stopped answering after {self.hung_after} (a case that hangs it): reset or "
                "power-cycle it before using it again"
            )
        if any(r.case.risky and r.status in (PASS, DEVIATION) for r in report.results):
            report.notes.append("risky cases ran: the board's memory may be damaged; reset it before a benchmark run")
        report.seconds = time.monotonic() - t0
        return report

    # -- one case ----------------------------------------------------------------------
    def _not_run(self, case: Case) -> tuple[str, str] | None:
        if self.hung_after:
            return SKIPPED, f"the board stopped answering after {self.hung_after}"
        why = self.driver.applicable(case)
        if why:
            return NA, why
        if case.risky and not self.opts.include_risky:
            return SKIPPED, f"risky, opt-in with --include-risky: {case.risky}"
        try:
            case.setup_steps(_data_dir(self.opts), self.driver.model)
        except MissingData as exc:
            return SKIPPED, f"{exc}; give the shared data folder with --data (or set $TINYTWIN_SHARED)"
        return None

    def run_case(self, case: Case, boot: Exchange | None) -> CaseResult:
        model = self.driver.model
        expected = self.spec.describe(case.expect, model)
        verdict = self._not_run(case)
        if verdict is not None:
            return CaseResult(case, verdict[0], verdict[1], expected=expected)
        if case.boot:
            if boot is None or not boot.chunks:
                how = ("pass --boot-wait S and reset the board within S seconds"
                       if self.opts.boot_wait <= 0 else
                       f"nothing arrived within --boot-wait {self.opts.boot_wait:g} s of opening the port")
                return CaseResult(case, NA, f"no boot banner seen: {how}", expected=expected)
            if self.boot_baud != self.baud:
                return CaseResult(case, NA, f"the banner was read at {self.boot_baud} baud, before the tester found the "
                                            f"board's {self.baud}: pass --baud {self.baud}", expected=expected,
                                  answer=boot)
            return self._classify(case, boot, CaseResult(case, PASS, expected=expected, answer=boot))
        wire = self.wire
        assert wire is not None
        drv = self.driver
        drv.prepare(wire, case)
        for kind, data, ready in case.setup_plan(_data_dir(self.opts), model):
            if kind == "wait":
                time.sleep(float(data))
                continue
            if kind != "uart":
                raise DeviceError(f"case {case.id}: setup step {kind} cannot be sent over a serial port")
            if ready is None:
                ready = drv.setup_ready(data)
            wire.exchange("setup", data, drv.setup_shape(data, ready))
            drv.wrote(data)
            if not ready:
                time.sleep(0.02)
        send = case.send_for(model)
        shape = drv.shape(case.expect)
        check = TIMING_CHECKS.get(case.timing["check"]) if case.timing else None
        on_line = check.on_line(case, self) if check is not None else None
        answer = wire.exchange("send", send, shape, on_line=on_line)
        drv.wrote(send)
        for _, extra in answer.injected:
            drv.wrote(extra)
        result = CaseResult(case, PASS, expected=expected, answer=answer)
        self._classify(case, answer, result)
        if check is not None:
            timing: TimingVerdict = check.measure(case, self, answer)
            result.measured.update(timing.measured)
            if timing.status == NA and result.status == PASS:
                result.status, result.reason = NA, timing.reason
            elif not timing.ok and (result.status != DEVIATION or result.read_as_spec):
                result.status, result.reason, result.read_as_spec = DEVIATION, timing.reason, False
            elif timing.ok and timing.reason and result.status == PASS:
                result.reason = timing.reason
        for kind, data in case.teardown_steps(model):
            if kind == "wait":
                time.sleep(float(data))
            else:
                wire.exchange("teardown", data, drv.setup_shape(data))
                drv.wrote(data)
        if case.hangs:
            probe = wire.exchange("probe", drv.alive_probe or drv.terminator, drv.prep_shape(), note="does the board still answer?")
            if not probe.received:
                self.hung_after = case.id
                result.measured["answers_after"] = False
        if result.status == DEVIATION:
            result.breaks_runner = case.requirement == "runner" and not result.read_as_spec
        return result

    def _classify(self, case: Case, ex: Exchange, result: CaseResult) -> CaseResult:
        model = self.driver.model
        out = ex.received
        if self.spec.matches(case.expect, out, model):
            result.status = PASS
            return result
        idx = case.allowed(out, model)
        if idx is not None and case.top_class:
            want, got = _top_class(self.spec.describe(case.expect, model)), _top_class(ex.text_lines())
            if want is not None and got != want:
                result.status = DEVIATION
                result.reason = (f"the board's results pick class {got}, the reference board's class {want} for this "
                                 f"input (other numbers are allowed, not another top class): {case.top_class}")
                return result
        if idx is not None:
            result.status = NA
            result.allowed_as = self.spec.describe(case.allow[idx], model)
            result.reason = "the board gives an answer the spec allows a port instead of the reference one"
            return result
        if self.spec.matches_but_for_blank_lines(case.expect, out, model):
            result.status = NA
            result.allowed_as = self.spec.describe(case.expect, model)
            result.reason = ("the board's answer is the spec's but for blank lines around it: whether blank lines "
                             "frame an answer is not fixed (inferred), and runners skip them")
            return result
        result.status = DEVIATION
        result.reason = describe_difference(self.spec.describe(case.expect, model), ex, self.driver)
        known = self.driver.known_line
        if case.requirement == "runner" and known and self.spec.matches_as_runners_read(case.expect, out, model, known):
            result.read_as_spec = True
            result.reason += ("; the runners read it as the spec's answer all the same (they drop CR and NUL and "
                              "skip the lines they do not know), so this breaks none of them")
        elif case.requirement == "runner":
            result.breaks_runner = True
        return result


def _top_class(lines: list[str]) -> int | None:
    """The index of the largest value on the m-results-[...] line (the first
    of equal ones), None if there is no such line."""
    for line in lines:
        if line.startswith("m-results-[") and line.endswith("]"):
            try:
                values = [float(x) for x in line[len("m-results-["):-1].split(",") if x.strip()]
            except ValueError:
                return None
            return max(range(len(values)), key=values.__getitem__) if values else None
    return None


def describe_difference(expected: list[str], ex: Exchange, driver: Driver) -> str:
    """One sentence on where the answer departs from the expectation."""
    got = ex.text_lines()
    if not got:
        return "no answer at all" + (f" ({ex.ended})" if ex.ended else "")
    ends = {x.decode("latin-1") for x in driver.ready_lines}
    if ends and any(x in ends for x in expected) and not any(x in ends for x in got):
        return f"the answer has no {' / '.join(sorted(ends))} line (reading stopped: {ex.ended})"
    import re

    for i, want in enumerate(expected):
        if i >= len(got):
            return f"line {i + 1} is missing: expected {want!r}"
        pattern = driver.spec.line_regex(want, driver.model) if "  (x" not in want else None
        if pattern is not None and not re.fullmatch(pattern.encode("latin-1"), got[i].encode("latin-1"), re.S):
            return f"line {i + 1}: expected {want!r}, got {got[i]!r}"
    if len(got) > len(expected):
        return f"{len(got) - len(expected)} more line(s) than expected, first: {got[len(expected)]!r}"
    if ex.received and not ex.received.endswith(b"\n"):
        return f"the answer ends in an unterminated line {got[-1]!r}"
    return "the bytes differ from the expected ones (line ends?)"


def run_conformance(opts: ConformOptions) -> ConformReport:
    """Run the profile's cases against ``opts.port``; the report is returned
    (write it with :mod:`runner.conform.report`)."""
    return Conformance(opts).run()
