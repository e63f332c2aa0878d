"""Reader for ``dut_protocol.yaml``: cases, expansion of setup items, matching.

Small and dependency-light (PyYAML only) so that a runner or a firmware port
can check itself against the same cases the emulator is tested with::

    from dut_spec import load_spec
    spec = load_spec()
    for case in spec.cases_for("kws01"):
        ...  # send case.setup_bytes(shared), then case.send; compare with case.check(output)

Strings in the YAML are Latin-1: one character is one byte.

The same reader serves ``sww01_protocol.yaml`` (``load_spec(SWW01_SPEC_PATH)``), whose
cases may also deliver I2S audio frames during their setup (:meth:`Case.setup_steps`).
"""
from __future__ import annotations

import itertools
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

SPEC_DIR = Path(__file__).resolve().parent
SPEC_PATH = SPEC_DIR / "dut_protocol.yaml"
SWW01_SPEC_PATH = SPEC_DIR / "sww01_protocol.yaml"

VARIABLES = ("{model}", "{input_count}", "{max_db}")
PATTERNS = ("{int}", "{uint32}", "{results}", "{text}", "{hexbytes}", "{numbers}")
UINT32_MAX = 2**32 - 1
DB_CHUNK = 38  # bytes per generated "db <hex>%" command: 3 + 76 = 79 characters
I2S_PAIRS = 512  # stereo int16 pairs in one I2S DMA transfer of the sww01 firmware (2048 bytes)


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


def db_commands(data: bytes, chunk: int = DB_CHUNK) -> list[bytes]:
    """The commands that load ``data`` into the db buffer."""
    cmds = [b"db load %d%%" % len(data)]
    for i in range(0, len(data), chunk):
        cmds.append(b"db " + data[i : i + chunk].hex().encode() + b"%")
    return cmds


@dataclass
class Case:
    id: str
    model: str
    send: bytes
    expect: list[str]
    setup: list[Any] = field(default_factory=list)
    mode: str = "performance"
    scope: str = "both"
    needs_model: bool = False
    why: str = ""
    spec: "Spec | None" = field(default=None, repr=False)

    def setup_steps(self, shared: Path | None) -> list[tuple[str, bytes]]:
        """Every setup step, in order: ``("uart", bytes to write)`` or ``("i2s", one
        2048-byte I2S DMA transfer for the DUT's audio input)``; raises MissingData
        for an absent file."""
        out: list[tuple[str, bytes]] = []
        for item in self.setup:
            if isinstance(item, str):
                out.append(("uart", b(item)))
            elif "db_fill" in item:
                fill = item["db_fill"]
                out += [("uart", c) for c in db_commands(bytes([int(fill["byte"])]) * int(fill["size"]))]
            elif "db_file" in item:
                if shared is None or not (shared / item["db_file"]).is_file():
                    raise MissingData(f"{item['db_file']} (shared data folder) is not available")
                out += [("uart", c) for c in db_commands((shared / item["db_file"]).read_bytes())]
            elif "i2s_frames" in item:
                fr = item["i2s_frames"]
                left = int(fr["left"])
                pair = struct.pack("<hh", left, int(fr.get("right", left)))
                out += [("i2s", pair * I2S_PAIRS)] * int(fr["count"])
            else:
                raise ValueError(f"case {self.id}: unknown setup item {item!r}")
        return out

    def setup_bytes(self, shared: Path | None) -> list[bytes]:
        """Every setup write, in order (raises MissingData for an absent file);
        ValueError if the case needs an audio input (use :meth:`setup_steps`)."""
        steps = self.setup_steps(shared)
        if any(kind != "uart" for kind, _ in steps):
            raise ValueError(f"case {self.id}: its setup delivers I2S frames; run it with setup_steps()")
        return [data for _, data in steps]

    def uses_files(self) -> bool:
        return any(isinstance(i, dict) and "db_file" in i for i in self.setup)

    def ready_count(self) -> int:
        """How many m-ready lines the answer contains."""
        return sum(1 for line in self.expect if line == "m-ready")

    def check(self, output: bytes, model: str | None = None) -> None:
        assert self.spec is not None
        self.spec.match(self.expect, output, model or self.model, what=f"case {self.id}")


