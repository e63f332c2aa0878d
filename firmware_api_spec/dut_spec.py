"""Reader for the protocol YAMLs of this folder: cases, expansion of setup items, matching.

Small and dependency-light (PyYAML only) so that a runner or a firmware port
can check itself against the same cases the emulator is tested with::

    from dut_spec import load_spec
    spec = load_spec()
    for case in spec.cases_for("kws01"):
        ...  # send case.setup_bytes(shared), then case.send; compare with case.check(output)

Strings in the YAML are Latin-1: one character is one byte.

The same reader serves ``sww01_protocol.yaml`` (``load_spec(SWW01_SPEC_PATH)``), whose
cases may also deliver I2S audio frames during their setup (:meth:`Case.setup_steps`),
and the IO managers' and the LPM01A's YAMLs (``ioman_arduino.yaml``, ``ioman_h573.yaml``,
``lpm01a.yaml``), which have no models. ``tinytwin conform`` runs all of them against a
serial port; see README.md, "How to read the YAML", for every field.
"""
from __future__ import annotations

import itertools
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

SPEC_DIR = Path(__file__).resolve().parent
SPEC_PATH = SPEC_DIR / "dut_protocol.yaml"
SWW01_SPEC_PATH = SPEC_DIR / "sww01_protocol.yaml"

VARIABLES = ("{model}", "{input_count}", "{max_db}", "{input_bytes}", "{timing_n}")
PATTERNS = ("{int}", "{uint32}", "{results}", "{text}", "{hexbytes}", "{numbers}", "{field}", "{floats}", "{value}")
UINT32_MAX = 2**32 - 1
#: bytes per generated "db <hex>%" command in a setup: the runners' chunk (3 + 62 = 65
#: characters), so that a port whose command buffer holds what the runners send can run the cases
DB_CHUNK = 31
I2S_PAIRS = 512  # stereo int16 pairs in one I2S DMA transfer of the sww01 firmware (2048 bytes)
#: what a case's ``requirement`` may be
REQUIREMENTS = ("runner", "reference")
#: what a case's ``mode`` may be (``any``: the case holds for both firmware builds)
MODES = ("any", "performance", "energy")

_PATTERN_RE = {
    "{int}": r"-?[0-9]+",
    "{text}": r"(?:.*?)",
    "{hexbytes}": r"[0-9a-f]{1,2}(?:-[0-9a-f]{1,2}){0,7}",
    "{numbers}": r"[-+0-9., e\]]*",
    # a non-empty text without ']' or a line end: a vendor name, a version string
    "{field}": r"[^\]\r\n]+",
    # what the runners' result parsers read: comma-separated numbers, an optional trailing comma
    "{floats}": r" *[-+]?[0-9][-+0-9.eE]*(?: *, *[-+]?[0-9][-+0-9.eE]*)* *,?",
    # one LPM01A ascii_dec value: 4 digits, a sign, a 2-digit power of ten
    "{value}": r"[0-9]{4}[-+][0-9]{2}",
}
_SPLIT = re.compile("(" + "|".join(re.escape(p) for p in PATTERNS) + ")")
#: an empty line (at the start, or after a line end)
_BLANK_LINE = re.compile(rb"(?:^|(?<=\n))\r?\n")


def b(text: str) -> bytes:
    """A YAML string as the bytes it stands for."""
    return text.encode("latin-1")


class SpecMismatch(AssertionError):
    """The output does not match a case's expectation."""


class MissingData(Exception):
    """A setup item names a data file that is not available."""


def fixed_parts(template: str) -> list[str]:
    """The literal pieces of a message template (between placeholders and variables)."""
    parts = re.split("|".join(re.escape(p) for p in PATTERNS + VARIABLES), template)
    return [p for p in parts if p.strip()]


def db_commands(data: bytes, chunk: int = DB_CHUNK, declare: int | None = None) -> list[bytes]:
    """The commands that load ``data`` into the db buffer (``db load`` of
    ``declare`` bytes, by default ``len(data)``, then the data)."""
    cmds = [b"db load %d%%" % (len(data) if declare is None else declare)]
    for i in range(0, len(data), chunk):
        cmds.append(b"db " + data[i : i + chunk].hex().encode() + b"%")
    return cmds


