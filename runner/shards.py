"""Sharded accuracy runs: one run's inputs shared out among N DUTs.

``tinytwin run --mode accuracy --jobs N`` identifies the DUT, splits the
dataset's files into N contiguous slices of about equal numbers of inputs,
runs each slice as a *shard* on its own DUT in its own process, and merges the
shards into one result folder. Its ``results.txt`` and ``results.json`` are
those of a serial run over the same inputs: the same inference records in
the same (input) order, and the quality metric computed from them by the same
function (:func:`runner.session.accuracy_summary`). What differs between any
two runs differs here too: the wall-clock stamps and dates, and each
inference's ``us`` (the DUT's µs timer is read at a phase that depends on when
the command arrived: ±1 µs).

``log.txt`` is one file, in input order: the run's own lines (identification,
the shard plan), then each shard's complete log in shard order, introduced by
a ``runner:`` line naming the shard's files and port; inside a shard's block
the times count from that shard's start.

The DUTs: ``--port`` once per job (boards, or twins each on its own pty), or
one ``tinytwin://`` URL, which each job opens as its own in-process twin
(``instance=...-shardK``).

The three parts are separate so that a sweep can hand shards to a distributed
engine (Ray, Dask) without changing the runner:

* :func:`plan_shards` (pure): the :class:`ShardSpec` of each shard, plain data
  that pickles;
* :func:`run_shard`: one shard, start to end, in whatever process calls it;
  returns a :class:`ShardResult` (plain data): ``ray.remote(run_shard)``,
  ``client.submit(run_shard, spec)``;
* :func:`merge_shards` (pure): the merged accuracy record, in input order.

:func:`run_sharded` wires them with local processes (one per shard) and the
usual result folder.
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_connections
from pathlib import Path
from typing import Callable

from .dataset import Dataset
from .errors import DeviceError, RunnerError
from .lifecycle import EXIT_OK, RunOutcome
from .link import PORT_APPEAR_S
from .progress import Progress
from .protocol import ModelInfo

#: where the shards write their own folders, inside the run's folder while it runs
SHARDS_DIR = ".shards"


@dataclass(frozen=True)
class ShardSpec:
    """One shard: the files ``[start, stop)`` of the labels file on ``port``."""

    index: int
    count: int
    port: str
    dataset: str
    start: int
    stop: int
    inputs: int
    model: str
    out: str
    baud: int | None = None
    timeout: float = 5.0
    retries: int = 1
    port_wait_s: float = PORT_APPEAR_S
    #: the labels file in the model's folder (``--labels``)
    labels: str = "y_labels.csv"

    def describe(self) -> str:
        return (
            f"shard {self.index + 1}/{self.count}: files {self.start + 1}-{self.stop} "
            f"({self.inputs} inputs) on {self.port}"
        )


@dataclass
class ShardResult:
    """What one shard did: its status and its record (results.json)."""

    index: int
    status: str
    exit_code: int
    message: str = ""
    record: dict = field(default_factory=dict)
    log: str = ""  # the shard's log.txt

    @property
    def inferences(self) -> list[dict]:
        return self.record.get("accuracy", {}).get("inferences", [])


def split_ports(port: str) -> list[str]:
    """``--port`` as given: one port, or several joined by commas."""
    return [p.strip() for p in port.split(",") if p.strip()]


def shard_ports(port: str, jobs: int) -> list[str]:
    """The port of each of ``jobs`` shards: one ``tinytwin://`` URL becomes one
    in-process twin per shard; otherwise one port per job must be given."""
    ports = split_ports(port)
    if len(ports) == 1 and ports[0].startswith("tinytwin://"):
        return [with_instance(ports[0], k) for k in range(jobs)]
    if len(ports) != jobs:
        raise RunnerError(
            f"--jobs {jobs} needs one DUT per job: give {jobs} ports (--port A --port B, e.g. twins started "
            f"with tinytwin dut --link /tmp/tinytwin/dut0 ...), or one tinytwin:// URL (each job then runs its "
            f"own in-process twin); got {len(ports)}: {', '.join(ports) or 'none'}"
        )
    return ports


def with_instance(url: str, k: int) -> str:
    """``url`` as its own in-process twin for shard ``k`` (``instance=``)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    base = next((v for key, v in query if key == "instance"), "run")
    query = [(key, v) for key, v in query if key != "instance"] + [("instance", f"{base}-shard{k + 1}")]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, safe="/:")))


def plan_slices(inputs_per_file: list[int], jobs: int) -> list[tuple[int, int]]:
    """Contiguous slices ``[start, stop)`` of the files, at most ``jobs`` and
    none empty, with about equal numbers of inputs (pure): slice ``k`` ends at
    the first file where the inputs so far reach ``k/jobs`` of all, kept
    within reach of one file for each slice still to come."""
    n = len(inputs_per_file)
    jobs = max(1, min(jobs, n))
    total = sum(inputs_per_file)
    cum = [0]
    for k in inputs_per_file:
        cum.append(cum[-1] + k)
    bounds = [0]
    for k in range(1, jobs):
        i = bounds[-1] + 1
        while i < n and cum[i] * jobs < total * k:
            i += 1
        bounds.append(min(i, n - (jobs - k)))
    bounds.append(n)
    return list(zip(bounds[:-1], bounds[1:]))


