"""The import-direction rules of emulator/__init__.py, checked on the source."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

IO_MODULES = {"select", "socket", "termios", "tty", "pty", "threading", "serial", "simpy"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, path: Path) -> set[str]:
    """Every module ``path`` imports at run time (TYPE_CHECKING blocks do not
    count), as absolute names; ``from pkg import name`` counts as ``pkg.name``."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in child.names)
            visit(child)

    visit(tree)
    return found


def _hits(imported: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in imported if any(m == p or m.startswith(p + ".") for p in prefixes))


EMULATOR = _modules("emulator")
RUNNER = _modules("runner")

DEVICES = [
    m
    for m in EMULATOR
    if m.startswith("emulator.hw")
    or m.endswith(".device")
    or m in {"emulator.power.model", "emulator.dut.timing", "emulator.dut.express"}
    # what-if computations on the board models (the power model among them)
    or (m.startswith("emulator.whatif") and m != "emulator.whatif.cli")
    # packages whose __init__ re-exports their devices
    or m in {"emulator.ioman", "emulator.emon", "emulator.emon.lpm01a", "emulator.emon.js220"}
]
TRANSPORTS = [m for m in EMULATOR if m.startswith("emulator.transport")]
FRONT_ENDS = ("emulator.cli", "emulator.urlhandler", "emulator.models.cli", "emulator.cpu.cli", "emulator.control.cli",
              "emulator.whatif.cli")
IMPURE = ("emulator.sim", "emulator.benches", "emulator.config", "emulator.control", *FRONT_ENDS)
#: every other module is a pure part: a new module is held to rule 1 unless it
#: is placed in one of the layers above it
PURE = [
    m
    for m in EMULATOR
    if m not in DEVICES and m not in TRANSPORTS and m != "emulator" and not _hits({m}, IMPURE)
]


def test_the_rules_cover_the_cores():
    for core in ("emulator.dut.core", "emulator.ioman.arduino", "emulator.ioman.h573", "emulator.emon.lpm01a.core",
                 "emulator.emon.js220.core",
                 "emulator.dut.sww01.core", "emulator.dut.sww01.features", "emulator.cpu.cycles", "emulator.models.engine"):
        assert core in PURE
    assert "emulator.dut.device" in DEVICES and "emulator.transport.pty" in TRANSPORTS


@pytest.mark.parametrize("module", PURE)
def test_rule1_pure_parts_import_no_clock_no_io(module):
    bad = _hits(
        imports_of(module, EMULATOR[module]),
        ("emulator.sim", "emulator.hw", "emulator.transport", "emulator.benches", "emulator.urlhandler", "emulator.cli",
         *IO_MODULES),
    )
    bad += [m for m in imports_of(module, EMULATOR[module]) if m.endswith(".device")]
    assert not bad, f"{module} is a pure part (rule 1) but imports {bad}"


def test_rule2_the_clock_imports_no_emulator_module():
    bad = _hits(imports_of("emulator.sim", EMULATOR["emulator.sim"]), ("emulator",))
    assert not bad, f"emulator.sim imports {bad}"


@pytest.mark.parametrize("module", DEVICES)
def test_rule3_devices_import_no_transport_bench_or_front_end(module):
    bad = _hits(
        imports_of(module, EMULATOR[module]),
        ("emulator.transport.pty", "emulator.transport.tcp", "emulator.benches", *FRONT_ENDS, "runner"),
    )
    assert not bad, f"{module} is a device (rule 3) but imports {bad}"


@pytest.mark.parametrize("module", TRANSPORTS)
def test_rule4_transports_import_no_device_core_or_bench(module):
    imported = imports_of(module, EMULATOR[module])
    bad = _hits(imported, ("emulator.dut", "emulator.ioman", "emulator.emon", "emulator.benches", "emulator.models",
                           "emulator.cpu", "emulator.power", "emulator.hw", "emulator.core"))
    assert not bad, f"{module} is a transport (rule 4) but imports {bad}"


RUNNER_MAY_USE = ("emulator.errors", "emulator.power.trace", "emulator.figures", "emulator.pystack", "emulator.urlhandler",
                  "emulator.models")


@pytest.mark.parametrize("module", sorted(RUNNER))
def test_rule5_the_runner_uses_only_the_emulators_public_parts(module):
    imported = {m for m in imports_of(module, RUNNER[module]) if m == "emulator" or m.startswith("emulator.")}
    allowed = {m for m in imported if _hits({m}, RUNNER_MAY_USE) or m in {"emulator", "emulator.power"}}
    bad = sorted(imported - allowed)
    assert not bad, f"{module} imports emulator internals {bad} (rule 5: only {', '.join(RUNNER_MAY_USE)})"


@pytest.mark.parametrize("module", sorted(m for m in EMULATOR if m != "emulator.cli"))
def test_rule5_only_the_cli_imports_the_runner(module):
    bad = _hits(imports_of(module, EMULATOR[module]), ("runner",))
    assert not bad, f"{module} imports the runner ({bad}); only emulator.cli may"


def test_the_checker_sees_a_violation(tmp_path):
    """The checker itself: a core that imports simpy, and one that reaches the
    clock through a relative import, are both caught."""
    bad = tmp_path / "core.py"
    bad.write_text("import simpy\nfrom ..sim import Twin\nif TYPE_CHECKING:\n    import socket\n")
    imported = imports_of("emulator.dut.core", bad)
    assert "simpy" in imported and "emulator.sim" in imported and "socket" not in imported
