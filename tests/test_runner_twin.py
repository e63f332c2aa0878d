"""Runner end to end against the twin: real pseudo-terminals, the tinytwin://
URL scheme, real pyserial; the reference board's figures; all four models in
both modes (generated datasets); bad input and line faults.

Fault injection uses :class:`PtyProxy`: a second real pty between the runner
and the twin's pty that forwards bytes and can drop, add or rewrite them, as
a flaky cable or a different firmware would.
"""
from __future__ import annotations

import json
import os
import re
import select
import shutil
import threading
import time
import tty
import uuid
from pathlib import Path

import pytest

from helpers import wait_booted
import serial

from runner.session import EXIT_ERROR, EXIT_INVALID, EXIT_OK, RunOptions, run

CHECKER_PERF = r".* Median throughput is\s+([\d\.]+) inf\./sec\..*"
CHECKER_TOP1 = r".* Top[- ]1%?\s?[:=] ([\d\.]+).*"
CHECKER_AUC = r".* AUC\s?[:=] ([\d\.]+).*"
#: the MLPerf Tiny v0.5 reference results of the NUCLEO-L4R5ZI (reference.csv)
BOARD_MEDIAN_IPS = {"kws01": 5.497, "ic01": 1.420, "vww01": 1.665, "ad01": 99.487}


def checker_value(folder: Path, pattern: str) -> str | None:
    value = None
    for line in (folder / "results.txt").read_text().splitlines(keepends=True):
        m = re.match(pattern, line)
        if m:
            value = m.group(1)
    return value


def assert_result_folder(folder: Path) -> dict:
    """The folder holds exactly what the checker (v1.4, mlcommons runner layout) wants."""
    assert sorted(p.name for p in folder.iterdir()) == ["log.txt", "results.json", "results.txt"]
    record = json.loads((folder / "results.json").read_text())
    log = (folder / "log.txt").read_text().splitlines()
    assert all(re.match(r"^\d{5}\.\d{3} (host|dut|runner): ", ln) for ln in log)
    assert any(ln.endswith("host: name%") for ln in log) and any(ln.endswith("dut: m-ready") for ln in log)
    return record


# -- twins ---------------------------------------------------------------------------------------


@pytest.fixture
def twin(models_dir):
    """Start in-process twins, each behind a real pty; yields a factory(model, **bench options) -> device path."""
    from emulator.benches.dut import build_dut_bench
    from emulator.transport import PtyPort

    benches = []

    def start(model: str, **kw):
        kw.setdefault("speed", "fast")
        bench = build_dut_bench(model, models_dir=models_dir, **kw)
        port = bench.bridge.attach(PtyPort("dut", initial_baud=bench.dut.uart.baud))
        bench.twin.start()
        benches.append(bench)
        wait_booted(bench)  # a host connecting mid-boot would see part of the banner
        return port.device

    yield start
    for b in benches:
        b.twin.close()


@pytest.fixture
def url(models_dir):
    """tinytwin:// URLs of fresh in-process twins."""
    import emulator.urlhandler  # noqa: F401
    from emulator.urlhandler.protocol_tinytwin import shutdown_all

    def make(model: str, **opts) -> str:
        opts = {"models_dir": str(models_dir), "speed": "fast", "instance": uuid.uuid4().hex, **opts}
        return f"tinytwin://{model}?" + "&".join(f"{k}={v}" for k, v in opts.items())

    yield make
    shutdown_all()