def plan_shards(ds: Dataset, ports: list[str], out: Path, *, baud: int | None = None, timeout: float = 5.0,
                retries: int = 1, port_wait_s: float = PORT_APPEAR_S) -> list[ShardSpec]:
    """The shards of an accuracy run over ``ds``: one per port (fewer when the
    dataset has fewer files), each writing to its own folder under ``out``."""
    per_file = [len(e.windows()) for e in ds.entries]
    slices = plan_slices(per_file, len(ports))
    root = Path(ds.folder).parent
    return [
        ShardSpec(
            index=k, count=len(slices), port=ports[k], dataset=str(root), start=a, stop=b,
            inputs=sum(per_file[a:b]), model=ds.model.name, out=str(Path(out) / SHARDS_DIR / f"shard{k + 1}"),
            baud=baud, timeout=timeout, retries=retries, port_wait_s=port_wait_s, labels=Path(ds.labels_path).name,
        )
        for k, (a, b) in enumerate(slices)
    ]


def run_shard(spec: ShardSpec, on_inference: Callable[[], None] | None = None) -> ShardResult:
    """Run one shard (identification, its files, its own log.txt and
    results.json in ``spec.out``) in this process."""
    from .session import RunOptions, _Run

    try:
        opts = RunOptions(
            port=spec.port, mode="accuracy", dataset=Path(spec.dataset), out=Path(spec.out), baud=spec.baud,
            timeout=spec.timeout, retries=spec.retries, port_wait_s=spec.port_wait_s, progress=False, files=(spec.start, spec.stop),
            expect_model=spec.model, on_inference=on_inference, labels=spec.labels,
        )
        outcome = _Run(opts).execute()
    except RunnerError as exc:
        return ShardResult(spec.index, "stopped", 2, str(exc), log=str(Path(spec.out) / "log.txt"))
    return ShardResult(spec.index, outcome.status, outcome.exit_code, outcome.message, outcome.record,
                       str(Path(spec.out) / "log.txt"))


def merge_shards(results: list[ShardResult]) -> tuple[list[dict], ShardResult | None]:
    """The inference records of the whole run, in input order, and the first
    shard that did not complete (``None``: all did). After an incomplete shard
    only what precedes it in input order is kept, as a serial run that
    stopped there would have it."""
    infs: list[dict] = []
    for res in sorted(results, key=lambda r: r.index):
        infs += res.inferences
        if res.status != "complete":
            return infs, res
    return infs, None


# -- local execution ----------------------------------------------------------------------------------


def _worker(spec: ShardSpec, counts, conn) -> None:
    def tick() -> None:
        counts[spec.index] += 1

    try:
        result = run_shard(spec, tick)
    except KeyboardInterrupt:
        result = ShardResult(spec.index, "interrupted", 130, "interrupted by the user")
    except BaseException as exc:  # a bug: reported by the parent, not lost in a child
        result = ShardResult(spec.index, "failed", 2, f"internal error: {exc!r}")
    conn.send(result)
    conn.close()


def run_local(specs: list[ShardSpec], on_progress: Callable[[int], None] | None = None,
              meanwhile: Callable[[], None] | None = None) -> list[ShardResult]:
    """Run the shards at once, one process each; ``on_progress(done)`` gets
    the inferences done so far. When one shard stops, the others are
    interrupted (as a serial run stops at its first error).

    ``meanwhile()`` runs on a thread of this process once every shard has
    started (never before a fork: a child must not inherit a lock a thread
    holds), for work this process needs after the shards, e.g. imports."""
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    counts = ctx.Array("q", len(specs), lock=False)
    procs: dict[object, tuple[ShardSpec, object]] = {}
    for spec in specs:
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=(spec, counts, child_end), name=f"tinytwin-shard{spec.index + 1}")
        proc.start()
        child_end.close()
        procs[parent_end] = (spec, proc)
    if meanwhile is not None:
        threading.Thread(target=meanwhile, name="tinytwin-shards-meanwhile", daemon=True).start()
    results: list[ShardResult] = []
    stopping = False
    interrupted: float | None = None  # when this process was interrupted
    forwarded = False
    while procs:
        try:
            ready = wait_connections(list(procs), timeout=0.2)
        except KeyboardInterrupt:
            # a Ctrl-C reaches the shards too and they finish their records;
            # a signal to this process alone is passed on after a moment
            interrupted = interrupted or time.monotonic()
            stopping = True
            continue
        if interrupted is not None and not forwarded and time.monotonic() - interrupted > 1.0:
            _interrupt(p for _, p in procs.values())
            forwarded = True
        if on_progress is not None:
            on_progress(sum(counts))
        for conn in ready:
            spec, proc = procs.pop(conn)
            try:
                res = conn.recv()
            except EOFError:
                res = ShardResult(spec.index, "failed", 2, f"the process of {spec.describe()} ended without a result "
                                  f"(exit code {proc.exitcode})")
            proc.join()
            results.append(res)
            if res.status not in ("complete", "invalid") and not stopping:
                stopping = True
                _interrupt(p for _, p in procs.values())
    if interrupted is not None:
        raise KeyboardInterrupt
    return sorted(results, key=lambda r: r.index)


