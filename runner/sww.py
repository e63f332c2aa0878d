"""The streaming-wakeword (sww01) procedure: mlcommons/tiny's ``stream`` step,
run by our runner through the interface board (and the EMON in energy mode).

The bench (``devices_sww.yaml`` of mlcommons/tiny): the STM32H573I-DK
interface board plays a WAV file from its SD card over I2S into the DUT, and
records the DUT's detection pulses and the edges of its Processing pin; an
LPM01A supplies the DUT (3.3 V by default, as that YAML) and reports its D7
timestamp edges.

The step, as ``_ScriptStreamStep.run`` of the upstream runner (``script.py``,
read at 1afd2c9) does it; what we add is marked (+):

1. (+) ``ls`` on the interface board: the file must be on its SD card (the
   upstream runner finds out only when it crashes on an empty duty-cycle list);
2. (energy) EMON acquisition started;
3. ``dut stop`` (in case), ``dut start`` (D7 falls: the energy window opens),
   ``record_detections``, ``play <wav_file>`` (blocks for the file; the answer
   must be ``succeeded.``), 0.25 s of sleep (the upstream runner's: "the DUT
   is still occupied"; it is inside the energy window, so it is kept),
   ``dut stop`` (D7: the window closes; the activation dump), then
   ``print_detections`` and ``print_dutycycle``;
4. scoring (:mod:`runner.sww_metrics`): the upstream code's rule, which
   counts a detection up to 2 s after a wakeword ends as a true positive (its
   README says 1 s: the code is followed), 1 s debounce of false positives;
   the duty cycle of the first 100 frames; throughput = 1 / mean processing
   time (not 1 / period);
5. (energy) the window between the last two D7 edges: elapsed time, power,
   energy.

Only the first entry of the truth file is played, as the upstream step does
(the shipped truth files have one entry each).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .dataset import StreamTruth
from .errors import DatasetError, DeviceError
from .report import SEP
from .sww_metrics import DutyCycle, detection_stats, duty_cycle, parse_activations, parse_detections, parse_dutycycle

if TYPE_CHECKING:  # pragma: no cover
    from .energy import _EnergyRun

#: what the upstream runner sleeps between the end of ``play`` and ``dut stop`` (s)
SLEEP_AFTER_PLAY_S = 0.25
#: sww energy result folders hold this plot (the submission checker requires it)
SWW_PLOT_FILE = "energy_inf_000.png"
#: the DUT supply of the sww bench (mlcommons/tiny devices_sww.yaml)
SWW_VOLTAGE_V = 3.3


def _fmt(x: float) -> str:
    """Python's ``f"{x:1.5}"`` (five significant digits), as the upstream runner prints."""
    return f"{x:1.5}"


