"""Energy mode: the MLPerf Tiny energy procedure against a bench (or the twin's rig).

The bench: the DUT runs the energy-mode firmware (9600 baud, timestamps as
falling edges of a GPIO instead of ``m-lap-us-`` lines); an IO manager
(:mod:`runner.ioman_client`) relays its UART; an LPM01A
(:mod:`runner.emon_lpm01a`) supplies it, samples the energy it draws and
reports the timestamp edges on its D7 input in its data stream.

The run, following the EEMBC EnergyRunner's session (``energy/log.txt`` of
the v0.5 reference results) and the mlcommons/tiny runner:

1. EMON: ``htc``; supply voltage (``--voltage``, 1.8 V by default: the v0.5
   reference results' supply, as the EMON's ``m-voltage-mv[1800]`` in their
   logs says, and the mlcommons/tiny runner's YAMLs for kws/ic/vww/ad),
   1 kHz samples of energy, ``ascii_dec``, acquisition
   until ``stop``, falling D7 edges reported; ``pwr on`` powers the DUT up.
2. IO manager: resynchronised (``%``), identified (``name``; ``--interface``
   is checked against it). Arduino: the DUT's boot banner is read as it is
   relayed (it must say ``m-timestamp-mode-energy``). H573: ``setbaud 9600``
   restarts the board, dropping the banner it would otherwise hand to the
   next command.
3. DUT: ``dut name``, ``dut profile`` (the model picks ``DATASET/<model>/``).
4. ``start``; ``dut timestamp``: the EMON must report its one edge (the
   wiring check the EnergyRunner also does).
5. N, as in performance mode: with ``--iterations`` one ``infer 1 0`` first
   (timeouts, ETA); otherwise two calibration runs, ``infer 1 0`` and ``infer
   n 0`` of about 1 s, timed *by the EMON* (there are no ``m-lap-us-`` lines in
   energy mode), and N for an 11 s window (:func:`runner.metrics.pick_iterations`).
6. Five windows; window *i* downloads input *i* of ``y_labels.csv`` (ad01:
   its first window; the list is cycled) with ``dut db load N`` and ``dut db
   <hex>`` of 26 bytes, runs ``dut infer N W``, then reads the EMON stream
   until it holds both timestamp edges of that inference. The IO manager's
   answer can reach the host before the EMON samples of the same moment (the
   two ports are independent); when the edges are not in yet, an EMON
   command (``pwr get``) marks a point after the inference in the stream, and
   the edges must come before one more second of samples after it.
   Energy of a window = sum of the samples between its two edges (the
   sample holding the start edge up to the one holding the end edge,
   exclusive); energy per inference = that / N; runtime = samples between
   the edges / rate.
7. ``stop`` (``Acquisition completed``), ``pwr off``, ``hrc``.

Faults (``firmware_api_spec/faults.md``): a window whose exchange was garbled
or lost, or whose timestamp edge went missing, is repeated after resyncing
the IO manager (once); one the DUT's reset cut short is repeated after
emptying the H573's stale queue (``setbaud``) and identifying the DUT again;
an LPM01A still streaming from an earlier run is stopped before it is
configured, and a setting whose answer was lost is sent again. Each recovery
is logged and listed under ``recoveries`` in ``results.json``.

Output folder: ``log.txt`` (every line on both ports, samples included,
with seconds since the start), ``results.txt`` (per window ``Energy data
for window i at time T for D sec.:`` with Energy / Power / Energy/Inf. as
the EnergyRunner prints them, ``Median energy cost is X uJ/inf.`` -- the line
the submission checker reads -- then the performance lines of the same
windows), ``results.json``, and the trace: ``trace1-energy.bin`` (the
EnergyRunner's format: ``0xF1``, float32 rate, float32 µJ per sample),
``trace1-timestamps.json`` (times of all the edges the EMON reported, s) and
``trace1-energy.png`` (power over time, the measured windows shaded). A run
whose windows break the rules (under 10 s or 10 inferences, not 5 windows)
gets no ``Median energy cost is`` line and exits 1; a run that stops (an
edge missing, the EMON silent, a device not answering) exits 2; either way
the folder keeps everything done so far.
"""
from __future__ import annotations

import functools
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from . import metrics
from .dataset import Dataset, Entry, StreamTruth, load_truth, truth_files
from .emon_lpm01a import SAMPLE_RATE_HZ, EmonError, Event, Lpm01aClient
from .errors import DeviceError, DeviceTimeout, RunnerError
from .ioman_client import DB_CHUNK_BYTES, DUT_ENERGY_BAUD, INTERFACES, IoManagerClient
from .lifecycle import EXIT_ERROR, EXIT_INVALID, EXIT_OK, RunOutcome, RunSession, report_outcome
from .link import FIRST_INFERENCE_LIMIT_S, PORT_APPEAR_S, WireLog, open_serial
from .progress import Progress
from .protocol import (
    MODELS,
    STREAMING_MODELS,
    ModelInfo,
    ProtocolError,
    check_db_chunk,
    check_db_load,
    db_commands,
    parse_energy_infer,
    parse_name,
    parse_profile,
)
from .report import SEP, ResultsText
from .sww import SWW_PLOT_FILE, SWW_VOLTAGE_V, StreamRun, plot_stream