@dataclass
class Case:
    id: str
    send: bytes
    expect: list[Any]
    model: str = "any"
    setup: list[Any] = field(default_factory=list)
    mode: str = "any"
    scope: str = "both"
    needs_model: bool = False
    why: str = ""
    #: runner: the runners depend on it (a deviation breaks them); reference: the
    #: reference firmware's behaviour, which a port need not copy
    requirement: str = ""
    #: for a runner case: what a runner does when a board deviates here (with sources)
    breaks: str = ""
    #: the prose section the case checks ("5.8")
    section: str = ""
    #: answers a port may give instead (a list of answers, each a list of lines):
    #: the spec allows them (its own vendor name, version string, numerics), so a
    #: board giving one is "not applicable" rather than deviating
    allow: list[list[Any]] = field(default_factory=list)
    #: why the case is opt-in: it may hang the board or damage its state
    risky: str = ""
    #: the case leaves the board answering nothing until it is reset
    hangs: bool = False
    #: a timing measurement the tester makes on top of the answer (see README)
    timing: dict | None = None
    #: what is inferred rather than read from a source (the reason), for
    #: boards whose firmware source is not published
    inferred: str = ""
    #: what must be attached for the case to apply ("dut": a powered DUT with the
    #: reference firmware behind an IO manager)
    needs: str = ""
    #: the answer is what the board prints after a reset (nothing is sent)
    boot: bool = False
    #: setup items run after the case to restore the board (output ignored)
    teardown: list[Any] = field(default_factory=list)
    #: for a case with an expected m-results-[...] whose numbers a port may print
    #: differently (``allow``): why another top class than the reference board's is
    #: a deviation all the same (said with it)
    top_class: str = ""
    spec: "Spec | None" = field(default=None, repr=False)

    # -- what to send ------------------------------------------------------------------
    def send_for(self, model: str | None = None) -> bytes:
        """``send`` with the model's variables filled in."""
        if self.spec is None or "{" not in self.send.decode("latin-1"):
            return self.send
        return b(self.spec.substitute(self.send.decode("latin-1"), model or self.model))

    def _plan(self, items: list[Any], shared: Path | None, model: str | None) -> list[tuple[str, Any, int | None]]:
        out: list[tuple[str, Any, int | None]] = []
        sub = (lambda t: self.spec.substitute(t, model or self.model)) if self.spec is not None else (lambda t: t)
        for item in items:
            if isinstance(item, str):
                out.append(("uart", b(sub(item)), None))
            elif "send" in item:
                out.append(("uart", b(sub(item["send"])), int(item["ready"]) if "ready" in item else None))
            elif "db_fill" in item:
                fill = item["db_fill"]
                size = int(sub(str(fill["size"])))
                declare = fill.get("declare")
                declare = None if declare is None else int(sub(str(declare)))
                out += [("uart", c, None) for c in db_commands(bytes([int(fill["byte"])]) * size, declare=declare)]
            elif "db_file" in item:
                if shared is None or not (shared / item["db_file"]).is_file():
                    raise MissingData(f"{item['db_file']} (shared data folder) is not available")
                out += [("uart", c, None) for c in db_commands((shared / item["db_file"]).read_bytes())]
            elif "i2s_frames" in item:
                fr = item["i2s_frames"]
                left = int(fr["left"])
                pair = struct.pack("<hh", left, int(fr.get("right", left)))
                out += [("i2s", pair * I2S_PAIRS, None)] * int(fr["count"])
            elif "wait_s" in item:
                out.append(("wait", float(item["wait_s"]), None))
            else:
                raise ValueError(f"case {self.id}: unknown setup item {item!r}")
        return out

    def setup_plan(self, shared: Path | None, model: str | None = None) -> list[tuple[str, Any, int | None]]:
        """:meth:`setup_steps` with, for each write, how many answer-ending
        lines it gets when the case says so (``{send: ..., ready: N}``; None:
        one per terminator)."""
        return self._plan(self.setup, shared, model)

    def setup_steps(self, shared: Path | None, model: str | None = None) -> list[tuple[str, Any]]:
        """Every setup step, in order: ``("uart", bytes to write)``, ``("i2s", one
        2048-byte I2S DMA transfer for the DUT's audio input)`` or ``("wait",
        seconds)`` (the board restarts meanwhile); raises MissingData for an
        absent file."""
        return [(k, d) for k, d, _ in self._plan(self.setup, shared, model)]

    def teardown_steps(self, model: str | None = None) -> list[tuple[str, Any]]:
        return [(k, d) for k, d, _ in self._plan(self.teardown, None, model)]

    def setup_bytes(self, shared: Path | None, model: str | None = None) -> list[bytes]:
        """Every setup write, in order (raises MissingData for an absent file);
        ValueError if the case needs an audio input (use :meth:`setup_steps`)."""
        steps = self.setup_steps(shared, model)
        if any(kind != "uart" for kind, _ in steps):
            raise ValueError(f"case {self.id}: its setup delivers I2S frames or waits; run it with setup_steps()")
        return [data for _, data in steps]

    def uses_files(self) -> bool:
        return any(isinstance(i, dict) and "db_file" in i for i in self.setup)

    def ready_count(self) -> int:
        """How many lines of the answer end it (``m-ready``, or a relayed ``[dut]: m-ready``)."""
        ends = self.spec.ready_lines() if self.spec is not None else {"m-ready"}
        return sum(1 for line in self.expect if isinstance(line, str) and line in ends)

    def check(self, output: bytes, model: str | None = None) -> None:
        assert self.spec is not None
        self.spec.match(self.expect, output, model or self.model, what=f"case {self.id}")

    def allowed(self, output: bytes, model: str | None = None) -> int | None:
        """The index of the ``allow`` answer ``output`` matches, or None."""
        assert self.spec is not None
        for i, lines in enumerate(self.allow):
            if self.spec.matches(lines, output, model or self.model):
                return i
        return None


