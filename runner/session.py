"""One run of the MLPerf Tiny procedure against a DUT (a board or the twin).

:func:`run` identifies the DUT (``name``, ``profile``), picks
``DATASET/<model>/``, runs the performance or the accuracy procedure and
writes the output folder (see :mod:`runner.report`). Whatever happens, the
folder keeps what was done so far.

Performance mode: 5 windows; window *i* downloads the *i*-th input of
``y_labels.csv`` (ad01: its first window; the list is cycled when it has
fewer than 5 inputs) and runs ``infer N W``, as both reference runners do.
How N is chosen is ours: unless ``iterations`` is given, N is picked from two
calibration runs on the first input (``infer 1 0``, then ``infer n 0`` of
about one second) so that a window lasts about 11 s: at least the rules'
10 s and 10 inferences with a margin, on any DUT. The EEMBC EnergyRunner took
a fixed N from its session settings (the golden logs: ``iterInfer`` 100, ad01
1000, ``iterWarmup`` 1); mlcommons/tiny's runner takes N and W from
``tests_performance.yaml`` (kws01 ``infer 70 10``, ic01 and vww01 ``20 5``,
ad01 ``1500 10``). ``iterations``/``warmup`` (``--iterations``,
``--warmup``) reproduce either. With ``iterations`` given, one ``infer 1 0``
still runs first, to size the timeouts and the ETA.

Accuracy mode: ``infer 1 0`` on every input (ad01: every sliding window of
every file), then Top-1 / AUC as in :mod:`runner.metrics`.

Faults (``firmware_api_spec/faults.md``): a garbled or lost exchange is
repeated after a resync (``retries``); a step the DUT's reset cut short (its
boot banner in an answer) is repeated after identifying the DUT again
(``resets``); a port that went away is waited for at the same path
(``port_wait_s``) and reopened. A DUT that stops answering ends the run with
a message saying it hung. Each recovery is logged and listed under
``recoveries`` in ``results.json``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

from . import metrics
from .dataset import Dataset, Entry
from .errors import DeviceError, DeviceTimeout, RunnerError
from .lifecycle import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, RunOutcome, RunSession
from .link import PORT_APPEAR_S, SYNC_COMMAND, DutLink
from .progress import Progress
from .protocol import (
    MODELS,
    ModelInfo,
    ProtocolError,
    check_db_chunk,
    check_db_load,
    db_commands,
    parse_infer,
    parse_name,
    parse_profile,
)

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_INVALID", "EXIT_OK", "MODES", "RunOptions", "RunOutcome", "run"]

MODES = ("performance", "accuracy")


@dataclass
class RunOptions:
    port: str
    mode: str
    dataset: Path
    out: Path
    baud: int | None = None
    iterations: int | None = None
    warmup: int = 1
    timeout: float = 5.0
    verbose: bool = False
    progress: bool = True
    stream: TextIO | None = None  # progress, verbose echo (default stderr)
    retries: int = 1  # a garbled step (download + infer) is repeated this often after a resync
    #: after a step fails because the DUT reset, it is repeated (after identifying the DUT again) this often
    resets: int = 3
    #: how long a port that does not exist is waited for at its path: at the
    #: start (a twin or board started a moment ago) and when it went away
    #: mid-run (unplugged)
    port_wait_s: float = PORT_APPEAR_S
    #: accuracy: DUTs to share the inputs out among (runner.shards); ``port``
    #: then names one per job (comma-separated) or is a tinytwin:// URL
    jobs: int = 1
    #: a shard of an accuracy run: only these entries of y_labels.csv [start, stop)
    files: tuple[int, int] | None = None
    #: a shard: the model the DUT must report (the other shards' model)
    expect_model: str | None = None
    #: called after each accuracy inference (a shard's progress)
    on_inference: Callable[[], None] | None = None
    #: the labels file in the model's dataset folder (default y_labels.csv)
    labels: str | None = None


class _Run(RunSession):
    foreign_hint = "; the submission checker expects only log.txt, results.txt, results.json in a result folder"

    def __init__(self, opts: RunOptions):
        super().__init__(
            opts, mode=opts.mode, dut_port=opts.port, log_ports=f" on {opts.port}",
            record_ports={"port": opts.port, "baud": None},
        )
        self.link = DutLink(opts.port, self.log, baud=opts.baud, timeout=opts.timeout, on_wait=self._tick,
                            port_wait_s=opts.port_wait_s)

    def check_options(self, opts: RunOptions) -> None:
        if opts.mode not in MODES:
            raise RunnerError(f"mode must be one of {', '.join(MODES)}, got {opts.mode!r}")
        if opts.jobs < 1:
            raise RunnerError("--jobs must be >= 1")
        if opts.jobs > 1 and opts.mode != "accuracy":
            raise RunnerError(
                f"--jobs {opts.jobs} applies to accuracy runs; a {opts.mode} run times its windows one after "
                "another on one DUT"
            )
        super().check_options(opts)

    def close_devices(self) -> None:
        self.link.close()

    # -- DUT ---------------------------------------------------------------------
    def identify(self) -> ModelInfo:
        self.link.open()
        self.record["baud"] = self.link.baud
        self.link.take_reboot()  # a banner while the port opened is no reset
        return self._identify()

    def _identify(self) -> ModelInfo:
        attempt = 0
        while True:
            try:
                name = parse_name(self.link.command("name"))
                profile, model = parse_profile(self.link.command("profile"))
                if model is None and attempt < self.opts.retries:
                    raise ProtocolError("no 'm-model-[...]' line in the answer to 'profile%'")
                break
            except (ProtocolError, DeviceTimeout) as exc:
                if attempt >= self.opts.retries:
                    raise DeviceError(f"identifying the DUT on {self.opts.port}: {exc}") from None
                attempt += 1
                self.log.write("runner", f"identifying the DUT: {exc}; resynchronising and repeating")
                if not self.link.sync():
                    raise DeviceTimeout(
                        f"port {self.opts.port} stopped answering while identifying the DUT ({exc})"
                    ) from None
        self.record["dut"] = {"name": name, "profile": profile, "model": model}
        self.log.write("runner", f"DUT: name {name!r}, profile {profile!r}, model {model!r}")
        if model is None:
            raise DeviceError(
                f"the DUT on {self.opts.port} did not report its model (no 'm-model-[...]' line in the answer to 'profile%')"
            )
        if self.opts.expect_model is not None and model != self.opts.expect_model:
            raise DeviceError(
                f"the DUT on {self.opts.port} reports model {model!r}, the other jobs' DUT {self.opts.expect_model!r}: "
                "every job of a run needs a DUT with the same model"
            )
        info = MODELS.get(model)
        if info is None:
            raise DeviceError(
                f"the DUT on {self.opts.port} reports model {model!r}, which is not an MLPerf Tiny "
                f"closed-division model ({', '.join(MODELS)}): no dataset or quality metric for it"
            )
        return info

    def download(self, data: bytes) -> None:
        lines = self.link.command(f"db load {len(data)}")
        check_db_load(lines, len(data))
        cmds = db_commands(data)
        for i, cmd in enumerate(cmds):
            check_db_chunk(self.link.command(cmd), last=i == len(cmds) - 1)

    def recovered(self, what: str, error: Exception, action: str) -> None:
        """Note a recovery in the log and in ``results.json``."""
        self.log.write("runner", f"{what}: {error}; {action}")
        self.record.setdefault("recoveries", []).append({"what": what, "error": str(error), "action": action})

    def step(self, data: bytes, what: str, iterations: int, warmups: int):
        """Download ``data`` and run ``infer iterations warmups``. A garbled
        or lost exchange is repeated after a resync (``retries`` times); one
        the DUT's reset cut short is repeated after identifying the DUT again
        (``resets`` times); a port that went away is waited for
        (``port_wait_s``) and reopened."""
        attempt = resets = 0
        while True:
            try:
                self.download(data)
                ans = parse_infer(self.link.infer(iterations, warmups), iterations, warmups)
                self.link.note_inference(ans.elapsed_us, iterations)
                return ans
            except (ProtocolError, DeviceError) as exc:
                gone = getattr(exc, "port_gone", False)
                if isinstance(exc, DeviceError) and not isinstance(exc, DeviceTimeout) and not gone:
                    raise
                if gone:
                    if attempt >= self.opts.retries or not self.link.reopen(self.opts.port_wait_s):
                        raise DeviceError(f"{what}: {exc}; it did not come back within {self.opts.port_wait_s:g} s") from None
                    attempt += 1
                    self.recovered(what, exc, f"the port came back; repeating ({attempt}/{self.opts.retries})")
                    self.link.take_reboot()  # it was unplugged: a reboot is expected
                    self._reidentify(what)
                    continue
                if self.link.take_reboot() and resets < self.opts.resets:
                    resets += 1
                    self.link.sync()
                    self.link.take_reboot()
                    self.recovered(what, exc, f"the DUT reset (its boot banner came back); identified it again and "
                                              f"repeating ({resets}/{self.opts.resets})")
                    self._reidentify(what)
                    continue
                transient = getattr(exc, "transient", True)
                if not transient or attempt >= self.opts.retries:
                    kind = "timeout" if isinstance(exc, DeviceTimeout) else "protocol error"
                    raise DeviceError(f"{what}: {kind} on {self.opts.port}: {exc}") from None
                attempt += 1
                self.recovered(what, exc, f"resynchronising and repeating ({attempt}/{self.opts.retries})")
                if not self.link.sync():
                    raise DeviceTimeout(
                        f"{what}: {exc}; then port {self.opts.port} did not answer the resync '{SYNC_COMMAND}%' within "
                        f"{self.opts.timeout:g} s: the DUT has stopped (hung: press its RESET button or power-cycle "
                        "it, then run again)"
                    ) from None
                if self.link.take_reboot() and resets < self.opts.resets:
                    resets += 1
                    self._reidentify(what)

    def _reidentify(self, what: str) -> None:
        """After a reset: the DUT must still be the one (same model)."""
        before = dict(self.record.get("dut") or {})
        info = self._identify()
        if before.get("model") and self.record["dut"].get("model") != before.get("model"):
            raise DeviceError(f"{what}: after its reset the DUT on {self.opts.port} reports model "
                              f"{self.record['dut'].get('model')!r}, not {before.get('model')!r}")
        return info

    # -- procedures -----------------------------------------------------------------
    def performance(self, ds: Dataset) -> int:
        opts = self.opts
        n_entries = len(ds.entries)
        picks: list[Entry] = [ds.entries[i % n_entries] for i in range(metrics.WINDOWS)]
        if n_entries < metrics.WINDOWS:
            msg = f"{ds.labels_path} lists {n_entries} inputs; the 5 windows reuse them in turn"
            self.log.write("runner", msg)
        perf = self.record.setdefault("performance", {})
        perf.update({"windows": [], "warmups": opts.warmup})
        first = picks[0].input_bytes(picks[0].read(), 0)
        if opts.iterations is None:
            ans1 = self.step(first, f"calibration with {picks[0].file}", 1, 0)
            n2 = metrics.second_calibration_iterations(ans1.elapsed_us)
            ans2 = self.step(first, f"calibration with {picks[0].file}", n2, 0)
            cal = metrics.Calibration(ans1.elapsed_us, n2, ans2.elapsed_us)
            iterations = metrics.pick_iterations(cal)
            perf["calibration"] = {
                "file": picks[0].file,
                "infer_1_us": ans1.elapsed_us,
                "iterations": n2,
                "infer_n_us": ans2.elapsed_us,
                "inference_us": cal.inference_us,
                "overhead_us": cal.overhead_us,
                "target_window_s": metrics.TARGET_WINDOW_S,
                "picked_iterations": iterations,
            }
            self.log.write(
                "runner",
                f"calibration: {cal.inference_us:.0f} us an inference + {cal.overhead_us:.0f} us a window; "
                f"N = {iterations} for a {metrics.TARGET_WINDOW_S:g} s window",
            )
            self.link.inference_us = cal.inference_us
        else:
            iterations = opts.iterations
            # one inference first, to size the timeouts and the ETA
            probe = self.step(first, f"timing probe with {picks[0].file}", 1, 0)
            perf["timing_probe_us"] = probe.elapsed_us
            self.link.inference_us = float(probe.elapsed_us)
        perf["iterations"] = iterations
        per_s = (self.link.inference_us or 0) / 1e6
        self.progress = Progress(
            f"{ds.model.name} performance", metrics.WINDOWS * iterations, self.stream, enabled=opts.progress
        )
        self.progress.draw(force=True)
        throughputs = []
        problems: list[str] = []
        for w, entry in enumerate(picks, start=1):
            data = entry.input_bytes(entry.read(), 0)
            self.progress.expect(iterations, per_s * (iterations + opts.warmup))
            ans = self.step(data, f"window {w} ({entry.file})", iterations, opts.warmup)
            self.progress.advance(iterations)
            thr = metrics.throughput(iterations, ans.elapsed_us)
            wprob = metrics.window_problems(iterations, ans.elapsed_us)
            problems += [f"window {w} {p}" for p in wprob]
            throughputs.append(thr)
            perf["windows"].append(
                {
                    "window": w,
                    "file": entry.file,
                    "iterations": iterations,
                    "warmups": opts.warmup,
                    "start_us": ans.start_us,
                    "end_us": ans.end_us,
                    "runtime_us": ans.elapsed_us,
                    "runtime_s": ans.elapsed_us / 1e6,
                    "throughput": thr,
                    "valid": not wprob,
                    "results": ans.results,
                }
            )
            self.text.window(w, iterations, ans.elapsed_us, thr, wprob)
            self.write_json(force=True)
        self.progress.finish()
        med = metrics.median_throughput(throughputs)
        perf["median_throughput"] = med
        perf["valid"] = not problems
        perf["problems"] = problems
        self.text.median(med, problems)
        runtimes = [w["runtime_s"] for w in perf["windows"]]
        self.summary = [
            f"{ds.model.name} performance on {self.opts.port}: median throughput {med:.3f} inf./sec. "
            f"({metrics.WINDOWS} windows of {iterations} inferences, {min(runtimes):.3f}-{max(runtimes):.3f} s)"
        ]
        if problems:
            self.summary.append("NOT VALID for submission: " + "; ".join(problems))
            return EXIT_INVALID
        return EXIT_OK

    def accuracy(self, ds: Dataset) -> int:
        """Every input once (a shard: the files of ``opts.files``), then the
        quality metric over all of them."""
        model = ds.model
        entries = ds.entries if self.opts.files is None else ds.entries[self.opts.files[0] : self.opts.files[1]]
        total = sum(len(e.windows()) for e in entries)
        acc = self.record.setdefault("accuracy", {})
        acc.update({"inputs": total, "files": len(entries), "inferences": []})
        infs = acc["inferences"]
        self.progress = Progress(f"{model.name} accuracy", total, self.stream, enabled=self.opts.progress)
        self.progress.draw(force=True)
        tick = self.opts.on_inference
        for entry in entries:
            data = entry.read()
            for offset in entry.windows():
                what = f"{entry.file}" + (f" window at byte {offset}" if model.windowed else "")
                per_s = (self.link.inference_us or 0) / 1e6
                self.progress.expect(1, per_s)
                ans = self.step(entry.input_bytes(data, offset), what, 1, 0)
                self.progress.advance(1)
                want = 1 if model.windowed else model.classes
                if len(ans.results) != want:
                    raise DeviceError(
                        f"{what}: the DUT on {self.opts.port} returned {len(ans.results)} scores; "
                        f"{model.name} gives {want}"
                    )
                rec = {"file": entry.file, "label": entry.label, "us": ans.elapsed_us, "results": ans.results}
                if model.windowed:
                    rec["offset"] = offset
                infs.append(rec)
                if tick is not None:
                    tick()
                self.write_json()
        self.progress.finish()
        if self.opts.files is not None:  # a shard: the whole run's metric is the merger's
            self.summary = [f"{model.name} accuracy shard: {len(infs)} inputs of {len(entries)} files"]
            return EXIT_OK
        self.summary = accuracy_summary(model, entries, acc, self.text, self.opts.port)
        return EXIT_OK

    def measure(self, ds: Dataset) -> int:
        return self.performance(ds) if self.opts.mode == "performance" else self.accuracy(ds)


def accuracy_summary(model: ModelInfo, entries: list[Entry], acc: dict, text, port: str) -> list[str]:
    """The quality metric of an accuracy run from its inference records
    (``acc['inferences']``, in the order of ``entries``): fills ``acc``,
    writes the results.txt lines, returns the summary. A serial run and the
    merger of a sharded one (:mod:`runner.shards`) both end here."""
    infs = acc["inferences"]
    labels = [e.label for e in entries]
    if model.windowed:
        by_file: dict[str, list[float]] = {}
        for rec in infs:
            by_file.setdefault(rec["file"], []).append(rec["results"][0])
        ad_scores = [metrics.file_score(by_file[e.file]) for e in entries]
        auc = metrics.anomaly_auc(ad_scores, labels)
        acc["file_scores"] = [{"file": e.file, "label": e.label, "score": sc} for e, sc in zip(entries, ad_scores)]
        top = metrics.anomaly_top1(ad_scores, labels)  # (as mlcommons/tiny's runner prints it; the metric is the AUC)
    else:
        scores = [rec["results"] for rec in infs]
        top = metrics.top1(scores, labels)
        auc = metrics.classification_auc(scores, labels, model.classes)
    acc["top1"] = top
    acc["auc"] = auc
    value = auc if model.metric == "auc" else top
    # the checker compares the printed figure with the target
    meets = value is not None and float(f"{value:.{3 if model.metric == 'auc' else 1}f}") >= model.target
    acc["metric"] = model.metric
    acc["target"] = model.target
    acc["meets_target"] = bool(meets)
    text.accuracy(model, top, auc, meets)
    figs = []
    if top is not None:
        figs.append(f"Top-1 {top:.1f}%")
    figs.append(f"AUC {auc:.3f}" if auc is not None else "AUC undefined (needs both/all classes)")
    target = f"{model.target:g}{'%' if model.metric == 'top-1' else ''} {model.metric}"
    total = len(infs)
    return [
        f"{model.name} accuracy on {port}: {', '.join(figs)} over {len(entries)} files"
        + (f" ({total} windows)" if model.windowed else ""),
        f"quality target {target}: " + ("met" if meets else "NOT met (reported; the run itself is complete)"),
    ]


def run(opts: RunOptions) -> RunOutcome:
    """Run the procedure; never raises :class:`RunnerError` past setup. With
    ``opts.jobs`` > 1 (accuracy) the inputs are shared out among that many
    DUTs (:mod:`runner.shards`)."""
    if opts.jobs > 1 and opts.files is None:
        from .shards import run_sharded

        return run_sharded(opts)
    return _Run(opts).execute()