def _interrupt(procs) -> None:
    """Ctrl-C for these shard processes (each ends its run and its record)."""
    for proc in procs:
        if proc.pid is not None and proc.exitcode is None:
            try:
                os.kill(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass


# -- the sharded run ----------------------------------------------------------------------------------


def _import_metrics() -> None:
    """Import what the merged summary needs (scikit-learn's metrics: about a
    second) while the shards measure, instead of after them."""
    try:
        import sklearn.metrics  # noqa: F401
    except Exception:  # the summary's own import reports it
        pass


def run_sharded(opts) -> RunOutcome:
    """An accuracy run over ``opts.jobs`` DUTs (see the module)."""
    from .session import _Run, accuracy_summary

    class _ShardedRun(_Run):
        def __init__(self, opts):
            self.ports = shard_ports(opts.port, opts.jobs)
            super().__init__(opts)

        def identify(self) -> ModelInfo:
            # the first DUT answers for all; each shard checks its own
            first = self.opts.port
            self.opts.port = self.ports[0]
            self.link.port = self.ports[0]
            try:
                return super().identify()
            finally:
                self.opts.port = first
                self.link.port = first
                self.link.close()

        def measure(self, ds: Dataset) -> int:
            opts = self.opts
            specs = plan_shards(ds, self.ports, self.out, baud=self.link.baud, timeout=opts.timeout,
                                retries=opts.retries, port_wait_s=opts.port_wait_s)
            self.log.write("runner", f"{len(specs)} jobs, each a shard of the files on its own DUT, in its own process")
            for spec in specs:
                self.log.write("runner", spec.describe())
            total = sum(s.inputs for s in specs)
            acc = self.record.setdefault("accuracy", {})
            acc.update({"inputs": total, "files": len(ds.entries), "inferences": []})
            self.progress = Progress(f"{ds.model.name} accuracy", total, self.stream, enabled=opts.progress)
            self.progress.draw(force=True)
            shown = [0]

            def progress(done: int) -> None:
                if done > shown[0]:
                    self.progress.advance(done - shown[0])
                    shown[0] = done

            self.log.flush()  # the shards' processes start with a copy of this process
            try:
                results = run_local(specs, progress, meanwhile=_import_metrics)
            finally:
                self.progress.finish()
            infs, incomplete = merge_shards(results)
            acc["inferences"] = infs
            self._merge_shard_records(specs, results)
            self._merge_logs(specs, results)
            # the shard that stopped the run (the others were interrupted then)
            cause = next((r for r in results if r.status in ("stopped", "failed")), incomplete)
            if cause is not None:
                if cause.status == "interrupted":
                    raise KeyboardInterrupt
                raise DeviceError(f"{specs[cause.index].describe()}: {cause.message or cause.status}")
            self.summary = accuracy_summary(ds.model, ds.entries, acc, self.text, opts.port)
            return EXIT_OK

        def _merge_shard_records(self, specs: list[ShardSpec], results: list[ShardResult]) -> None:
            """What a serial run would have recorded besides the inferences: the
            recoveries (in input order); and, in log.txt only (results.json stays a
            serial run's), which DUT each shard ran on, with a warning when they
            do not name themselves alike."""
            first = None
            for spec, res in zip(specs, results):
                dut = res.record.get("dut", {})
                ident = (dut.get("name"), dut.get("profile"))
                self.log.write("runner", f"{spec.describe()}: DUT {dut.get('name')!r}, profile {dut.get('profile')!r}")
                if first is None:
                    first = ident
                elif ident != first and all(ident):
                    self.warn(f"{spec.describe()}: its DUT names itself {ident[0]!r} ({ident[1]!r}), the first shard's "
                              f"{first[0]!r} ({first[1]!r}): the merged results mix two kinds of DUT")
                for rec in res.record.get("recoveries", []):
                    self.log.write("runner", f"{spec.describe()}: recovered: {rec.get('what')}: {rec.get('action')}")
                    self.record.setdefault("recoveries", []).append(rec)

        def _merge_logs(self, specs: list[ShardSpec], results: list[ShardResult]) -> None:
            for spec, res in zip(specs, results):
                self.log.write("runner", f"{spec.describe()}: {res.status}; its log follows (times from its start)")
                if res.log and os.path.exists(res.log):
                    self.log.append_file(Path(res.log))
            shutil.rmtree(self.out / SHARDS_DIR, ignore_errors=True)

    return _ShardedRun(opts).execute()
