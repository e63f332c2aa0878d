"""The firmware protocols as data: prose pages (``*.md``), machine-readable
cases (``*.yaml``) and their one reader (:mod:`firmware_api_spec.dut_spec`).

Installed with tinytwin as a package so that any host tool (the conformance
tester ``tinytwin conform``, a runner, a firmware port's own checks) finds the
same files::

    from firmware_api_spec import load_spec, SPEC_PATH
    spec = load_spec()              # dut_protocol.yaml
    spec = load_spec(spec_path("lpm01a.yaml"))

``dut_spec.py`` itself has no package-relative imports, so a port can still
copy it next to a YAML and ``import dut_spec``.
"""
from __future__ import annotations

from pathlib import Path

from .dut_spec import (
    SPEC_DIR,
    SPEC_PATH,
    SWW01_SPEC_PATH,
    Case,
    MissingData,
    Spec,
    SpecMismatch,
    b,
    db_commands,
    fixed_parts,
    load_spec,
)


def spec_path(name: str) -> Path:
    """The installed file ``name`` of this folder (a YAML or a prose page)."""
    return SPEC_DIR / name


__all__ = [
    "SPEC_DIR",
    "SPEC_PATH",
    "SWW01_SPEC_PATH",
    "Case",
    "MissingData",
    "Spec",
    "SpecMismatch",
    "b",
    "db_commands",
    "fixed_parts",
    "load_spec",
    "spec_path",
]