class StreamRun:
    """The stream step of one run (an :class:`runner.energy._EnergyRun` in
    energy or streaming-performance mode)."""

    def __init__(self, run: "_EnergyRun", truth: StreamTruth):
        self.run = run
        self.truth = truth
        self.energy = run.emon_acquires
        self.result: dict = {}

    def note(self, text: str) -> None:
        self.run.log.write("runner", text)

    # -- the bench -------------------------------------------------------------------------
    def check_card(self, wav: str) -> None:
        io = self.run.io
        listed = io.command("ls")
        self.result["sd_card"] = listed
        if wav in listed:
            return
        if any(n.casefold() == wav.casefold() for n in listed):
            return  # FAT compares names without regard to case
        raise DatasetError(
            f"{wav} (the 'wav_file' of {self.truth.labels_path.name}) is not on the SD card of the interface board "
            f"on {self.run.opts.io_port}; the card holds: {', '.join(listed) or 'no file'}. Copy it to the card "
            f"(the twin: `--sd-card DIR` with it), or pick another truth file with --truth"
        )

    def play(self, wav: str, length_s: float) -> None:
        timeout = length_s + 10.0 + self.run.opts.timeout  # the upstream runner allows length + 10 s
        try:
            ans = self.run.io.command(f"play {wav}", timeout=timeout)
        except DeviceError as exc:
            raise type(exc)(f"playing {wav} ({length_s:g} s): {exc}") from None
        self.result["play_answer"] = ans
        if not any(ln.strip() == "succeeded." for ln in ans):
            raise DeviceError(
                f"the interface board on {self.run.opts.io_port} did not play {wav}: {' / '.join(ans) or 'no answer'} "
                "(it plays 2-channel 16/24/32-bit WAV files with a canonical 44-byte header)"
            )

    # -- the procedure -----------------------------------------------------------------------
    def measure(self) -> int:
        from .lifecycle import EXIT_INVALID, EXIT_OK

        run = self.run
        entry = self.truth.entries[0]
        if len(self.truth.entries) > 1:
            self.note(f"{self.truth.labels_path.name} lists {len(self.truth.entries)} files; the stream step plays "
                      f"the first, {entry.wav_file}, as mlcommons/tiny's runner does")
        rec = run.record.setdefault("stream", {})
        self.result = rec
        rec.update({"truth_file": str(self.truth.labels_path), "wav_file": entry.wav_file,
                    "length_s": entry.length_sec, "detection_windows": [list(w) for w in entry.windows]})
        self.check_card(entry.wav_file)
        emon = run.emon
        first = 0
        if self.energy:
            emon.start()
            first = emon.event_count
            self.note("EMON acquisition started")
        io = run.io
        io.dut("stop")
        started = io.dut("start")
        if not any("DMA receive initiated." in ln for ln in started):
            # mlcommons/tiny's runner does not read this answer (device_under_test.py start_detecting),
            # and a vendor's firmware may print something else
            self.run.warn(f"the DUT's answer to 'start' was {started!r}, without the reference firmware's "
                      "'DMA receive initiated.'; going on, as mlcommons/tiny's runner does")
        rec_ans = io.command("record_detections")
        if not any("Now recording detections" in ln for ln in rec_ans):
            raise DeviceError(f"the interface board did not start recording detections: {rec_ans!r}")
        self.note(f"playing {entry.wav_file} ({entry.length_sec:g} s) on the interface board")
        t_play = time.monotonic()
        self.play(entry.wav_file, entry.length_sec)
        rec["play_wall_s"] = time.monotonic() - t_play
        time.sleep(SLEEP_AFTER_PLAY_S)
        stopped = io.dut("stop")
        acts, bad = parse_activations(stopped)
        rec["activations"] = acts
        rec["activations_garbled"] = bad
        if not any(ln.startswith("Streaming stopped") for ln in stopped):
            run.warn(f"the DUT's answer to 'stop' is not 'Streaming stopped.': {stopped[:3]!r}")
        try:
            dets = parse_detections(io.command("print_detections"))
            starts, stops = parse_dutycycle(io.command("print_dutycycle", ready_at_end=True))
            duty = duty_cycle(starts, stops)
        except ValueError as exc:
            raise DeviceError(f"the interface board's record: {exc}") from None
        for w in duty.warnings:
            run.warn(w)
        stats = detection_stats(dets, entry.windows) if dets else None
        if stats is None:
            raise DeviceError(
                "the interface board recorded no detection at all: the DUT pulses WW_DETECTED on the first frame "
                "after start, so the audio did not reach it or its WW_DETECTED pin is not wired to WW_DET_IN"
            )
        rec.update({
            "detections_ms": dets,
            "detections_after_sync_s": [(t - dets[0]) / 1000 for t in dets[1:]],
            "true_positives": list(stats.true_positives),
            "false_negatives": list(stats.false_negatives),
            "false_positives": list(stats.false_positives),
            "dutycycle": {"duty_cycle": duty.duty_cycle, "period_s": duty.period_s, "processing_s": duty.processing_s,
                          "throughput": duty.throughput, "start_times_s": list(duty.start_times_s),
                          "stop_times_s": list(duty.stop_times_s)},
        })
        if bad:
            self.note(f"{bad} activation value(s) arrived garbled (bytes lost on the interface board's relay)")
        energy = None
        problems: list[str] = []
        if self.energy:
            events = run.collect_edges(first, 2, "the stream step ('dut start' and 'dut stop')")
            energy = self.energy_window(events)
            emon.stop()
            self.note("EMON acquisition stopped")
            # the samples lost on the way and the edges' numbers, as for the other models' windows
            row = {k: energy[k] for k in ("start_event", "end_event", "start_sample", "end_sample")}
            row.update({"window": 1, "problems": [], "valid": True})
            problems = run.check_losses([row])
            energy.update({k: row[k] for k in ("samples_lost", "unreadable_lines", "problems", "valid")})
        self.report(stats, duty, energy, entry)
        run.write_json(force=True)
        return EXIT_INVALID if problems else EXIT_OK

    def energy_window(self, events) -> dict:
        """The window between the last two D7 edges, as the upstream runner takes it."""
        emon = self.run.emon
        rate = emon.rate_hz
        a, b = events[-2], events[-1]
        uj = float(emon.samples(a.sample, b.sample).sum()) * 1e6
        elapsed = b.sample / rate - a.sample / rate  # as upstream: the difference of the edges' times
        out = {"start_event": a.number, "end_event": b.number, "start_sample": a.sample, "end_sample": b.sample,
               "elapsed_s": elapsed, "energy_uj": uj, "power_mw": uj / elapsed * 1e-3 if elapsed > 0 else float("nan"),
               "voltage_v": emon.voltage_v, "extra_edges": len(events) - 2}
        self.result["energy"] = out
        return out

    # -- output ---------------------------------------------------------------------------
    def report(self, stats, duty: DutyCycle, energy: dict | None, entry) -> None:
        text = self.run.text
        if energy is not None:
            text.add("ulp-mlperf", "Power Edition Output")
            text.add("ulp-mlperf", "Energy data for trial 0")
            short = "" if energy["elapsed_s"] >= 10.0 else "  <<<< below minimum duration"
            text.add("ulp-mlperf", f"  Elapsed time  : {energy['elapsed_s']}{short}")
            text.add("ulp-mlperf", "  Inferences    : 1")
            if energy.get("problems"):  # not in the form the submission checker reads (check_power_dir)
                text.add("runner", f"  power (not a result): {energy['power_mw']:5.4f} mW")
            else:
                text.add("ulp-mlperf", f"  Power         : {energy['power_mw']:5.4f} mW.")
            text.add("ulp-mlperf", f"  Total Energy  : {energy['energy_uj']:.3f} uJ")
            text.add("ulp-mlperf", f"  Energy/Inf    : {energy['energy_uj']:.3f} uJ/inf")
            text.add("ulp-mlperf", SEP)
            if energy.get("problems"):  # no line for the checker to read
                text.add("ulp-mlperf", "ERROR: not valid for submission: " + "; ".join(energy["problems"]) + ".")
            else:
                text.add("ulp-mlperf", f"Median energy cost is {energy['energy_uj']:5.4f} uJ/inf.")
            text.add("ulp-mlperf", SEP)
        text.add("runner", f"== File {entry.wav_file} ({entry.length_sec:2.1f} s) ==")
        text.add("ulp-mlperf", stats.accuracy_line())
        text.add("runner", f"false negatives at (s): {list(stats.false_negatives)}; false positives at (s): "
                            f"{[round(t, 3) for t in stats.false_positives]}")
        text.add("ulp-mlperf", f"Average duty cycle: {_fmt(duty.duty_cycle)}")
        text.add("ulp-mlperf", f"Average period: {_fmt(duty.period_s)} s")
        text.add("ulp-mlperf", f"Estimated throughput: {_fmt(duty.throughput)} inf./sec.")
        n = len(stats.true_positives) + len(stats.false_negatives)
        if n != 50:
            text.add("runner", f"this truth file has {n} wakewords; the submission checker accepts only the "
                                "long test's 50 (sww_long_test.json)")
        self.run.summary = [
            f"sww01 {'energy' if energy else 'performance'} on {self.run.opts.io_port}: {entry.wav_file}: "
            f"{stats.accuracy_line()}; duty cycle {duty.duty_cycle:.4f}, period {duty.period_s * 1e3:.3f} ms"
            + (f"; {energy['power_mw']:.3f} mW over {energy['elapsed_s']:.3f} s" if energy else "")
        ]
        if energy and energy.get("problems"):
            self.run.summary.append("NOT VALID for submission: " + "; ".join(energy["problems"]))


