"""The boards ``tinytwin conform`` can test, and what it must know of each
protocol to run the spec's cases against a board it cannot reset.

A *profile* names a spec (``firmware_api_spec/*.yaml``), the baud rates to
try, and a *driver*: how to bring the board back to a known command state
(``sync``), how to tell which firmware it runs (``identify``), how to recreate
the power-on state a case assumes without a reset (``prepare``), and when an
answer is complete (``shape``). The expectations themselves are all in the
YAML.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

from firmware_api_spec import Case, Spec, load_spec, spec_path

from ..errors import DeviceError
from ..protocol import error_lines
from .wire import AnswerShape, Exchange, Wire

if TYPE_CHECKING:
    from .session import ConformOptions

#: the DUT db bytes the tester zeroes to recreate the power-on buffer the cases
#: assume (every case's data fits in them), in chunks short enough for any
#: command buffer (35 characters)
DB_CLEAR_BYTES = 64
DB_CLEAR_CHUNK = 16


@dataclass(frozen=True)
class Profile:
    name: str
    spec_file: str
    prose_file: str
    bauds: tuple[int, ...]
    description: str
    #: the firmware build a DUT profile tests (performance / energy)
    mode: str | None = None


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("dut", "dut_protocol.yaml", "dut_protocol.md", (115200, 921600),
                "a DUT with the performance-mode firmware (MLPerf Tiny reference protocol)", "performance"),
        Profile("dut-energy", "dut_protocol.yaml", "dut_protocol.md", (9600,),
                "a DUT with the energy-mode firmware, wired straight to a serial adapter (9600 baud)", "energy"),
        Profile("sww01", "sww01_protocol.yaml", "sww01_protocol.md", (115200,),
                "a DUT with the streaming-wakeword firmware (sww_ref_l4r5zi)"),
        Profile("ioman-arduino", "ioman_arduino.yaml", "ioman_arduino.md", (115200,),
                "the EEMBC IO manager (Arduino UNO, io-manager 1.0.3)"),
        Profile("ioman-h573", "ioman_h573.yaml", "ioman_h573.md", (115200,),
                "the MLCommons interface board (STM32H573I-DK)"),
        Profile("lpm01a", "lpm01a.yaml", "lpm01a.md", (3686400,),
                "the ST X-NUCLEO-LPM01A PowerShield energy monitor"),
    )
}


def profile_named(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise DeviceError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)}") from None


# --------------------------------------------------------------------------------
# drivers


class Driver:
    """What the tester must know of one protocol (see the module docstring)."""

    terminator = b"%"
    #: what asks whether the board still answers (after a case that may hang it);
    #: None: the terminator alone
    alive_probe: bytes | None = None
    #: whether a runner reads a line (one of the protocol's own lines or errors): with it, a
    #: runner case whose answer differs only in what the runners skip (CR, NUL, empty lines,
    #: lines it does not read) is not counted as breaking a runner; None: the exact answer is needed
    known_line: "Callable[[str], bool] | None" = None

    def __init__(self, profile: Profile, opts: "ConformOptions"):
        self.profile = profile
        self.opts = opts
        self.spec: Spec = load_spec(spec_path(profile.spec_file))
        self.model: str | None = None
        self.identity: dict[str, str] = {}
        #: what the report should say about how the board was identified
        self.notes: list[str] = []
        self.ready_lines = frozenset(x.encode("latin-1") for x in self.spec.ready_lines())
        #: bytes after the last terminator the board holds (a partial command)
        self.partial = False

    # -- answers ------------------------------------------------------------------
    def shape(self, lines: list, *, ready: int | None = None) -> AnswerShape:
        """How to read an answer expected to be ``lines`` (spec entries)."""
        expanded = self.spec.expand(lines, self.model)
        n = sum(int(x.get("min", 0)) if isinstance(x, dict) else 1 for x in expanded)
        if any(isinstance(x, dict) or "{text}" in x for x in expanded):
            count: int | None = None  # a variable number of lines
        else:
            count = n
        ends = {x.decode("latin-1") for x in self.ready_lines}
        r = sum(1 for x in expanded if isinstance(x, str) and x in ends) if ready is None else ready
        return AnswerShape(
            ready=r,
            lines=count,
            quiet=self.opts.quiet,
            silence=self.opts.timeout,
            ready_lines=self.ready_lines,
            gap=self.gap,
            deadline=max(120.0, 10 * self.opts.timeout),
        )

    def prep_shape(self, ready: int = 1, silence: float | None = None) -> AnswerShape:
        """A preparation or setup command's answer: up to its ending line(s),
        waiting at most ``silence`` s (default ``--timeout``) between lines."""
        return AnswerShape(
            ready=ready, lines=None, quiet=0.0 if ready else self.opts.quiet,
            silence=self.opts.timeout if silence is None else silence,
            ready_lines=self.ready_lines, gap=self.gap, no_answer=0.05,
            deadline=max(120.0, 10 * self.opts.timeout),
        )

    def gap(self, line: bytes) -> float | None:
        return None

    def setup_ready(self, data: bytes) -> int:
        """How many answers a setup write gets (the count of complete commands)."""
        return 1 if self.terminator in data else 0

    def setup_shape(self, data: bytes, ready: int | None = None) -> AnswerShape:
        """How to read the answer to a setup or teardown write. A write without
        any terminator is part of a command: nothing is expected back, and
        anything that comes late is read with the next exchange's answer (where
        it shows as a deviation), so it is awaited only ``no_answer`` s, not a
        whole silence."""
        if ready is None:
            ready = self.setup_ready(data)
        shape = self.prep_shape(ready)
        if not ready and self.terminator not in data:
            shape = replace(shape, lines=0)
        return shape

    def wrote(self, data: bytes) -> None:
        if data:
            self.partial = bool(data.rsplit(self.terminator, 1)[-1]) if self.terminator in data else (self.partial or bool(data))

    # -- the board's state ----------------------------------------------------------
    def sync(self, wire: Wire, silence: float | None = None) -> Exchange | None:
        """End whatever partial command the board holds (its answer awaited
        ``silence`` s, default ``--timeout``)."""
        ex = wire.exchange("sync", self.terminator, self.prep_shape(silence=silence),
                           note="end any partial command the board holds")
        self.partial = False
        return ex

    def probe(self, wire: Wire, silence: float | None = None) -> bool:
        """Is a board speaking this protocol there (at this baud)? Its answer is
        awaited ``silence`` s (default ``--timeout``)."""
        ex = self.sync(wire, silence)
        # a complete line (an echo of the "%" or line noise is not an answer)
        return ex is not None and any(line.endswith(b"\n") and line.strip() for _, line in ex.lines())

    def identify(self, wire: Wire) -> None:
        """Find out what the board is (sets :attr:`model`, :attr:`identity`)."""

    def applicable(self, case: Case) -> str | None:
        """Why ``case`` does not apply to this board (None: it does)."""
        if case.model not in ("any", self.model or "any"):
            return f"the case is for {case.model}; the board runs {self.model}"
        if case.needs == "dut" and not self.opts.with_dut:
            return "needs a powered DUT with the reference firmware behind the board (--with-dut)"
        return None

    def prepare(self, wire: Wire, case: Case) -> None:
        """Bring the board to the state the case assumes (power-on state)."""
        if self.partial:
            self.sync(wire)


class DutDriver(Driver):
    """The MLPerf Tiny DUT firmware (reference protocol, dut_protocol.yaml)."""

    alive_probe = b"name%"  # not a bare %: an empty command is undefined behaviour here (section 5.10)

    @staticmethod
    def known_line(line: str) -> bool:
        """Both runners drop CR and NUL, skip empty lines and pick lines out by
        their m- prefix (mlcommons serial_device.py, script.py; ours
        runner.lines, runner.protocol); ours also stops at the firmware's
        error reports, the two un-prefixed ones included."""
        return line.startswith("m-") or bool(error_lines([line]))

    def __init__(self, profile: Profile, opts: "ConformOptions"):
        super().__init__(profile, opts)
        #: the db buffer may differ from power-on (something was written to it)
        self.db_dirty = True
        self.mode = profile.mode or "performance"

    def gap(self, line: bytes) -> float | None:
        """An inference run follows these lines: allow it its time."""
        per = self.opts.inference_timeout
        m = re.fullmatch(rb"m-warmup-start-(\d+)", line)
        if m:
            return self.opts.timeout + per * int(m.group(1))
        m = re.fullmatch(rb"m-infer-start-(\d+)", line)
        if m:
            self._infer_n = int(m.group(1))
            return self.opts.timeout + per * self._infer_n
        if line.startswith(b"m-lap-us-") and getattr(self, "_infer_n", 0):
            n, self._infer_n = self._infer_n, 0
            return self.opts.timeout + per * n
        return None

    def wrote(self, data: bytes) -> None:
        super().wrote(data)
        if b"db" in data:
            self.db_dirty = True

    def probe(self, wire: Wire, silence: float | None = None) -> bool:
        # name%, not a bare %: an empty command is undefined behaviour in the
        # reference parser (a null pointer read; dut_protocol.md section 5.10);
        # name% ends a partial command just as well
        ex = wire.exchange("sync", b"name%", self.prep_shape(silence=silence),
                           note="is a DUT there (and end any partial command it holds)")
        self.partial = False
        return ex is not None and any(line.endswith(b"\n") and line.strip() for _, line in ex.lines())

    def identify(self, wire: Wire) -> None:
        ex = wire.exchange("identify", b"name%", self.prep_shape(), note="who is there")
        for line in ex.text_lines():
            if line.startswith("m-name-"):
                self.identity["name"] = line
        ex = wire.exchange("identify", b"profile%", self.prep_shape(), note="which firmware and model")
        model = None
        for line in ex.text_lines():
            m = re.fullmatch(r"m-model-\[(.*)\]", line)
            if m:
                model = m.group(1)
            m = re.fullmatch(r"m-profile-\[(.*)\]", line)
            if m:
                self.identity["profile"] = m.group(1)
        self.identity["model_string"] = model or ""
        if self.opts.model:
            self.model = self.opts.model
            if model is not None and model != self.model:
                self.notes.append(f"the board names its model {model!r} (profile%); --model {self.model} runs "
                                  f"{self.model}'s cases against it")
        elif model in self.spec.models:
            self.model = model
        else:
            got = f"m-model-[{model}]" if model is not None else "no m-model-[...] line"
            raise DeviceError(
                f"the board on {self.opts.port} answered profile% with {got}, not one of the spec's models "
                f"({', '.join(self.spec.models)}): pass --model to choose the cases to run "
                "(note: the mlcommons runner picks its test script by this string)"
            )
        if self.model not in self.spec.models:
            raise DeviceError(f"--model {self.model}: the spec knows {', '.join(self.spec.models)}")
        self.identity["model"] = self.model
        ex = wire.exchange("identify", b"timestamp%", self.prep_shape(), note="which firmware build")
        laps = [x for x in ex.text_lines() if x.startswith("m-lap-us-")]
        build = "performance" if laps else "energy"
        self.identity["build"] = build
        if build != self.mode and any(x == "m-ready" for x in ex.text_lines()):
            other = "dut" if build == "performance" else "dut-energy"
            raise DeviceError(
                f"the board on {self.opts.port} runs the {build}-mode firmware (timestamp% "
                f"{'printed an m-lap-us- line' if laps else 'printed no m-lap-us- line'}): use --profile {other}"
            )

    def applicable(self, case: Case) -> str | None:
        why = super().applicable(case)
        if why:
            return why
        if case.mode not in ("any", self.mode):
            return f"the {case.mode}-mode firmware only"
        return None

    def prepare(self, wire: Wire, case: Case) -> None:
        super().prepare(wire, case)
        touches = any(
            isinstance(item, str) and (b"db" in item.encode("latin-1") or b"infer" in item.encode("latin-1"))
            for item in case.setup
        ) or any(isinstance(item, dict) for item in case.setup) or b"db" in case.send or b"infer" in case.send
        if touches and self.db_dirty:
            # power-on db state: count 0, write position 0, the first bytes 0
            steps = [b"db load %d%%" % DB_CLEAR_BYTES]
            steps += [b"db " + b"00" * DB_CLEAR_CHUNK + b"%"] * (DB_CLEAR_BYTES // DB_CLEAR_CHUNK)
            steps += [b"db load 1%", b"db load 0%"]
            for data in steps:
                wire.exchange("prepare", data, self.prep_shape(), note="recreate the power-on db buffer")
            self.db_dirty = False


class Sww01Driver(DutDriver):
    """The streaming-wakeword firmware (sww01_protocol.yaml): every command is
    echoed; ``stop%`` ends a stream or a capture."""

    known_line = None  # its answers are judged exactly

    def identify(self, wire: Wire) -> None:
        ex = wire.exchange("identify", b"profile%", self.prep_shape(), note="which firmware and model")
        for line in ex.text_lines():
            m = re.fullmatch(r"m-model-\[(.*)\]", line)
            if m:
                self.identity["model_string"] = m.group(1)
        self.model = "sww01"
        self.identity["model"] = self.model

    def applicable(self, case: Case) -> str | None:
        if any(isinstance(i, dict) and "i2s_frames" in i for i in case.setup):
            return "delivers I2S audio frames, which only the interface board can play (not a serial port)"
        return Driver.applicable(self, case)

    def prepare(self, wire: Wire, case: Case) -> None:
        Driver.prepare(self, wire, case)
        # idle state: no stream, no capture (the answer may be an error: already idle)
        wire.exchange("prepare", b"stop%", self.prep_shape(), note="stop any stream or capture")
        touches = any("db" in str(item) for item in case.setup) or b"db" in case.send
        if touches and self.db_dirty:
            # power-on db state: no transfer announced (the bytes themselves are not
            # cleared: every db case writes the bytes it reads back)
            wire.exchange("prepare", b"db load 0%", self.prep_shape(), note="end any db transfer (power-on state)")
            self.db_dirty = False


class ArduinoDriver(Driver):
    """The EEMBC IO manager (io-manager 1.0.3)."""

    def setup_ready(self, data: bytes) -> int:
        n = data.count(self.terminator)
        relayed = sum(1 for cmd in data.split(self.terminator)[:n] if cmd.strip().startswith(b"dut "))
        return n + (relayed if self.opts.with_dut else 0)

    def identify(self, wire: Wire) -> None:
        ex = wire.exchange("identify", b"version%", self.prep_shape(), note="which firmware")
        for line in ex.text_lines():
            if line.startswith("m-version-"):
                self.identity["version"] = line[len("m-version-"):]
        if "version" not in self.identity:
            raise DeviceError(
                f"the board on {self.opts.port} does not answer version% with m-version-...: "
                "is it the EEMBC IO manager (115200 baud)?"
            )

    def prepare(self, wire: Wire, case: Case) -> None:
        super().prepare(wire, case)
        # the timer mode and capture are state; the cases that need them set them
        wire.exchange("prepare", b"disable-timer%", self.prep_shape(), note="no timestamp capture")


class H573Driver(Driver):
    """The MLCommons interface board (STM32H573I-DK)."""

    def sync(self, wire: Wire, silence: float | None = None) -> Exchange | None:
        # an empty line matches no command: the board answers m-ready
        ex = wire.exchange("sync", b"%", self.prep_shape(silence=silence), note="end any partial command the board holds")
        self.partial = False
        return ex

    def identify(self, wire: Wire) -> None:
        ex = wire.exchange("identify", b"name%", self.prep_shape(), note="who is there")
        lines = ex.text_lines()
        self.identity["name"] = lines[0] if lines else ""
        if self.opts.with_dut:
            # the runner's first step (sync_baud): the board restarts and forgets
            # whatever the DUT printed before (its boot banner)
            baud = self.opts.dut_baud
            wire.exchange("identify", b"setbaud %d%%" % baud, self.prep_shape(),
                          note="talk to the DUT at its baud; the restart drops stale DUT lines")
            wire.listen("identify", self.prep_shape(0), first_byte_wait=0.5, note="the board restarts")


class Lpm01aDriver(Driver):
    """The LPM01A PowerShield: line commands, ``PowerShield > ack|error`` answers."""

    terminator = b"\n"

    def shape(self, lines: list, *, ready: int | None = None) -> AnswerShape:
        sh = super().shape(lines, ready=0)
        sh.ready = 0
        return sh

    def prep_shape(self, ready: int = 1, silence: float | None = None) -> AnswerShape:
        return AnswerShape(ready=0, lines=ready, quiet=0.05, silence=self.opts.timeout if silence is None else silence,
                           no_answer=0.3,
                           ready_lines=frozenset(), deadline=max(30.0, 3 * self.opts.timeout))

    def setup_ready(self, data: bytes) -> int:
        return data.count(b"\n")

    def sync(self, wire: Wire, silence: float | None = None) -> Exchange | None:
        # a line end on its own is an empty line: ignored
        ex = wire.exchange("sync", b"\r\n", self.prep_shape(0, silence), note="end any partial command line")
        self.partial = False
        return ex

    def probe(self, wire: Wire, silence: float | None = None) -> bool:
        self.sync(wire, silence)
        ex = wire.exchange("identify", b"powershield\r\n", self.prep_shape(silence=silence),
                           note="is a PowerShield there")
        lines = ex.text_lines()
        if any(x.startswith("PowerShield > ") for x in lines):
            self.identity["powershield"] = lines[0]
            return True
        return False

    def identify(self, wire: Wire) -> None:
        ex = wire.exchange("identify", b"version\r\n", self.prep_shape(), note="which firmware")
        lines = ex.text_lines()
        self.identity["version"] = lines[0].replace("PowerShield > ", "") if lines else ""

    def prepare(self, wire: Wire, case: Case) -> None:
        super().prepare(wire, case)
        # no acquisition running, host control released: the power-on state
        wire.exchange("prepare", b"stop\r\n", self.prep_shape(), note="end any acquisition")
        wire.listen("prepare", AnswerShape(ready=0, lines=None, quiet=0.1, silence=0.3, no_answer=0.05,
                                           ready_lines=frozenset()), first_byte_wait=0.05,
                    note="the rest of a stopped acquisition")
        wire.exchange("prepare", b"hrc\r\n", self.prep_shape(), note="release host control")


DRIVERS = {
    "dut": DutDriver,
    "dut-energy": DutDriver,
    "sww01": Sww01Driver,
    "ioman-arduino": ArduinoDriver,
    "ioman-h573": H573Driver,
    "lpm01a": Lpm01aDriver,
}


def make_driver(profile: Profile, opts: "ConformOptions") -> Driver:
    return DRIVERS[profile.name](profile, opts)