def go(port: str, mode: str, dataset: Path, out: Path, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("timeout", 5.0)
    return run(RunOptions(port=port, mode=mode, dataset=Path(dataset), out=Path(out), **kw))


# -- fault-injecting pty proxy ------------------------------------------------------------------


class PtyProxy:
    """runner <-> [our pty] <-> proxy <-> [the twin's pty] <-> twin.

    ``to_dut(data)`` and ``to_host(line)`` may change what passes; the host
    side is handled per byte stream, the DUT side per line (``\\n``).
    """

    def __init__(self, target: str, baud: int = 115200):
        self.up = serial.Serial(target, baud, timeout=0)
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.device = os.ttyname(self.slave)
        self.to_dut = lambda data: data
        self.to_host = lambda line: line
        self.commands = 0  # '%' seen from the host
        self._line = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        up = self.up.fileno()
        while not self._stop.is_set():
            r, _, _ = select.select([self.master, up], [], [], 0.05)
            if self.master in r:
                try:
                    data = os.read(self.master, 4096)
                except OSError:
                    data = b""
                out = bytearray()
                for b in data:
                    out += self.to_dut(bytes([b]))
                    if b == ord("%"):
                        self.commands += 1
                if out:
                    self.up.write(bytes(out))
            if up in r:
                self._line += self.up.read(4096)
                while b"\n" in self._line:
                    line, self._line = self._line.split(b"\n", 1)
                    out = self.to_host(line + b"\n")
                    if out:
                        os.write(self.master, out)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.up.close()
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def proxy():
    made = []

    def make(target: str, baud: int = 115200) -> PtyProxy:
        p = PtyProxy(target, baud)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture(scope="module")
def synth_sets(tmp_path_factory, models_dir):
    """Generated datasets (labels by the model itself), small counts."""
    from runner.synth import synthesize

    root = tmp_path_factory.mktemp("synth")
    sets = {}
    for model, count, kw in [("kws01", 12, {}), ("ic01", 8, {}), ("vww01", 6, {}), ("ad01", 6, {"frames": 9})]:
        sets[model] = synthesize(model, root, count, models_dir=models_dir, seed=7, **kw)
    return root, sets


@pytest.fixture
def kws_small(shared, tmp_path):
    """The first 20 inputs of the real kws01 set (a copy the test may break)."""
    src = shared / "datasets" / "kws01"
    dst = tmp_path / "ds" / "kws01"
    dst.mkdir(parents=True)
    lines = (src / "y_labels.csv").read_text().splitlines()[:20]
    for ln in lines:
        shutil.copy(src / ln.split(",")[0], dst)
    (dst / "y_labels.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "ds"


# -- acceptance: the reference board's figures -------------------------------------------------------


@pytest.mark.slow
def test_kws01_accuracy_full_set_reproduces_the_board(shared, twin, tmp_path):
    """All 1000 inputs through a real pty: Top-1 90.1 % as the board."""
    out = tmp_path / "acc"
    t0 = time.monotonic()
    res = go(twin("kws01"), "accuracy", shared / "datasets", out)
    wall = time.monotonic() - t0
    assert res.exit_code == EXIT_OK, res.message
    assert checker_value(out, CHECKER_TOP1) == "90.1"
    auc = checker_value(out, CHECKER_AUC)
    assert auc is not None and float(auc) > 0.99
    rec = assert_result_folder(out)
    assert rec["status"] == "complete" and rec["accuracy"]["meets_target"] is True
    assert len(rec["accuracy"]["inferences"]) == 1000
    # the board's own answers for the first 200 inputs (golden log) are what the twin answered
    golden = shared / "golden" / "l4r5zi-tflm-v0.5" / "kws" / "accuracy" / "log.txt"
    board = re.findall(r"dut: m-results-\[(.*)\]", golden.read_text())
    ours = [",".join(f"{v:.3f}" for v in i["results"]) for i in rec["accuracy"]["inferences"][:200]]
    assert ours == board
    assert wall < 60, f"the full kws01 accuracy run took {wall:.1f} s"


def test_kws01_performance_matches_the_board(shared, url, tmp_path):
    """Through the tinytwin:// URL: calibrated N, 5 windows >= 10 s, median within 0.5 % of 5.497."""
    out = tmp_path / "perf"
    res = go(url("kws01"), "performance", shared / "datasets", out)
    assert res.exit_code == EXIT_OK, res.message
    rec = assert_result_folder(out)
    perf = rec["performance"]
    assert len(perf["windows"]) == 5 and perf["valid"]
    assert all(w["runtime_s"] >= 10.0 and w["iterations"] >= 10 for w in perf["windows"])
    assert [w["file"] for w in perf["windows"]] == [
        "tst_000000_Stop_7.bin", "tst_000001_Left_2.bin", "tst_000002_Right_6.bin",
        "tst_000003_Up_8.bin", "tst_000004_On_5.bin",
    ]
    median = float(checker_value(out, CHECKER_PERF))
    assert abs(median / 5.497 - 1) < 0.005, median
    assert perf["calibration"]["picked_iterations"] == perf["iterations"]


def test_kws01_performance_board_settings(shared, twin, tmp_path):
    """N = 100, W = 1 as the board's session (EnergyRunner): window and median as logged."""
    out = tmp_path / "perf100"
    res = go(twin("kws01"), "performance", shared / "datasets", out, iterations=100, warmup=1)
    assert res.exit_code == EXIT_OK, res.message
    perf = json.loads((out / "results.json").read_text())["performance"]
    assert "calibration" not in perf
    for w in perf["windows"]:
        assert abs(w["runtime_us"] / 18192386 - 1) < 0.005, w["runtime_us"]
    assert abs(float(checker_value(out, CHECKER_PERF)) / 5.497 - 1) < 0.005


# -- all four models, both modes (generated datasets) -----------------------------------------------


@pytest.mark.parametrize("model", ["kws01", "ic01", "vww01", "ad01"])
def test_every_model_accuracy_with_generated_set(model, synth_sets, twin, tmp_path):
    root, sets = synth_sets
    ds = sets[model]
    out = tmp_path / "acc"
    # no --baud: the runner finds 921600 for ad01 by itself
    res = go(twin(model), "accuracy", root, out)
    assert res.exit_code == EXIT_OK, res.message
    rec = assert_result_folder(out)
    manifest = json.loads((ds.folder / "synth.json").read_text())
    acc = rec["accuracy"]
    if model == "ad01":
        assert rec["baud"] == 921600
        # a Top-1 line as mlcommons/tiny's runner and the EnergyRunner print one
        # for ad01 (best mean of precision and recall over thresholds); the
        # checker reads ad01's AUC
        assert checker_value(out, CHECKER_TOP1) == "100.0"
        assert float(checker_value(out, CHECKER_AUC)) == pytest.approx(manifest["expected"]["auc"], abs=5e-4)
        assert manifest["expected"]["auc"] == 1.0
        assert len(acc["inferences"]) == 6 * 5  # 9 frames: 5 windows of 5 frames, stride 1
        for got, want in zip(acc["file_scores"], manifest["files"]):
            assert got["file"] == want["file"]
            assert got["score"] == pytest.approx(want["score"], rel=1e-5)
    else:
        assert checker_value(out, CHECKER_TOP1) == "100.0"
        got = [i["results"] for i in acc["inferences"]]
        want = [f["results"] for f in manifest["files"]]
        assert got == want  # both read from the same printed text


@pytest.mark.parametrize("model", ["kws01", "ic01", "vww01", "ad01"])
def test_every_model_performance_with_generated_set(model, synth_sets, url, tmp_path):
    root, _ = synth_sets
    out = tmp_path / "perf"
    res = go(url(model), "performance", root, out)
    assert res.exit_code == EXIT_OK, res.message
    rec = assert_result_folder(out)
    perf = rec["performance"]
    assert perf["valid"] and len(perf["windows"]) == 5
    assert all(10.0 <= w["runtime_s"] < 13.0 for w in perf["windows"])
    median = float(checker_value(out, CHECKER_PERF))
    assert abs(median / BOARD_MEDIAN_IPS[model] - 1) < 0.005, (model, median)


# -- robustness ------------------------------------------------------------------------------------------


def test_timer_wrap_inside_a_window(kws_small, twin, tmp_path):
    """The 32-bit µs timer wraps during the run (starts 15 s before the wrap)."""
    out = tmp_path / "wrap"
    res = go(twin("kws01", timer_start_us=2**32 - 15_000_000), "performance", kws_small, out, iterations=60)
    assert res.exit_code == EXIT_OK, res.message
    wins = json.loads((out / "results.json").read_text())["performance"]["windows"]
    assert any(w["end_us"] < w["start_us"] for w in wins), "no window straddled the wrap"
    runtimes = [w["runtime_us"] for w in wins]
    # equal up to the UART time of the first lap line, whose digit count changes (87 us a character)
    assert max(runtimes) - min(runtimes) < 1000 and runtimes[0] > 10_000_000


def test_garbage_in_the_dut_buffer_and_on_the_line_is_survived(kws_small, twin, proxy, tmp_path):
    dev = twin("kws01")
    with serial.Serial(dev, 115200, timeout=5) as s:  # a previous session left half a command
        s.write(b"%")  # (once the board has booted: bytes sent while it boots are lost)
        assert s.read_until(b"m-ready\r\n").endswith(b"m-ready\r\n")
        time.sleep(0.2)
        s.write(b"garbage 0102")
        s.flush()
    p = proxy(dev)
    noise_after = {40, 41, 200}
    count = {"n": 0}

    def to_host(line: bytes) -> bytes:
        count["n"] += 1
        if count["n"] in noise_after:
            return b"\x00\xfe\xff#!noise\r\n" + line
        return line

    p.to_host = to_host
    out = tmp_path / "acc"
    res = go(p.device, "accuracy", kws_small, out, baud=115200)
    assert res.exit_code == EXIT_OK, res.message
    assert checker_value(out, CHECKER_TOP1) is not None
    log = (out / "log.txt").read_text()
    # the leftover command, flushed by the first '%'
    assert "dut: e-[Unknown command: garbage]" in log, log[:600]
    assert "#!noise" in log


def test_a_corrupted_download_is_resynced_and_repeated(kws_small, twin, proxy, tmp_path):
    """A byte lost on the way to the DUT: it rejects the chunk; the runner resyncs and downloads again."""
    dev = twin("kws01")
    reference = tmp_path / "ref"
    assert go(dev, "accuracy", kws_small, reference, baud=115200).exit_code == EXIT_OK
    p = proxy(dev)
    state = {"dropped": 0, "pos": 0}

    def to_dut(b: bytes) -> bytes:
        # drop the 10th byte of the 30th command (a 'db <hex>' chunk of the second input)
        if p.commands == 29 and not state["dropped"]:
            state["pos"] += 1
            if state["pos"] == 10:
                state["dropped"] = 1
                return b""
        return b

    p.to_dut = to_dut
    out = tmp_path / "acc"
    res = go(p.device, "accuracy", kws_small, out, baud=115200)
    assert res.exit_code == EXIT_OK, res.message
    assert state["dropped"] == 1
    log = (out / "log.txt").read_text()
    assert "resynchronising and repeating" in log
    a = json.loads((out / "results.json").read_text())["accuracy"]
    b = json.loads((reference / "results.json").read_text())["accuracy"]
    assert [i["results"] for i in a["inferences"]] == [i["results"] for i in b["inferences"]]


def test_dut_stops_answering_mid_run(kws_small, twin, proxy, tmp_path):
    dev = twin("kws01")
    p = proxy(dev)
    # 'name%' (sync), name, profile, then 5 inputs of 18 commands (db load, 16 chunks, infer) go through
    p.to_dut = lambda b: b"" if p.commands >= 3 + 18 * 5 else b
    out = tmp_path / "acc"
    res = go(p.device, "accuracy", kws_small, out, baud=115200, timeout=0.5)
    assert res.exit_code == EXIT_ERROR
    assert p.device in res.message and "db load 490%" in res.message and "timeout" in res.message
    rec = json.loads((out / "results.json").read_text())
    assert rec["status"] == "stopped" and len(rec["accuracy"]["inferences"]) == 5
    assert checker_value(out, CHECKER_TOP1) is None
    assert "run stopped" in (out / "results.txt").read_text()
    assert "runner: run stopped: " in (out / "log.txt").read_text()


# -- bad input ----------------------------------------------------------------------------------------------


def test_missing_input_file(kws_small, twin, tmp_path):
    (kws_small / "kws01" / "tst_000007_Yes_9.bin").unlink()
    out = tmp_path / "o"
    res = go(twin("kws01"), "accuracy", kws_small, out)
    assert res.exit_code == EXIT_ERROR
    assert re.search(r"y_labels\.csv:8: input file .*tst_000007_Yes_9\.bin is missing", res.message)
    rec = json.loads((out / "results.json").read_text())
    assert rec["status"] == "stopped" and rec["dut"]["model"] == "kws01"


def test_malformed_label_line(kws_small, twin, tmp_path):
    f = kws_small / "kws01" / "y_labels.csv"
    lines = f.read_text().splitlines()
    lines[4] = "tst_000004_On_5.bin;12;5"
    f.write_text("\n".join(lines) + "\n")
    res = go(twin("kws01"), "performance", kws_small, tmp_path / "o")
    assert res.exit_code == EXIT_ERROR
    assert "y_labels.csv:5: expected 3 fields" in res.message


def test_input_of_the_wrong_size(kws_small, twin, tmp_path):
    p = kws_small / "kws01" / "tst_000003_Up_8.bin"
    p.write_bytes(p.read_bytes()[:480])
    res = go(twin("kws01"), "accuracy", kws_small, tmp_path / "o")
    assert res.exit_code == EXIT_ERROR
    assert re.search(r"y_labels\.csv:4: .*tst_000003_Up_8\.bin has 480 bytes; kws01 takes 490-byte inputs", res.message)


def test_unknown_model_reported_by_the_dut(kws_small, twin, proxy, tmp_path):
    p = proxy(twin("kws01"))
    p.to_host = lambda line: line.replace(b"m-model-[kws01]", b"m-model-[kws99]")
    out = tmp_path / "o"
    res = go(p.device, "accuracy", kws_small, out, baud=115200)
    assert res.exit_code == EXIT_ERROR
    assert p.device in res.message and "'kws99'" in res.message
    assert json.loads((out / "results.json").read_text())["dut"]["model"] == "kws99"


def test_port_that_does_not_answer(kws_small, tmp_path):
    master, slave = os.openpty()  # nobody behind it
    tty.setraw(master)
    try:
        dev = os.ttyname(slave)
        t0 = time.monotonic()
        out = tmp_path / "o"
        res = go(dev, "accuracy", kws_small, out, timeout=0.3)
        assert time.monotonic() - t0 < 5
        assert res.exit_code == EXIT_ERROR
        assert f"port {dev} does not answer" in res.message and "115200 or 921600" in res.message
        log = (out / "log.txt").read_text()
        assert log.count("host: name%") == 4  # 2 tries at each baud
        assert "host: %" not in log  # never an empty command (undefined behaviour in the reference parser)
    finally:
        os.close(master)
        os.close(slave)


def test_port_that_does_not_exist(kws_small, tmp_path):
    """Waited for --port-wait seconds (a twin started a moment ago makes its
    port a little later), then named with the fix."""
    t0 = time.monotonic()
    res = go("/dev/does-not-exist-tty", "accuracy", kws_small, tmp_path / "o", port_wait_s=0.5)
    assert res.exit_code == EXIT_ERROR and "cannot open port /dev/does-not-exist-tty" in res.message
    assert "no such file after 0.5 s" in res.message and "start the twin" in res.message
    assert time.monotonic() - t0 >= 0.5


def test_invalid_window_is_reported_with_nonzero_exit(kws_small, url, tmp_path):
    out = tmp_path / "short"
    res = go(url("kws01"), "performance", kws_small, out, iterations=20)
    assert res.exit_code == EXIT_INVALID
    assert checker_value(out, CHECKER_PERF) is None
    text = (out / "results.txt").read_text()
    assert text.count("under the 10 s minimum") >= 5
    rec = json.loads((out / "results.json").read_text())
    assert rec["status"] == "invalid" and rec["performance"]["valid"] is False


def test_dut_hangs_inside_an_inference(kws_small, twin, proxy, tmp_path):
    """Nothing after the start lap of the 2nd inference: a timeout sized from the
    inference time seen so far (not minutes), naming 'infer 1 0%' and the port."""
    p = proxy(twin("kws01"))
    laps = {"n": 0}

    def to_host(line: bytes) -> bytes:
        # count the runner's laps only: a proxy that reached the twin mid-boot
        # also relays the banner's m-lap-us line
        if line.startswith(b"m-lap-us-") and p.commands > 0:
            laps["n"] += 1
        return b"" if laps["n"] >= 3 else line

    p.to_host = to_host
    out = tmp_path / "o"
    t0 = time.monotonic()
    res = go(p.device, "accuracy", kws_small, out, baud=115200, timeout=0.5)
    assert time.monotonic() - t0 < 6
    assert res.exit_code == EXIT_ERROR
    assert "timeout: no answer to 'infer 1 0%' on " + p.device in res.message
    assert "last line received: 'm-lap-us-" not in res.message  # the hidden lap never arrived
    rec = json.loads((out / "results.json").read_text())
    assert rec["status"] == "stopped" and len(rec["accuracy"]["inferences"]) == 1