def plot_stream(path, samples, rate_hz: float, events, stream: dict, title: str) -> None:
    """``energy_inf_000.png``: the EMON's power with the energy window and the
    D7 edges, and below it the detections against the truth windows (time
    after the sync pulse, as scored; the admissible part of each window up to
    2 s after the word)."""
    import numpy as np

    from emulator.figures import new_figure

    fig = new_figure(figsize=(12, 6.5))
    ax, bx = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 1.3]})
    p_mw = np.asarray(samples, dtype=float) * rate_hz * 1e3
    t = np.arange(len(p_mw)) / rate_hz
    ax.plot(t, p_mw, lw=0.5, color="tab:blue", label="power")
    en = stream.get("energy")
    if en:
        a, b = en["start_sample"] / rate_hz, en["end_sample"] / rate_hz
        ax.axvspan(a, b, color="tab:orange", alpha=0.15, label=f"energy window: {en['power_mw']:.2f} mW, {en['elapsed_s']:.3f} s")
    for i, e in enumerate(events):
        ax.axvline(e.sample / rate_hz, color="tab:red", lw=0.8, label="D7 edge" if i == 0 else None)
    ax.set_xlabel("time (s, EMON acquisition)")
    ax.set_ylabel("power (mW)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    for i, (w0, w1) in enumerate(stream.get("detection_windows", [])):
        bx.axvspan(w0, w1, color="tab:green", alpha=0.35, label="wakeword" if i == 0 else None)
        bx.axvspan(w1, w1 + 2.0, color="tab:green", alpha=0.12, label="admissible (word end + 2 s, the runner's code)" if i == 0 else None)
    det = stream.get("detections_after_sync_s", [])
    bx.vlines(det, 0, 1, color="k", lw=0.8, label=f"detections ({len(det)} after the sync pulse)")
    fps = stream.get("false_positives", [])
    if fps:
        bx.plot(fps, [1.05] * len(fps), "rv", label="false positive")
    bx.set_ylim(0, 1.2)
    bx.set_yticks([])
    bx.set_xlabel("time after the sync pulse (s)")
    bx.legend(loc="upper right", fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