#: after the EMON's marker, how much more of the stream may pass before an
#: edge counts as missing (s of samples)
EDGE_GRACE_S = 2.0
TRACE_FILE = "trace1-energy.bin"
TIMESTAMPS_FILE = "trace1-timestamps.json"
PLOT_FILE = "trace1-energy.png"
OUTPUT_FILES = ("log.txt", "results.txt", "results.json", TRACE_FILE, TIMESTAMPS_FILE, PLOT_FILE, SWW_PLOT_FILE)
#: the DUT supply the runner sets on the EMON unless told otherwise (V): the
#: reference results' (their logs' m-voltage-mv[1800]) and mlcommons/tiny's
#: devices YAMLs'
DEFAULT_VOLTAGE_V = 1.8
#: the DUT-side baud of the H573 for the streaming firmware (devices_sww.yaml: 115200 in every mode)
SWW_DUT_BAUD = 115200


@dataclass
class EnergyOptions:
    io_port: str
    emon_port: str | None
    dataset: Path
    out: Path
    interface: str | None = None  # arduino | h573 | None: whichever answers
    #: the DUT supply; None: 1.8 V (the v0.5 reference's), 3.3 V for a streaming run (devices_sww.yaml)
    voltage: float | None = None
    iterations: int | None = None
    warmup: int = 1
    windows: int = metrics.WINDOWS
    timeout: float = 5.0
    verbose: bool = False
    progress: bool = True
    stream: TextIO | None = None
    plot: bool = True
    #: the EMON counts as stopped after this long without a byte while acquiring
    emon_stall_s: float = 10.0
    #: "energy", or "performance": the streaming-wakeword procedure through the
    #: interface board without energy (the EMON, if given, only supplies the DUT)
    mode: str = "energy"
    #: streaming wakeword: the truth JSON in DATASET/sww01/ (default: sww_long_test.json)
    truth: str | None = None
    #: the DUT-side baud set on the H573 (setbaud); None: 115200 for a streaming run, else 9600
    dut_baud: int | None = None
    #: how long a port that does not exist yet is waited for at its path
    port_wait_s: float = PORT_APPEAR_S

    def supply_v(self) -> float:
        """The DUT supply the EMON is set to: ``voltage``, else 1.8 V (the v0.5
        reference runs' m-voltage-mv[1800], mlcommons/tiny's kws/ic/vww/ad
        YAMLs), or 3.3 V for a streaming run (its devices_sww.yaml)."""
        if self.voltage is not None:
            return self.voltage
        return SWW_VOLTAGE_V if self.streaming() else DEFAULT_VOLTAGE_V

    def streaming(self) -> bool:
        """Is this the streaming-wakeword procedure? (It must be known before the
        DUT is reached: its firmware talks at 115200 baud, the EEMBC energy
        firmware at 9600.) Yes in performance mode through the interface board,
        with --truth, or when the dataset is a sww01 folder (sww_*_test.json) or
        holds one and no folder of another model (a root with kws01/ and
        sww01/ side by side needs --truth to say which)."""
        if self.mode == "performance" or self.truth is not None:
            return True
        root = Path(self.dataset)
        if truth_files(root) and not (root / "y_labels.csv").is_file():
            return True
        return bool(truth_files(root / "sww01")) and not any((root / m).is_dir() for m in MODELS)


class EdgeError(RunnerError):
    """A timestamp edge the EMON should have reported is missing."""


#: a window whose exchange was garbled or lost is repeated this often after a resync
RETRIES = 1
#: a window the DUT's reset cut short is repeated this often
RESETS = 3


def _again(exc: Exception, message: str) -> Exception:
    """``exc`` (same class, same flags) with a fuller message."""
    new = type(exc)(message)
    new.__dict__.update(exc.__dict__)
    return new


class _Log(WireLog):
    """``log.txt`` shared by the two ports' threads."""

    def __init__(self, path: Path, echo: TextIO | None, before_echo):
        super().__init__(path, echo=None)
        self._lock = threading.Lock()
        self._echo_to = echo
        self._before_echo = before_echo

    def write(self, who: str, text: str) -> None:
        self.lines(who, [text])

    def lines(self, who: str, lines: list[str]) -> None:
        if not lines:
            return
        with self._lock:
            now = time.monotonic()
            prefix = f"{self._stamp_at(now)} {who}: "
            self._put(prefix + ("\n" + prefix).join(lines) + "\n", now)
            if self._echo_to is not None and who != "runner":
                shown = [ln for ln in lines if not (who == "emon" and ln[:1].isdigit())]
                if shown:
                    if self._before_echo is not None:
                        self._before_echo()
                    print("\n".join(prefix + ln for ln in shown), file=self._echo_to, flush=True)

    def close(self) -> None:
        with self._lock:
            super().close()


