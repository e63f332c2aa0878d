"""The lifecycle all run modes share: output folder, log, results.txt/.json,
progress bar, and the end of a run whatever happens (status, exit code, errors,
Ctrl-C, closing the ports). A mode subclasses :class:`RunSession` and states
only what differs (:mod:`runner.session`: performance, accuracy; :mod:`runner.energy`).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from emulator import pystack

from .dataset import Dataset, load_dataset
from .errors import RunnerError
from .link import WireLog
from .progress import Progress
from .protocol import ModelInfo
from .report import CHECKER, RUNNER_VERSION, ResultsText

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


@dataclass
class RunOutcome:
    status: str  # complete | invalid | stopped | interrupted | failed
    exit_code: int
    message: str = ""
    record: dict = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)


def report_outcome(outcome: RunOutcome, out: Path, echo) -> None:
    """What the command prints at the end (summary on stdout, status on stderr)."""
    for line in outcome.summary:
        echo(line, False)
    if outcome.message:
        echo(f"tinytwin run: {outcome.status}: {outcome.message}", True)
    echo(f"results in {out} ({outcome.status})", True)


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


class RunSession:
    """One run: ``__init__`` sets up the output folder, :meth:`execute` does the rest.

    ``dut_port``: where the DUT is, for ``results.txt``; ``log_ports``: follows
    ``<mode> run`` in log.txt's first line; ``record_ports``: the record's port fields.
    """

    log_class = WireLog  # called (path, echo, before_echo)
    text_class = ResultsText
    #: files a run writes; anything else in the folder gets a warning
    output_files: tuple[str, ...] = ("log.txt", "results.txt", "results.json")
    #: appended to that warning
    foreign_hint = ""

    def __init__(self, opts, *, mode: str, dut_port: str, log_ports: str, record_ports: dict):
        self.check_options(opts)
        self.opts = opts
        self.mode = mode
        self.dut_port = dut_port
        self.stream = opts.stream if opts.stream is not None else sys.stderr
        self.out = Path(opts.out)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunnerError(f"cannot create the output folder {self.out}: {exc.strerror}") from None
        foreign = sorted(p.name for p in self.out.iterdir() if p.name not in self.output_files)
        self.progress: Progress | None = None
        self.log = self.log_class(self.out / "log.txt", self.stream if opts.verbose else None, self._clear_progress)
        self.text = self.text_class(self.out / "results.txt", self.log)
        self.record: dict = {
            "runner": {"name": "tinytwin runner", "version": RUNNER_VERSION, "results_format": CHECKER},
            "mode": mode,
            **record_ports,
            "dataset": {"root": str(Path(opts.dataset))},
            "dut": {},
            "started": _now(),
            "finished": None,
            "status": "running",
            "error": None,
        }
        self.summary: list[str] = []
        self._json_written = 0.0
        self._json_cost = 0.0  # s the last results.json took
        self.log.write(
            "runner",
            f"tinytwin runner {RUNNER_VERSION}: {mode} run{log_ports}; output {self.out}; "
            f"started {self.record['started']} (times in this log: seconds since then)",
        )
        if foreign:
            self.warn(f"the output folder {self.out} also holds {', '.join(foreign)}{self.foreign_hint}")

    def check_options(self, opts) -> None:
        """Raise :class:`RunnerError` for options no run can use (before anything is created)."""
        if opts.iterations is not None and opts.iterations <= 0:
            raise RunnerError("--iterations must be > 0")
        if opts.warmup < 0:
            raise RunnerError("--warmup must be >= 0")
        if opts.timeout <= 0:
            raise RunnerError("--timeout must be > 0")

    # -- what a mode states -------------------------------------------------------------
    def identify(self) -> ModelInfo:
        """Reach the DUT, fill ``record['dut']``, return its model."""
        raise NotImplementedError

    def measure(self, ds: Dataset) -> int:
        """The procedure; sets :attr:`summary`; returns ``EXIT_OK`` or ``EXIT_INVALID``."""
        raise NotImplementedError

    def close_devices(self) -> None:
        """Close the ports (at the end, whatever happened)."""

    def finish(self) -> None:
        """Anything else to save before the final record (whatever happened)."""

    def load_dataset(self, model: ModelInfo):
        """The dataset ``measure`` runs on (the EEMBC layout by default)."""
        return load_dataset(Path(self.opts.dataset), model, getattr(self.opts, "labels", None))

    def dataset_note(self, ds: Dataset) -> str:
        return f"dataset {ds.labels_path}: {len(ds.entries)} files, {ds.total_inputs()} inputs"

    # -- terminal -----------------------------------------------------------------------
    def _clear_progress(self) -> None:
        if self.progress is not None:
            self.progress.clear()

    def _tick(self) -> None:
        if self.progress is not None:
            self.progress.draw()

    def warn(self, text: str) -> None:
        self.log.write("runner", "warning: " + text)
        self._clear_progress()
        print("warning: " + text, file=self.stream, flush=True)

    # -- output -------------------------------------------------------------------------
    #: a periodic results.json is written at most every this many seconds...
    JSON_EVERY_S = 2.0
    #: ...and at most this share of the time (a long accuracy run's record grows)
    JSON_SHARE = 0.05

    def write_json(self, force: bool = False) -> None:
        """``results.json`` now (``force``: indented), or if the last one is
        old enough: 2 s, and 20 times as long as writing it took (a snapshot
        while the run goes on, compact: C-speed encoding)."""
        now = time.monotonic()
        if not force and now - self._json_written < max(self.JSON_EVERY_S, self._json_cost / self.JSON_SHARE):
            return
        path = self.out / "results.json"
        tmp = path.with_name(".results.json.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            if force:
                json.dump(self.record, fh, indent=1)
            else:
                json.dump(self.record, fh, separators=(",", ":"))
            fh.write("\n")
        os.replace(tmp, path)
        self._json_written = time.monotonic()
        self._json_cost = self._json_written - now

    # -- the run ------------------------------------------------------------------------
    def execute(self) -> RunOutcome:
        status, code, message = "complete", EXIT_OK, ""
        try:
            model = self.identify()
            self.text.header(self.mode, self.dut_port, self.record["dut"])
            ds = self.load_dataset(model)
            self.record["dataset"].update(
                {"folder": str(ds.folder), "labels": str(ds.labels_path), "files": len(ds.entries)}
            )
            self.log.write("runner", self.dataset_note(ds))
            self.write_json(force=True)
            # the hot loops below run at the same place on CPython's frame stack
            # whoever calls the runner (see emulator/pystack.py)
            code = pystack.with_headroom(self.measure, ds)
            if code == EXIT_INVALID:
                status = "invalid"
        except RunnerError as exc:
            status, code, message = "stopped", EXIT_ERROR, str(exc)
        except KeyboardInterrupt:
            status, code, message = "interrupted", EXIT_INTERRUPTED, "interrupted by the user"
        except Exception as exc:
            # a bug of ours (or the disk failing): the record must not say
            # "complete"; the traceback still reaches the user
            status, code, message = "failed", EXIT_ERROR, f"internal error: {exc!r}"
            raise
        finally:
            self._clear_progress()
            if message:
                self.log.write("runner", f"run stopped: {message}")
                self.text.stopped(message)
            try:
                # the record is written even if closing the devices fails or is
                # interrupted (a second Ctrl-C while the EMON is released)
                try:
                    self.close_devices()
                finally:
                    self.finish()
                    self.record["status"] = status
                    self.record["error"] = message or None
                    self.record["finished"] = _now()
                    self.write_json(force=True)
            finally:
                self.log.close()
        return RunOutcome(status, code, message, self.record, self.summary)
