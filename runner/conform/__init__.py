"""``tinytwin conform``: the spec's cases run against any serial port.

The machine-readable cases of ``firmware_api_spec/`` (the ones the twin is
tested with) become a protocol conformance tester for real boards and
firmware ports: :func:`run_conformance` runs a profile's cases against a port
(a board, a twin's pty, a pyserial URL) and classifies each as pass,
deviation (and whether it breaks a runner), not applicable or skipped;
:mod:`.report` writes ``report.json``, an annotated ``transcript.md`` and a
terminal summary; :mod:`.explain` walks a learner through a live session.

Host side only: it talks to the board through pyserial and imports nothing of
the emulator (``tinytwin://`` URLs open through ``runner.link.open_serial``).
"""
from .session import CaseResult, ConformOptions, ConformReport, run_conformance

__all__ = ["CaseResult", "ConformOptions", "ConformReport", "run_conformance"]