class _Text(ResultsText):
    """``results.txt`` with the energy lines."""

    def energy_window(self, w: int, t0: float, runtime: float, energy_uj: float, power_uw: float, per_inf: float) -> None:
        self._add("ulp-mlperf", f"Energy data for window {w} at time {t0:.2f} for {runtime:.2f} sec.:")
        self._add("ulp-mlperf", f"  Energy       : {energy_uj:12.3f} uJ")
        self._add("ulp-mlperf", f"  Power        : {power_uw:12.3f} uW")
        self._add("ulp-mlperf", f"  Energy/Inf.  : {per_inf:12.3f} uJ/inf.")

    def energy_median(self, med: float, problems: list[str]) -> None:
        self._add("ulp-mlperf", SEP)
        if problems:
            self._add("ulp-mlperf", "ERROR: not valid for submission: " + "; ".join(problems) + ".")
            self._add("runner", f"median of these windows (not a result): {med:.3f} uJ per inference")
        else:
            self._add("ulp-mlperf", f"Median energy cost is {med:.3f} uJ/inf.")
        self._add("ulp-mlperf", SEP)

    def note(self, text: str) -> None:
        self._add("runner", text)


@dataclass
class _Window:
    start: Event
    end: Event
    extra: int  # events beyond the two (the first ones were dropped)

    def runtime_s(self, rate: float) -> float:
        return (self.end.sample - self.start.sample) / rate