class Spec:
    def __init__(self, data: dict, path: Path = SPEC_PATH):
        self.data = data
        self.path = path
        self.framing: dict = data["framing"]
        self.firmware: dict = data.get("firmware", {})
        self.models: dict[str, dict] = data.get("models") or {}
        self.help: list[str] = data.get("help") or []
        self.messages: list[dict] = data.get("messages") or []
        self.commands: list[dict] = data.get("commands") or []
        self.cases: list[Case] = []
        for raw in data["cases"]:
            raw = dict(raw)
            raw["send"] = b(raw.get("send", ""))
            raw.setdefault("setup", [])
            self.cases.append(Case(spec=self, **raw))

    # -- selection -----------------------------------------------------------------
    def cases_for(self, model: str, *, scope: str | None = None) -> list[Case]:
        """The cases that apply to ``model`` ("any" cases included)."""
        return [
            c
            for c in self.cases
            if c.model in ("any", model) and (scope is None or c.scope in ("both", scope))
        ]

    def case(self, case_id: str) -> Case:
        for c in self.cases:
            if c.id == case_id:
                return c
        raise KeyError(f"{self.path.name} has no case {case_id!r}")

    def banner(self, model: str, mode: str) -> list[str]:
        return self.expand(self.data["banner"][mode], model)

    def ready_lines(self) -> set[str]:
        """The lines that end an answer: ``m-ready``, and its relayed form."""
        ready = self.framing.get("ready_line", "m-ready")
        out = {ready}
        relay = self.framing.get("relay_prefix")
        if relay:
            out.add(relay + ready)
        return out

    def expand(self, lines: list[Any], model: str | None) -> list[Any]:
        """``lines`` with ``{init_lines}`` replaced by the model's init lines."""
        out: list[Any] = []
        for line in lines:
            if line == "{init_lines}":
                out += self.models[model]["init_lines"] if model in self.models else []
            else:
                out.append(line)
        return out

    # -- matching ------------------------------------------------------------------
    def substitute(self, line: str, model: str | None) -> str:
        m = self.models.get(model or "")
        if not m:
            return line
        return (
            line.replace("{model}", str(m["model_version"]))
            .replace("{input_count}", str(m["input_count"]))
            .replace("{max_db}", str(m["max_db_input_size"]))
            .replace("{input_bytes}", str(m["input_count"] * m.get("input_elem_bytes", 1)))
            .replace("{timing_n}", str(m.get("timing_iterations", 2)))
        )

    def line_regex(self, line: str, model: str | None) -> str:
        """The regular expression (text) of one expected line, without its line end."""
        return self._line_regex(line, model)

    def _line_regex(self, line: str, model: str | None, counter: "Iterator[int] | None" = None) -> str:
        counter = counter if counter is not None else itertools.count()
        line = self.substitute(line, model)
        out = []
        for part in _SPLIT.split(line):
            if part == "{uint32}":
                out.append(r"(?P<u%d>[0-9]{1,10})" % next(counter))
            elif part == "{results}":
                out.append("(?:" + self.models[model]["results_pattern"] + ")")
            elif part in _PATTERN_RE:
                out.append(_PATTERN_RE[part])
            else:
                out.append(re.escape(part))
        return "".join(out)

    def _entry_regex(self, line: Any, model: str | None, counter: Iterator[int]) -> str:
        """One expected line: a string (a line ending in CR LF; one that ends in
        LF itself is terminated by that LF alone), or ``{line: ..., min: M,
        max: N}`` (M to N such lines)."""
        if isinstance(line, dict):
            body = self._line_regex(line["line"], model, counter) + r"\r\n"
            return f"(?:{body}){{{int(line.get('min', 0))},{int(line['max'])}}}"
        if line.endswith("\n"):
            return self._line_regex(line[:-1], model, counter) + r"\n"
        return self._line_regex(line, model, counter) + r"\r\n"

    def regex(self, lines: list[Any], model: str | None) -> re.Pattern:
        counter = itertools.count()
        body = "".join(self._entry_regex(line, model, counter) for line in self.expand(lines, model))
        return re.compile(body.encode("latin-1"), re.DOTALL)

    def matches(self, lines: list[Any], output: bytes, model: str | None) -> bool:
        m = self.regex(lines, model).fullmatch(output)
        if m is None:
            return False
        return all(not name.startswith("u") or int(v) <= UINT32_MAX for name, v in m.groupdict().items())

    def matches_but_for_blank_lines(self, lines: list[Any], output: bytes, model: str | None) -> bool:
        """Whether ``output`` is ``lines`` but for empty lines, where the spec
        leaves blank lines around answers open (``framing.blank_lines:
        inferred``: a board may frame its answers with them, and runners skip
        them)."""
        if self.framing.get("blank_lines") != "inferred":
            return False
        want = [line for line in self.expand(lines, model) if line != ""]
        return self.matches(want, _BLANK_LINE.sub(b"", output), model)

    def matches_as_runners_read(self, lines: list[Any], output: bytes, model: str | None,
                                known: "Callable[[str], bool]") -> bool:
        """Whether ``output`` reads as ``lines`` to the runners, which drop CR
        and NUL, skip empty lines and pick out the lines they know: the
        expected lines in order once the lines that no expected line matches
        and that the runners do not read (``known(line)`` false: not one of
        the protocol's own lines or errors) are left out. Only plain expected
        lines (a ``{line:, min:, max:}`` entry keeps the exact match)."""
        want = [line for line in self.expand(lines, model) if line != ""]
        if any(not isinstance(line, str) for line in want):
            return False
        pats = [re.compile(self.line_regex(line.rstrip("\n"), model).encode("latin-1"), re.S) for line in want]
        got = [ln for ln in output.translate(None, b"\r\0").split(b"\n") if ln.strip()]
        kept = [ln for ln in got if known(ln.decode("latin-1")) or any(p.fullmatch(ln) for p in pats)]
        return len(kept) == len(pats) and all(p.fullmatch(ln) for p, ln in zip(pats, kept))

    def describe(self, lines: list[Any], model: str | None) -> list[str]:
        """The expected lines as a reader sees them (variables filled in)."""
        out = []
        for line in self.expand(lines, model):
            if isinstance(line, dict):
                out.append(f"{self.substitute(line['line'], model)}  (x{line.get('min', 0)}..{line['max']})")
            else:
                out.append(self.substitute(line, model))
        return out

    def match(self, lines: list[Any], output: bytes, model: str | None, what: str = "output") -> None:
        """Raise :class:`SpecMismatch` unless ``output`` is exactly ``lines``."""
        if not self.matches(lines, output, model):
            got = output.decode("latin-1").split("\r\n")
            want = self.describe(lines, model)
            raw = repr(output) if len(output) <= 2000 else f"{output[:1000]!r} ... {output[-1000:]!r} ({len(output)} bytes)"
            shown = got if len(got) <= 40 else got[:20] + [f"... {len(got) - 40} more lines ..."] + got[-20:]
            raise SpecMismatch(
                f"{what} ({model}): the firmware's answer does not match the spec\n"
                f"  expected lines: {want!r}\n"
                f"  got lines:      {shown!r}\n"
                f"  raw output:     {raw}"
            )

    def message_regex(self, model: str | None) -> re.Pattern:
        """Any sequence of catalogued lines (messages and help text)."""
        counter = itertools.count()
        alts = [self._line_regex(msg["text"], model, counter) for msg in self.messages]
        alts += [re.escape(line) for line in self.help if line]
        alt = "|".join(f"(?:{a})" for a in alts)
        end = r"\r?\n" if self.framing.get("lf_line_ends") else r"\r\n"
        return re.compile(f"(?:(?:{alt}){end})*".encode("latin-1"), re.DOTALL)


def load_spec(path: Path | str | None = None) -> Spec:
    p = Path(path) if path is not None else SPEC_PATH
    if not p.is_absolute() and not p.exists():
        p = SPEC_DIR / p
    with open(p, encoding="utf-8") as fh:
        return Spec(yaml.safe_load(fh), p)
