"""The DUT side of the MLPerf Tiny protocol, as the host sees it (pure code).

Everything here is free of I/O so it can be tested on its own: the model
table, how an input is cut into ``db`` commands, how the answer to
``infer N W`` is checked and read, and the wrap-safe arithmetic on the
firmware's 32-bit microsecond timestamps.

The wire protocol (reference firmware, ``internally_implemented.cpp`` of
mlcommons/tiny): a command is ASCII text terminated by ``%``; the firmware
answers with lines ending in ``\\r\\n`` and closes every command with
``m-ready``. Errors are ``e-[...]`` lines (then ``m-ready``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

#: the firmware's command buffer is 80 characters; ``db `` + 62 hex digits
#: fits, and it is what the mlcommons runner sends (31 bytes a command)
DB_CHUNK_BYTES = 31
#: the timestamp is a free-running 32-bit microsecond counter
TIMER_MODULUS = 2**32


@dataclass(frozen=True)
class ModelInfo:
    """What the host must know about a closed-division model."""

    name: str
    task: str  # the submission checker's benchmark name (ad, ic, kws, vww)
    input_bytes: int  # bytes of one input (for ad01: one sliding window)
    classes: int  # the class count in y_labels.csv
    metric: str  # "top-1" or "auc": the quality metric the checker reads
    target: float  # the closed-division quality target (checker v1.4)
    windowed: bool = False  # inputs are cut into sliding windows (ad01)


#: The four MLPerf Tiny v0.5+ closed-division models. Input sizes: kws01
#: 49x10 int8 MFCC; vww01 96x96x3 and ic01 32x32x3 uint8 images; ad01 a
#: window of 5 frames x 128 float32 log-mel bins. Targets from
#: ``tools/submission/submission_checker.py`` (``accuracy-target``).
MODELS: dict[str, ModelInfo] = {
    "kws01": ModelInfo("kws01", "kws", 490, 12, "top-1", 90.0),
    "vww01": ModelInfo("vww01", "vww", 96 * 96 * 3, 2, "top-1", 80.0),
    "ic01": ModelInfo("ic01", "ic", 32 * 32 * 3, 10, "top-1", 85.0),
    "ad01": ModelInfo("ad01", "ad", 5 * 128 * 4, 2, "auc", 0.85, windowed=True),
}

#: The streaming model (mlcommons/tiny v1.3+): no inputs are downloaded; the
#: interface board plays a WAV file and the DUT detects the wakeword itself.
#: "Input" is its 30 x 40 int8 feature window, "classes" its 3 scores; the
#: checker's limits are FP <= 8 and FN <= 8 (closed division).
STREAMING_MODELS: dict[str, ModelInfo] = {
    "sww01": ModelInfo("sww01", "sww", 30 * 40, 3, "tp-fn-fp", 8.0),
}


class ProtocolError(Exception):
    """The DUT's answer is not what the reference firmware sends.

    ``transient`` errors (a garbled or incomplete answer, line noise) may go
    away when the step is repeated after a resync; the others (the DUT's
    buffer is too small, its model takes another input size) will not.
    """

    def __init__(self, message: str, transient: bool = True):
        super().__init__(message)
        self.transient = transient


def lap_delta_us(start: int, end: int) -> int:
    """Microseconds from ``start`` to ``end`` on the wrapping 32-bit timer.

    Valid for intervals under 2^32 µs (71.6 minutes), which covers every
    window the rules allow by far.
    """
    return (int(end) - int(start)) % TIMER_MODULUS


def db_commands(data: bytes, chunk: int = DB_CHUNK_BYTES) -> list[str]:
    """The ``db <hex>`` commands that carry ``data`` (after ``db load N``)."""
    if chunk <= 0:
        raise ValueError("chunk must be > 0")
    return [f"db {data[i:i + chunk].hex()}" for i in range(0, len(data), chunk)]


def sliding_windows(size: int, width: int, stride: int) -> list[int]:
    """Start offsets of the windows of ``width`` bytes every ``stride`` bytes
    that fit in ``size`` bytes (the reference procedure for ad01: a window is
    used only when it fits entirely; a remainder shorter than a window is
    not sent)."""
    if width <= 0 or stride <= 0:
        raise ValueError("window width and stride must be > 0")
    starts = []
    start = 0
    while start + width <= size:
        starts.append(start)
        start += stride
    return starts


_RESULTS = re.compile(r"^m-results-\[(.*)\]$")
_LAP = re.compile(r"^m-lap-us-(\d+)$")
_EXPECTING = re.compile(r"^m-\[Expecting (\d+) bytes\]$")
_PROFILE = re.compile(r"^m-(profile|model)-\[(.*)\]$")
_NAME = re.compile(r"^m-name-(.+?)-\[(.*)\]$")
_TOO_BIG = re.compile(r"^Supplied buffer size (-?\d+) exceeds maximum of (\d+)$")
_TENSOR_SIZE = re.compile(r"^Input db has (-?\d+) elemented, expected (\d+)$")


def parse_results(line: str) -> list[float] | None:
    """The float vector of an ``m-results-[...]`` line (``None`` if the line
    is not one). The vww firmware ends its list with a comma; empty items are
    skipped as the reference runners do."""
    m = _RESULTS.match(line)
    if not m:
        return None
    values = []
    for item in m.group(1).split(","):
        item = item.strip()
        if not item:
            continue
        try:
            values.append(float(item))
        except ValueError:
            raise ProtocolError(f"unreadable number {item!r} in {line!r}") from None
    return values


def parse_lap(line: str) -> int | None:
    m = _LAP.match(line)
    return int(m.group(1)) if m else None


#: lines only the firmware's boot prints: one of them in an answer means the
#: DUT reset meanwhile (RESET pressed, a brown-out, a watchdog)
BOOT_LINES = ("m-init-done", "m-timestamp-mode-performance", "m-timestamp-mode-energy")


def rebooted(lines: list[str]) -> bool:
    """Whether ``lines`` hold the DUT's boot banner."""
    return any(ln in BOOT_LINES for ln in lines)