class _EnergyRun(RunSession):
    log_class = _Log
    text_class = _Text
    output_files = OUTPUT_FILES

    def __init__(self, opts: EnergyOptions):
        self.streaming = opts.streaming()
        self.voltage = opts.supply_v()
        emon_note = f"EMON {opts.emon_port}" if opts.emon_port else "no EMON"
        super().__init__(
            opts, mode=opts.mode, dut_port=f"{opts.io_port} ({emon_note})",
            log_ports=f"; IO manager on {opts.io_port}, {emon_note.replace('EMON ', 'EMON on ')}",
            record_ports={
                "io_port": opts.io_port,
                "emon_port": opts.emon_port,
                "interface": None,
                "io_manager": {},
                "emon": {"kind": "lpm01a", "voltage_v": self.voltage, "rate_hz": SAMPLE_RATE_HZ}
                if opts.emon_port else None,
            },
        )
        for name in (TRACE_FILE, TIMESTAMPS_FILE, PLOT_FILE, SWW_PLOT_FILE):
            try:
                (self.out / name).unlink()  # a previous run's trace must not pass for this one's
            except FileNotFoundError:
                pass
        opener = functools.partial(open_serial, wait_s=opts.port_wait_s)
        self.emon = (Lpm01aClient(opts.emon_port, self.log.lines, timeout=opts.timeout, stall_s=opts.emon_stall_s,
                                  opener=opener)
                     if opts.emon_port else None)
        self.io = IoManagerClient(
            opts.io_port, self.log.lines, interface=opts.interface, timeout=opts.timeout, on_wait=self._waiting,
            opener=opener,
        )
        self.inference_s: float | None = None
        self._loaded: bytes | None = None  # the input downloaded last (a repeated window downloads it again)
        self.windows: list[_Window] = []  # the measured windows
        self.other_windows: list[_Window] = []  # calibration / probe inferences
        self.stream_truth: StreamTruth | None = None

    @property
    def emon_acquires(self) -> bool:
        """The EMON measures energy (energy mode); in the streaming performance
        mode it only supplies the DUT, if it is there at all."""
        return self.emon is not None and self.opts.mode == "energy"

    def check_options(self, opts: EnergyOptions) -> None:
        super().check_options(opts)
        if opts.mode not in ("energy", "performance"):
            raise RunnerError(f"mode must be energy or performance (streaming), got {opts.mode!r}")
        if opts.mode == "energy" and not opts.emon_port:
            raise RunnerError("energy mode needs --emon-port (the LPM01A)")
        if opts.windows <= 0:
            raise RunnerError("--windows must be > 0")
        if opts.interface is not None and opts.interface not in INTERFACES:
            raise RunnerError(f"--interface must be one of {', '.join(INTERFACES)}, got {opts.interface!r}")
        if opts.dut_baud is not None and opts.dut_baud <= 0:
            raise RunnerError("--dut-baud must be > 0")
        lo, hi = 1.8, 3.3
        if opts.voltage is not None and not lo <= opts.voltage <= hi:
            raise RunnerError(f"--voltage must be within {lo:g}-{hi:g} V (the LPM01A's range), got {opts.voltage:g}")

    def _waiting(self) -> None:
        self._tick()
        if self.emon_acquires:
            self.emon.check()  # raises when the EMON went silent

    def dataset_note(self, ds: Dataset) -> str:
        if isinstance(ds, StreamTruth):
            return f"truth file {ds.labels_path}: {len(ds.entries)} file(s), first {ds.entries[0].wav_file}"
        return f"dataset {ds.labels_path}: {len(ds.entries)} files"

    def load_dataset(self, model: ModelInfo):
        if model.name in STREAMING_MODELS:
            self.stream_truth = load_truth(Path(self.opts.dataset), model, self.opts.truth)
            return self.stream_truth
        if self.opts.mode != "energy":
            raise DeviceError(
                f"the DUT behind the interface board reports {model.name}: performance mode through the interface "
                f"board is the streaming-wakeword procedure (sww01); run {model.name} with --port on its own port"
            )
        if self.opts.truth is not None:
            raise RunnerError(f"--truth is for the streaming-wakeword DUT (sww01); this one is {model.name}")
        return super().load_dataset(model)

    def close_devices(self) -> None:
        try:
            if self.emon is not None:
                self.emon.release()
        finally:
            self.io.close()
            if self.emon is not None:
                self.emon.close()

    def finish(self) -> None:
        try:
            if self.stream_truth is not None:
                self.save_stream_plot()
            else:
                self.save_trace()
        except Exception as exc:
            self.record["energy_trace_error"] = f"{type(exc).__name__}: {exc}"
            self.log.write("runner", f"saving the trace failed: {exc}")

    # -- bench -------------------------------------------------------------------------
    def setup_bench(self) -> None:
        opts = self.opts
        if self.emon is not None:
            self.emon.open()
            self.emon.connect()
            self.record["emon"].update({"board_id": self.emon.board_id, "firmware": self.emon.version})
            self.emon.configure(self.voltage, SAMPLE_RATE_HZ)
            self.log.write("runner", f"EMON: LPM01A {self.emon.board_id} (firmware {self.emon.version}), {self.voltage:g} V, "
                           f"{SAMPLE_RATE_HZ} Hz energy samples")
        self.io.open()
        self.io.sync()
        kind = self.io.identify()
        self.record["interface"] = kind
        self.record["io_manager"] = {"name": self.io.name, "version": self.io.version}
        self.log.write("runner", f"IO manager: {kind} ({self.io.name!r}{', version ' + self.io.version if self.io.version else ''})")
        if self.streaming and kind != "h573":
            raise DeviceError(
                f"the streaming-wakeword procedure needs the STM32H573I-DK interface board (it plays the audio); "
                f"{opts.io_port} is the {kind} IO manager"
            )
        if self.emon is not None:
            self.emon.power(True)
        if kind == "arduino":
            banner = self.io.wait_dut_ready(max(3.0, opts.timeout))
            if banner is None:
                self.warn(
                    f"no boot banner from the DUT through the IO manager within {max(3.0, opts.timeout):g} s of "
                    "'pwr on' (is the DUT supplied by the EMON?)"
                )
            else:
                self.record["dut"]["banner"] = banner
                modes = [ln for ln in banner if ln.startswith("m-timestamp-mode-")]
                if modes and modes[-1] != "m-timestamp-mode-energy":
                    raise DeviceError(
                        f"the DUT booted with '{modes[-1]}': energy mode needs the firmware built for energy mode "
                        "(m-timestamp-mode-energy, 9600 baud, GPIO timestamps)"
                    )
        else:
            time.sleep(1.0)  # the DUT boots; its banner goes to the H573's queue
            baud = opts.dut_baud or (SWW_DUT_BAUD if self.streaming else DUT_ENERGY_BAUD)
            self.record["dut_baud"] = baud
            self.io.reset_dut_side(baud)

    def identify(self) -> ModelInfo:
        self.setup_bench()
        self.io.take_reboot()  # the banner of the power-on is no reset
        name = profile = model = None
        for attempt in range(2):
            try:
                name = parse_name(self.io.dut("name"))
                profile, model = parse_profile(self.io.dut("profile"))
            except DeviceError as exc:
                if attempt:
                    if not self.streaming and not self.opts.dut_baud:
                        raise type(exc)(
                            f"{exc}. If the DUT runs the streaming-wakeword firmware (sww01, 115200 baud), say so "
                            "with --truth sww_..._test.json (or --dut-baud 115200)"
                        ) from None
                    if self.streaming and not self.opts.dut_baud:
                        raise type(exc)(
                            f"{exc}. The reference sww01 firmware talks at 115200 baud; a vendor's may not (ST's "
                            "energy build of its NUCLEO-L4R5ZI-P submission, v1.3: 9600): give it with --dut-baud"
                        ) from None
                    raise
                continue
            if model is not None:
                break
            self.log.write("runner", "no 'm-model-[...]' in the answer to 'profile'; asking again")
        self.record["dut"].update({"name": name, "profile": profile, "model": model})
        self.log.write("runner", f"DUT: name {name!r}, profile {profile!r}, model {model!r}")
        if model is None:
            raise DeviceError(
                f"the DUT behind the IO manager on {self.opts.io_port} did not report its model "
                "(no 'm-model-[...]' line in the answer to 'dut profile')"
            )
        info = MODELS.get(model) or STREAMING_MODELS.get(model)
        if info is None:
            raise DeviceError(
                f"the DUT reports model {model!r}, which is not an MLPerf Tiny closed-division model "
                f"({', '.join([*MODELS, *STREAMING_MODELS])})"
            )
        return info

    # -- edges -----------------------------------------------------------------------------
    def collect_edges(self, first: int, want: int, what: str) -> list[Event]:
        """The EMON events from index ``first`` on, once ``want`` of them are in
        (the command that makes them has completed on the IO manager)."""
        emon = self.emon
        try:
            if emon.wait_events(first + want, wall_limit=0.0):
                return emon.events(first)
            supply = emon.command("pwr get")  # a point in the stream after the command's end
            mark = emon.sample_count
            grace = int(EDGE_GRACE_S * emon.rate_hz)
            found = emon.wait_events(first + want, until_sample=mark + grace)
        except EmonError as exc:
            raise EmonError(f"{what}: waiting for the timestamp edges: {exc}") from None
        if not found:
            got = emon.events(first)
            seen = ", ".join(f"event {e.number} at {e.sample / emon.rate_hz:.3f} s" for e in got) or "none"
            raise EdgeError(
                f"{what}: the EMON on {self.opts.emon_port} reported {len(got)} of the {want} timestamp "
                f"edge{'s' if want > 1 else ''} it should have seen on D7 (seen: {seen}; stream read up to "
                f"{emon.sample_count / emon.rate_hz:.3f} s, {EDGE_GRACE_S:g} s past the command's end). "
                + ("The EMON's supply output is off. " if supply.strip() == "off" else "")
                + "Check the wire from the DUT's timestamp GPIO to the EMON's D7 and that the DUT runs the "
                "energy-mode firmware"
            )
        return emon.events(first)

    def timed_infer(self, data: bytes | None, what: str, iterations: int, warmups: int) -> tuple[_Window, list[float]]:
        """Download ``data`` (None: what was downloaded last) and run ``infer
        N W``; the window between its two edges. A garbled or lost exchange
        is repeated after a resync (once); one the DUT's reset cut short is
        repeated after identifying the DUT again (up to ``RESETS`` times)."""
        if data is not None:
            self._loaded = data
        attempt = resets = 0
        while True:
            try:
                return self._timed_infer(data, what, iterations, warmups)
            except (ProtocolError, DeviceError, EdgeError) as exc:
                if isinstance(exc, EmonError) or getattr(exc, "port_gone", False):
                    raise
                if self.io.take_reboot() and resets < RESETS:
                    resets += 1
                    self.recovered(what, exc, f"the DUT reset (its boot banner came back); identifying it again and "
                                              f"repeating ({resets}/{RESETS})")
                    self._after_reset(what)
                    data = self._loaded
                    continue
                # a garbled answer, a lost line, a lost edge: worth one more try
                transient = isinstance(exc, (ProtocolError, DeviceTimeout, EdgeError)) and getattr(exc, "transient", True)
                if not transient or attempt >= RETRIES:
                    if isinstance(exc, ProtocolError):
                        raise DeviceError(f"{what}: {exc}") from None
                    raise
                attempt += 1
                self.recovered(what, exc, f"resynchronising the IO manager and repeating ({attempt}/{RETRIES})")
                self.io.sync()
                if self.io.take_reboot() and resets < RESETS:
                    resets += 1
                    self._after_reset(what)
                data = self._loaded

    def _after_reset(self, what: str) -> None:
        """The DUT rebooted: clear what the interface board queued of its
        banner, then check it is still the same DUT."""
        self.io.drain(quiet=0.5, limit=5.0)  # the rest of the banner, while the DUT boots
        if self.io.kind == "h573":
            self.io.reset_dut_side()  # its DUT queue holds the (cut) banner: answers would lag by one
        before = self.record["dut"].get("model")
        model = None
        for _ in range(3):  # a banner line still on its way comes first
            try:
                _, model = parse_profile(self.io.dut("profile"))
            except DeviceError as exc:
                raise DeviceError(f"{what}: identifying the DUT again after its reset: {exc}") from None
            if model is not None:
                break
        if model != before:
            raise DeviceError(f"{what}: after its reset the DUT reports model {model!r}, not {before!r}")
        self.io.take_reboot()

    def recovered(self, what: str, error: Exception, action: str) -> None:
        """Note a recovery in the log and in ``results.json``."""
        self.log.write("runner", f"{what}: {error}; {action}")
        self.record.setdefault("recoveries", []).append({"what": what, "error": str(error), "action": action})

    def _timed_infer(self, data: bytes | None, what: str, iterations: int, warmups: int) -> tuple[_Window, list[float]]:
        if data is not None:
            self.download(data, what)
        first = self.emon.event_count
        per = self.inference_s if self.inference_s else FIRST_INFERENCE_LIMIT_S
        limit = self.opts.timeout

        def gap(line: str) -> float | None:
            if line.startswith("m-warmup-start-") and warmups:
                return limit + 2 * per * warmups
            if line.startswith("m-infer-start-"):
                return limit + 2 * per * iterations
            return None

        try:
            lines = self.io.dut(f"infer {iterations} {warmups}", gap=gap)
            results, notes = parse_energy_infer(lines, iterations, warmups)
        except ProtocolError as exc:
            raise ProtocolError(f"{what}: {exc}", transient=exc.transient) from None
        except DeviceError as exc:
            raise _again(exc, f"{what}, 'infer {iterations} {warmups}': {exc}") from None
        for n in notes:
            self.warn(n)
        events = self.collect_edges(first, 2, f"{what}, 'infer {iterations} {warmups}'")
        extra = len(events) - 2
        if extra:
            self.warn(
                f"{what}: the EMON reported {len(events)} timestamp edges for one inference loop; using the last two"
            )
        return _Window(events[-2], events[-1], extra), results

    def download(self, data: bytes, what: str) -> None:
        try:
            check_db_load(self.io.dut(f"db load {len(data)}"), len(data))
            cmds = db_commands(data, DB_CHUNK_BYTES)
            for i, cmd in enumerate(cmds):
                check_db_chunk(self.io.dut(cmd), last=i == len(cmds) - 1)
        except ProtocolError as exc:
            raise ProtocolError(f"{what}: downloading {len(data)} bytes: {exc}", transient=exc.transient) from None
        except DeviceError as exc:
            raise _again(exc, f"{what}: downloading {len(data)} bytes: {exc}") from None

    # -- the procedure ---------------------------------------------------------------------------
    def measure(self, ds: Dataset) -> int:
        if isinstance(ds, StreamTruth):
            return StreamRun(self, ds).measure()
        opts = self.opts
        rate = self.emon.rate_hz
        entries = ds.entries
        picks: list[Entry] = [entries[i % len(entries)] for i in range(opts.windows)]
        if len(entries) < opts.windows:
            self.log.write("runner", f"{ds.labels_path} lists {len(entries)} inputs; the windows reuse them in turn")
        energy = self.record.setdefault("energy", {})
        energy.update({"windows": [], "warmups": opts.warmup})

        self.emon.start()
        self.log.write("runner", "EMON acquisition started")
        # the wiring check: one lone edge
        first = self.emon.event_count
        self.io.dut("timestamp")
        lone = self.collect_edges(first, 1, "'dut timestamp' (the check of the timestamp wire)")
        energy["timestamp_check_s"] = lone[-1].sample / rate

        data0 = picks[0].input_bytes(picks[0].read(), 0)
        if opts.iterations is None:
            w1, _ = self.timed_infer(data0, f"calibration with {picks[0].file}", 1, 0)
            single_us = int(round(w1.runtime_s(rate) * 1e6))
            n2 = metrics.second_calibration_iterations(max(1, single_us))
            w2, _ = self.timed_infer(None, f"calibration with {picks[0].file}", n2, 0)
            multi_us = int(round(w2.runtime_s(rate) * 1e6))
            cal = metrics.Calibration(single_us, n2, multi_us)
            iterations = metrics.pick_iterations(cal)
            self.other_windows += [w1, w2]
            energy["calibration"] = {
                "file": picks[0].file,
                "infer_1_s": w1.runtime_s(rate),
                "iterations": n2,
                "infer_n_s": w2.runtime_s(rate),
                "inference_us": cal.inference_us,
                "overhead_us": cal.overhead_us,
                "target_window_s": metrics.TARGET_WINDOW_S,
                "picked_iterations": iterations,
            }
            self.inference_s = cal.inference_us / 1e6
            self.log.write(
                "runner",
                f"calibration (EMON edges): {cal.inference_us:.0f} us an inference; N = {iterations} for a "
                f"{metrics.TARGET_WINDOW_S:g} s window",
            )
        else:
            iterations = opts.iterations
            w1, _ = self.timed_infer(data0, f"timing probe with {picks[0].file}", 1, 0)
            self.other_windows.append(w1)
            energy["timing_probe_s"] = w1.runtime_s(rate)
            self.inference_s = max(w1.runtime_s(rate), 1.0 / rate)
        energy["iterations"] = iterations
        self.write_json(force=True)

        self.progress = Progress(
            f"{ds.model.name} energy", opts.windows * iterations, self.stream, enabled=opts.progress
        )
        self.progress.draw(force=True)
        per_inf: list[float] = []
        thr: list[float] = []
        problems: list[str] = []
        for w, entry in enumerate(picks, start=1):
            what = f"window {w} ({entry.file})"
            data = entry.input_bytes(entry.read(), 0)
            self.progress.expect(iterations, (self.inference_s or 0) * (iterations + opts.warmup))
            win, results = self.timed_infer(data, what, iterations, opts.warmup)
            self.progress.advance(iterations)
            self.windows.append(win)
            i0, i1 = win.start.sample, win.end.sample
            energy_uj = float(self.emon.samples(i0, i1).sum()) * 1e6
            runtime = win.runtime_s(rate)
            power_uw = energy_uj / runtime if runtime > 0 else float("nan")
            uj = energy_uj / iterations
            tput = iterations / runtime if runtime > 0 else float("inf")
            wprob = metrics.window_problems(iterations, int(round(runtime * 1e6)))
            problems += [f"window {w} {p}" for p in wprob]
            per_inf.append(uj)
            thr.append(tput)
            energy["windows"].append(
                {
                    "window": w,
                    "file": entry.file,
                    "iterations": iterations,
                    "warmups": opts.warmup,
                    "start_event": win.start.number,
                    "end_event": win.end.number,
                    "start_sample": i0,
                    "end_sample": i1,
                    "start_s": i0 / rate,
                    "end_s": i1 / rate,
                    "runtime_s": runtime,
                    "energy_uj": energy_uj,
                    "power_mw": power_uw / 1000.0,
                    "uj_per_inference": uj,
                    "throughput": tput,
                    "extra_edges": win.extra,
                    "valid": not wprob,
                    "problems": wprob,
                    "results": results,
                }
            )
            self.text.energy_window(w, i0 / rate, runtime, energy_uj, power_uw, uj)
            self.log.write(
                "runner",
                f"{what}: {iterations} inferences in {runtime:.3f} s (edges at {i0 / rate:.3f} s and {i1 / rate:.3f} s), "
                f"{energy_uj:.3f} uJ, {power_uw / 1000:.3f} mW, {uj:.3f} uJ/inf.",
            )
            self.write_json(force=True)
        self.progress.finish()

        self.emon.stop()
        self.log.write("runner", "EMON acquisition stopped")
        problems += self.check_losses(energy["windows"])
        if opts.windows != metrics.WINDOWS:
            problems.append(f"{opts.windows} windows measured; energy mode requires exactly {metrics.WINDOWS}")
        med = float(statistics.median(per_inf))
        med_thr = float(statistics.median(thr))
        energy.update(
            {
                "median_uj_per_inference": med,
                "median_throughput": med_thr,
                "valid": not problems,
                "problems": problems,
            }
        )
        self.text.energy_median(med, problems)
        for w, row in enumerate(energy["windows"], start=1):
            self.text.window(w, iterations, int(round(row["runtime_s"] * 1e6)), row["throughput"], row["problems"])
        self.text.median(med_thr, problems)
        runtimes = [r["runtime_s"] for r in energy["windows"]]
        self.summary = [
            f"{ds.model.name} energy on {opts.io_port} + {opts.emon_port} at {self.voltage:g} V: median "
            f"{med:.3f} uJ/inf. ({opts.windows} windows of {iterations} inferences, "
            f"{min(runtimes):.3f}-{max(runtimes):.3f} s, {med_thr:.3f} inf./sec.)"
        ]
        if problems:
            self.summary.append("NOT VALID for submission: " + "; ".join(problems))
            return EXIT_INVALID
        return EXIT_OK

    def check_losses(self, rows: list[dict]) -> list[str]:
        """Once the acquisition has ended: the samples each window lost on the
        way from the EMON (its ``TimeStamp`` records against the samples
        received) and whether its two edges are consecutive events. Noted in
        the window's row; a window that lost more than the EnergyRunner allows,
        or whose edges are not consecutive, is not valid."""
        problems: list[str] = []
        for row in rows:
            i0, i1 = row["start_sample"], row["end_sample"]
            lost, unreadable = self.emon.losses(i0, i1)
            row["samples_lost"], row["unreadable_lines"] = lost, unreadable
            wprob = metrics.emon_loss_problems(i1 - i0, lost, unreadable)
            if row["end_event"] != row["start_event"] + 1:
                wprob.append(
                    f"its edges are the EMON's events {row['start_event']} and {row['end_event']}: the line of an "
                    "edge between them was lost, so the window may not be the inference loop"
                )
            if lost or unreadable:
                self.log.write(
                    "runner",
                    f"window {row['window']}: {lost} EMON sample(s) lost, {unreadable} unreadable line(s) around its "
                    f"{i1 - i0} samples (the EMON's TimeStamp records against the samples received)",
                )
            if wprob:
                row["problems"] = row["problems"] + wprob
                row["valid"] = False
                problems += [f"window {row['window']} {p}" for p in wprob]
        return problems

    # -- the trace -----------------------------------------------------------------------------
    def save_stream_plot(self) -> None:
        """Streaming energy run: ``energy_inf_000.png`` (the file the
        submission checker requires in a sww energy folder; no other trace
        file may be there)."""
        if not self.emon_acquires or not self.opts.plot:
            return
        samples = self.emon.samples()
        if not len(samples):
            return
        stream = self.record.get("stream", {})
        rate = float(self.emon.rate_hz)
        try:
            plot_stream(self.out / SWW_PLOT_FILE, samples, rate, self.emon.events(), stream,
                        f"sww01 energy run at {self.voltage:g} V: {stream.get('wav_file', '')}")
            stream["plot"] = SWW_PLOT_FILE
        except Exception as exc:  # a plot must never cost the results
            stream["plot_error"] = f"{type(exc).__name__}: {exc}"
        self.record["energy_trace"] = {"samples": int(len(samples)), "rate_hz": rate, "duration_s": len(samples) / rate,
                                       "edges": len(self.emon.events())}

    def save_trace(self) -> None:
        """``trace1-energy.bin``, ``trace1-timestamps.json``, the PNG, and the
        trace's levels in ``results.json`` (whatever was acquired)."""
        from emulator.power.trace import levels, plot_trace, trace_from_samples, write_timestamps, write_trace

        rate = float(self.emon.rate_hz)
        samples = self.emon.samples()
        if not len(samples):
            return
        events = self.emon.events()
        trace = trace_from_samples(samples, rate)
        write_trace(self.out / TRACE_FILE, trace)
        stamps = [e.sample / rate for e in events]
        write_timestamps(self.out / TIMESTAMPS_FILE, stamps)
        meas = [(w.start.sample / rate, w.end.sample / rate) for w in self.windows]
        info = {
            "file": TRACE_FILE,
            "timestamps_file": TIMESTAMPS_FILE,
            "samples": int(len(samples)),
            "rate_hz": rate,
            "duration_s": len(samples) / rate,
            "edges": len(stamps),
            "windows": meas,
            "calibration_windows": [(w.start.sample / rate, w.end.sample / rate) for w in self.other_windows],
        }
        busy = meas + info["calibration_windows"]
        if meas:
            try:
                info["idle_mw"] = levels(trace, sorted(busy)).idle_mw
                info["inference_mw"] = levels(trace, meas).inference_mw
            except ValueError as exc:
                info["levels_error"] = str(exc)
        if self.opts.plot:
            model = self.record.get("dut", {}).get("model") or "DUT"
            rows = self.record.get("energy", {}).get("windows", [])
            labels = [
                f"W{r['window']}\n{r['uj_per_inference']:,.1f} µJ/inf\n{r['power_mw']:.2f} mW" for r in rows
            ]
            partial = len(meas) < self.opts.windows
            note = f"partial run: it stopped after {len(meas)} of {self.opts.windows} windows" if partial else None
            try:
                plot_trace(
                    trace,
                    self.out / PLOT_FILE,
                    timestamps=stamps,
                    windows=meas,
                    title=f"{model} energy run at {self.voltage:g} V: power, {len(meas)} of "
                    f"{self.opts.windows} windows shaded, energy per inference above each",
                    window_labels=labels if len(labels) == len(meas) else None,
                    note=note,
                )
                info["plot"] = PLOT_FILE
                if note:
                    info["plot_note"] = note
            except Exception as exc:  # a plot must never cost the results
                info["plot_error"] = f"{type(exc).__name__}: {exc}"
        self.record["energy_trace"] = info