class Spec:
    def __init__(self, data: dict, path: Path = SPEC_PATH):
        self.data = data
        self.path = path
        self.framing: dict = data["framing"]
        self.firmware: dict = data["firmware"]
        self.models: dict[str, dict] = data["models"]
        self.help: list[str] = data["help"]
        self.messages: list[dict] = data["messages"]
        self.commands: list[dict] = data["commands"]
        self.cases: list[Case] = []
        for raw in data["cases"]:
            raw = dict(raw)
            raw["send"] = b(raw["send"])
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

    def banner(self, model: str, mode: str) -> list[str]:
        lines: list[str] = []
        for line in self.data["banner"][mode]:
            if line == "{init_lines}":
                lines += self.models[model]["init_lines"]
            else:
                lines.append(line)
        return lines

    # -- matching ------------------------------------------------------------------
    def substitute(self, line: str, model: str) -> str:
        m = self.models[model]
        return (
            line.replace("{model}", str(m["model_version"]))
            .replace("{input_count}", str(m["input_count"]))
            .replace("{max_db}", str(m["max_db_input_size"]))
        )

    def _line_regex(self, line: str, model: str, counter: "Iterator[int] | None" = None) -> str:
        counter = counter if counter is not None else itertools.count()
        line = self.substitute(line, model)
        parts = re.split(r"(\{int\}|\{uint32\}|\{results\}|\{text\}|\{hexbytes\}|\{numbers\})", line)
        out = []
        for part in parts:
            if part == "{int}":
                out.append(r"-?[0-9]+")
            elif part == "{uint32}":
                out.append(r"(?P<u%d>[0-9]{1,10})" % next(counter))
            elif part == "{results}":
                out.append("(?:" + self.models[model]["results_pattern"] + ")")
            elif part == "{text}":
                out.append(r"(?:.*?)")
            elif part == "{hexbytes}":
                out.append(r"[0-9a-f]{1,2}(?:-[0-9a-f]{1,2}){0,7}")
            elif part == "{numbers}":
                out.append(r"[-+0-9., e\]]*")
            else:
                out.append(re.escape(part))
        return "".join(out)

    def regex(self, lines: list[str], model: str) -> re.Pattern:
        counter = itertools.count()
        body = "".join(self._line_regex(line, model, counter) + r"\r\n" for line in lines)
        return re.compile(body.encode("latin-1"), re.DOTALL)

    def match(self, lines: list[str], output: bytes, model: str, what: str = "output") -> None:
        """Raise :class:`SpecMismatch` unless ``output`` is exactly ``lines``."""
        m = self.regex(lines, model).fullmatch(output)
        if m is not None:
            for name, value in m.groupdict().items():
                if name.startswith("u") and int(value) > UINT32_MAX:
                    m = None
                    break
        if m is None:
            got = output.decode("latin-1").split("\r\n")
            want = [self.substitute(x, model) for x in lines]
            raise SpecMismatch(
                f"{what} ({model}): the firmware's answer does not match the spec\n"
                f"  expected lines: {want!r}\n"
                f"  got lines:      {got!r}\n"
                f"  raw output:     {output!r}"
            )

    def message_regex(self, model: str) -> re.Pattern:
        """Any sequence of catalogued lines (messages and help text)."""
        counter = itertools.count()
        alts = [self._line_regex(msg["text"], model, counter) for msg in self.messages]
        alts += [re.escape(line) for line in self.help if line]
        alt = "|".join(f"(?:{a})" for a in alts)
        return re.compile(f"(?:(?:{alt})\\r\\n)*".encode("latin-1"), re.DOTALL)


def load_spec(path: Path | str | None = None) -> Spec:
    p = Path(path) if path is not None else SPEC_PATH
    with open(p, encoding="utf-8") as fh:
        return Spec(yaml.safe_load(fh), p)
