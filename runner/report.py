"""``results.txt``: the summary lines the MLPerf Tiny submission checker reads.

Followed: mlcommons/tiny ``tools/submission/submission_checker.py`` at commit
1afd2c9 (May 2026), ``--version v1.4`` (its default). What it requires of a
result folder ``<system>/<model>/{performance,accuracy}/``:

* files: ``log.txt``, ``results.txt``, ``results.json`` (the mlcommons-runner
  layout; the EEMBC layout would need ``script.async`` and an
  ``EEMBC_RUNNER`` marker instead); any other file is a "file list mismatch";
* performance: a line matching ``.* Median throughput is\\s+([\\d\\.]+) inf\\./sec\\..*``;
* accuracy: ``.* Top[- ]1%?\\s?[:=] ([\\d\\.]+).*`` (kws, ic, vww; targets 90, 85,
  80) or ``.* AUC\\s?[:=] ([\\d\\.]+).*`` (ad; target 0.85), last match wins.

Lines are ``SSSSS.mmm ulp-mlperf: ...`` as the EEMBC runner wrote them (seconds
since the start of the run, the same clock as ``log.txt``). The runner's own
notes use the prefix ``runner:`` and are worded so that no checker pattern
matches them. An invalid or stopped run gets no ``Median throughput is``
line, so the checker cannot take it for a result.
"""
from __future__ import annotations

from pathlib import Path

RUNNER_VERSION = "0.1.0"
CHECKER = "mlcommons/tiny tools/submission/submission_checker.py v1.4 (commit 1afd2c9)"
SEP = "---------------------------------------------------------"


class ResultsText:
    """``results.txt`` as it is written: each line stamped with the run's
    clock, in the wording the submission checker parses (see the module)."""

    def __init__(self, path: Path, clock):
        self.path = Path(path)
        self.clock = clock  # has .stamp()
        self.path.write_text("", encoding="utf-8")

    def _add(self, who: str, text: str) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(f"{self.clock.stamp()} {who}: {text}\n")

    def add(self, who: str, text: str) -> None:
        """One line: ``who`` is ``ulp-mlperf`` for lines the checker reads, ``runner`` for notes."""
        self._add(who, text)

    def header(self, mode: str, port: str, dut: dict) -> None:
        self._add("runner", f"tinytwin runner {RUNNER_VERSION}, {mode} mode; results format: {CHECKER}")
        self._add(
            "runner",
            f"DUT on {port}: model {dut.get('model')}, profile {dut.get('profile')}, name {dut.get('name')}",
        )

    def window(self, w: int, iterations: int, elapsed_us: int, thr: float, problems: list[str]) -> None:
        self._add("ulp-mlperf", f"Performance results for window {w}:")
        self._add("ulp-mlperf", f"  # Inferences : {iterations:12d}")
        self._add("ulp-mlperf", f"  Runtime      : {elapsed_us / 1e6:12.3f} sec.")
        self._add("ulp-mlperf", f"  Throughput   : {thr:12.3f} inf./sec.")
        if problems:
            for p in problems:
                self._add("ulp-mlperf", f"ERROR: window {w} {p}.")
        else:
            self._add("ulp-mlperf", "Runtime requirements have been met.")

    def median(self, med: float, problems: list[str]) -> None:
        self._add("ulp-mlperf", SEP)
        if problems:
            self._add("ulp-mlperf", "ERROR: not valid for submission: " + "; ".join(problems) + ".")
            self._add("runner", f"median of these windows (not a result): {med:.3f} inf./sec.")
        else:
            self._add("ulp-mlperf", f"Median throughput is {med:.3f} inf./sec.")
        self._add("ulp-mlperf", SEP)

    def accuracy(self, model, top1: float | None, auc: float | None, meets: bool) -> None:
        if top1 is not None:
            self._add("ulp-mlperf", f"Top-1: {top1:.1f}%")
        if auc is not None:
            self._add("ulp-mlperf", f"AUC: {auc:.3f}")
        else:
            self._add("runner", "auc is undefined for this set (it needs every class among the labels)")
        unit = "%" if model.metric == "top-1" else ""
        self._add(
            "runner",
            f"{model.name} quality target (checker v1.4): {model.metric} of at least {model.target:g}{unit} - "
            + ("met" if meets else "not met"),
        )

    def stopped(self, message: str) -> None:
        self._add("runner", f"run stopped, results incomplete: {message}")