def run_energy(opts: EnergyOptions) -> RunOutcome:
    """Run the energy procedure; never raises :class:`RunnerError` past setup."""
    return _EnergyRun(opts).execute()


# --------------------------------------------------------------------------
# command line


def energy_options_from_cli(
    io_port: str | None,
    emon_port: str | None,
    dataset: Path,
    out: Path,
    interface: str | None,
    voltage: float | None,
    iterations: int | None,
    warmup: int,
    windows: int,
    timeout: float,
    verbose: bool,
    no_progress: bool,
    *,
    mode: str = "energy",
    truth: str | None = None,
    dut_baud: int | None = None,
    port_wait_s: float = PORT_APPEAR_S,
) -> EnergyOptions:
    missing = [name for name, v in (("--io-port", io_port), ("--emon-port", emon_port)) if not v]
    if missing and mode == "energy":
        raise RunnerError(
            f"energy mode needs {' and '.join(missing)}: the IO manager's port and the EMON's (LPM01A) port"
        )
    iface = None if interface in (None, "", "auto") else interface.strip().lower()
    return EnergyOptions(
        io_port=io_port,
        emon_port=emon_port,
        dataset=dataset,
        out=out,
        interface=iface,
        voltage=voltage,
        iterations=iterations,
        warmup=warmup,
        windows=windows,
        timeout=timeout,
        verbose=verbose,
        progress=not no_progress,
        mode=mode,
        truth=truth,
        dut_baud=dut_baud,
        port_wait_s=port_wait_s,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m runner.energy --io-port P --emon-port P --dataset D --out O``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m runner.energy", description="MLPerf Tiny energy mode (IO manager + LPM01A)")
    ap.add_argument("--io-port", required=True)
    ap.add_argument("--emon-port", required=True)
    ap.add_argument("--dataset", "-d", type=Path, required=True)
    ap.add_argument("--out", "-o", type=Path, required=True)
    ap.add_argument("--interface", choices=("auto",) + INTERFACES, default="auto")
    ap.add_argument("--voltage", type=float, default=None)
    ap.add_argument("--truth", default=None)
    ap.add_argument("--dut-baud", type=int, default=None)
    ap.add_argument("--iterations", "-n", type=int)
    ap.add_argument("--warmup", "-w", type=int, default=1)
    ap.add_argument("--windows", type=int, default=metrics.WINDOWS)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--verbose", "-v", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    try:
        opts = energy_options_from_cli(
            a.io_port, a.emon_port, a.dataset, a.out, a.interface, a.voltage, a.iterations, a.warmup,
            a.windows, a.timeout, a.verbose, a.no_progress, truth=a.truth, dut_baud=a.dut_baud,
        )
        outcome = run_energy(opts)
    except RunnerError as exc:
        print(f"tinytwin run: {exc}", file=sys.stderr)
        return EXIT_ERROR
    report_outcome(outcome, a.out, lambda text, err: print(text, file=sys.stderr if err else sys.stdout, flush=True))
    return outcome.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