def error_lines(lines: list[str]) -> list[str]:
    """The firmware's error reports among ``lines``: ``e-[...]`` lines and the
    two un-prefixed errors the reference firmware prints."""
    return [
        ln
        for ln in lines
        if ln.startswith("e-[") or _TOO_BIG.match(ln) or _TENSOR_SIZE.match(ln)
    ]


@dataclass
class Identity:
    name: str | None = None
    profile: str | None = None
    model: str | None = None


def parse_name(lines: list[str]) -> str | None:
    """``m-name-dut-[vendor]``: returns ``dut-[vendor]`` style text (device
    name and vendor string)."""
    for ln in lines:
        m = _NAME.match(ln)
        if m:
            return f"{m.group(1)}-[{m.group(2)}]"
    return None


def parse_profile(lines: list[str]) -> tuple[str | None, str | None]:
    profile = model = None
    for ln in lines:
        m = _PROFILE.match(ln)
        if m:
            if m.group(1) == "profile":
                profile = m.group(2)
            else:
                model = m.group(2)
    return profile, model


def check_db_load(lines: list[str], nbytes: int) -> None:
    """The answer to ``db load N`` must be ``m-[Expecting N bytes]``."""
    for ln in lines:
        m = _EXPECTING.match(ln)
        if m:
            if int(m.group(1)) != nbytes:
                raise ProtocolError(f"the DUT expects {m.group(1)} bytes, not {nbytes}")
            return
        m = _TOO_BIG.match(ln)
        if m:
            raise ProtocolError(
                f"the DUT cannot take {nbytes} bytes: its buffer holds {m.group(2)} bytes",
                transient=False,
            )
    errs = error_lines(lines)
    detail = errs[0] if errs else "no 'm-[Expecting N bytes]' line"
    raise ProtocolError(f"'db load {nbytes}' was not accepted ({detail})")


def check_db_chunk(lines: list[str], last: bool) -> None:
    """The answer to one ``db <hex>`` command: nothing but ``m-load-done``
    after the last byte."""
    if not lines and not last:  # the usual answer: m-ready alone
        return
    errs = error_lines(lines)
    if errs:
        raise ProtocolError(f"the DUT rejected a db command: {errs[0]}")
    done = "m-load-done" in lines
    if last and not done:
        raise ProtocolError("no 'm-load-done' after the last byte: the DUT counted fewer bytes")
    if done and not last:
        raise ProtocolError("'m-load-done' before the last byte: the DUT counted more bytes")


@dataclass
class InferAnswer:
    """The checked answer to ``infer N W``."""

    iterations: int
    warmups: int
    start_us: int
    end_us: int
    results: list[float]
    lines: list[str] = field(default_factory=list)

    @property
    def elapsed_us(self) -> int:
        return lap_delta_us(self.start_us, self.end_us)


def _walk_markers(lines: list[str], wants: list[str], missing, *, strict: bool) -> int:
    """Find each of ``wants`` in order in ``lines``; returns the position after
    the last. ``missing(want)`` is the message when one is not there; with
    ``strict`` another ``m-warmup-start-``/``m-infer-start-`` line on the way
    is an error (the firmware ran something else)."""
    pos = 0
    n = len(lines)
    for want in wants:
        while pos < n and lines[pos] != want:
            if strict and lines[pos].startswith(("m-warmup-start-", "m-infer-start-")):
                raise ProtocolError(f"expected {want!r}, got {lines[pos]!r}")
            pos += 1
        if pos == n:
            raise ProtocolError(missing(want))
        pos += 1
    return pos


def _results_tail(lines: list[str], pos: int, missing: str) -> list[float]:
    """The last ``m-results-[...]`` vector after ``pos``."""
    results = None
    for ln in lines[pos:]:
        r = parse_results(ln)
        if r is not None:
            results = r
    if results is None:
        raise ProtocolError(missing)
    return results


def parse_infer(lines: list[str], iterations: int, warmups: int) -> InferAnswer:
    """Check the answer to ``infer N W`` against the reference firmware's
    sequence and read it: ``m-warmup-start-W``, ``m-warmup-done``,
    ``m-infer-start-N``, two ``m-lap-us-``, ``m-infer-done``,
    ``m-results-[...]``."""
    errs = error_lines(lines)
    if errs:
        m = _TENSOR_SIZE.match(errs[0])
        if m:
            raise ProtocolError(
                f"the DUT's model takes {m.group(2)} input elements but the loaded input has {m.group(1)}",
                transient=False,
            )
        raise ProtocolError(f"the DUT reported an error: {errs[0]}")
    pos = _walk_markers(
        lines, [f"m-warmup-start-{warmups}", "m-warmup-done", f"m-infer-start-{iterations}"],
        lambda want: f"missing {want!r} in the answer", strict=True,
    )
    laps = [v for v in (parse_lap(ln) for ln in lines[pos:]) if v is not None]
    if len(laps) != 2:
        raise ProtocolError(f"expected 2 'm-lap-us-' lines around the timed loop, got {len(laps)}")
    if "m-infer-done" not in lines[pos:]:
        raise ProtocolError("missing 'm-infer-done'")
    results = _results_tail(lines, pos, "missing 'm-results-[...]'")
    return InferAnswer(iterations, warmups, laps[0], laps[1], results, list(lines))


def parse_energy_infer(lines: list[str], iterations: int, warmups: int) -> tuple[list[float], list[str]]:
    """Check the energy-mode answer to ``infer N W``: ``m-warmup-start-W``,
    ``m-warmup-done``, ``m-infer-start-N``, ``m-infer-done``,
    ``m-results-[...]`` (no lap lines: the timestamps are GPIO edges).
    Returns the results and notes (lap lines: a performance-mode firmware)."""
    errs = error_lines(lines)
    if errs:
        raise ProtocolError(f"the DUT reported an error: {errs[0]}", transient=False)
    what = f"the DUT's answer to 'infer {iterations} {warmups}'"
    pos = _walk_markers(
        lines, [f"m-warmup-start-{warmups}", "m-warmup-done", f"m-infer-start-{iterations}", "m-infer-done"],
        lambda want: f"missing {want!r} in {what}: {lines!r}", strict=False,
    )
    results = _results_tail(lines, pos, f"missing 'm-results-[...]' in {what}")
    notes = []
    if any(parse_lap(ln) is not None for ln in lines):
        notes.append(
            "the DUT printed m-lap-us- lines: it runs the performance-mode firmware; energy mode needs the "
            "energy-mode build (timestamps on the GPIO)"
        )
    return results, notes
