"""Acceptance: replay the host side of a real EnergyRunner session against the
Arduino-style rig and get the same kinds of lines, in the same order.

The session is the kws01 energy run of the v0.5 reference results
(``golden/l4r5zi-tflm-v0.5/kws/energy/log.txt``). Its sequencer lines give
the commands in order; each is replayed on the device it addresses:

* ``io <cmd>``: sent as ``<cmd>%`` to the IO manager's pty, lines read until
  the command's own ack regex matches (``/dut.: m-ready/``, ``/io: m-ready/``);
* ``emon <cmd>``: these are EnergyRunner's EMON driver commands, not the
  LPM01A's. The driver's own ``emon:`` lines (``m-power[on]``,
  ``m-trace[off]``, ``m-regfile-fn[...]``) are written by the EnergyRunner,
  so they are not compared; what is replayed is the LPM01A traffic each one
  implies (see ``EMON_NATIVE``; the EnergyRunner's exact LPM01A commands are
  not in its log, these follow the PowerShield manual as the mlcommons/tiny
  runner uses it), and each must be acknowledged. The IO manager lines that
  arrive meanwhile (the DUT's boot banner after ``emon power on``) are
  compared like the others;
* EnergyRunner-internal commands reach no device: ``version``, ``bm cfg``,
  ``echo`` (its own timers), ``emon timer off`` and ``emon voltage`` (driver
  state), and ``bloadp``, which the EnergyRunner expands into ``io dut db
  load N`` and ``io dut db <hex>`` passthroughs with its log muted
  (``m-mute``/``m-unmute``): the replay sends those (26 bytes per command, as
  the mlcommons/tiny runner does behind an IO manager; the EnergyRunner's
  chunk size is not logged) with the same input files, and checks they end
  in ``m-load-done``, but there is nothing in the log to compare them with.

Numbers are abstracted (``\\d+`` -> ``N``) before comparing; the inference
results must also be exactly the model's for the loaded files (so every
byte crossed the IO manager intact). Finally the LPM01A's trace must
hold the session's 11 timestamp edges, with the inference windows as long as
the reference EMON measured them (within 1%).
"""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import serial

from emulator.emon.lpm01a import parse_ascii_stream
from emulator.benches.dut import load_engine
from emulator.benches.rig import build_rig

from test_rig import Lines, wait_for

SEQ = re.compile(r"sequencer: m-sequencing-i\[(\d+)\]-command\[(.*)\]-ack\[/(.*)/\]-ms\[(-?\d+)\]")
LINE = re.compile(r"^\d+\.\d+ (\w+): (.*)$")

#: LPM01A commands implied by the EnergyRunner's EMON commands
EMON_NATIVE = {
    "power on": ["pwr on"],
    "timer on": ["eventsrc d7 fal"],
    "trace on": ["freq 1k", "acqtime 0", "output energy", "format ascii_dec", "trigsrc sw", "start"],
    "trace off": ["stop"],
    "power off": ["pwr off"],
}
#: EMON commands the EnergyRunner answers from its own state
EMON_INTERNAL = ("timer off", "voltage")
INTERNAL = ("version", "bm", "echo")
DB_CHUNK = 26


@dataclass
class Step:
    cmd: str
    ack: str
    lines: list[tuple[str, str]] = field(default_factory=list)  # (source, text)


def parse_session(path: Path) -> list[Step]:
    steps: list[Step] = []
    for raw in path.read_text(encoding="latin-1").splitlines():
        m = LINE.match(raw)
        if not m:
            continue
        src, text = m.groups()
        if src == "sequencer":
            s = SEQ.match(f"{src}: {text}")
            if s:
                steps.append(Step(s.group(2), s.group(3)))
            continue
        if steps and src in ("io", "emon"):
            steps[-1].lines.append((src, text))
    return steps


def kind(line: str) -> str:
    return re.sub(r"\d+", "N", line)


class Emon:
    """The LPM01A's pty, read continuously (its data stream never waits)."""

    def __init__(self, path: str):
        self.port = serial.Serial(path, 3686400, timeout=0.05)
        self.data = bytearray()
        self._lock = threading.Lock()
        self._run = True
        self._thread = threading.Thread(target=self._reader, daemon=True)
        self._thread.start()

    def _reader(self) -> None:
        while self._run:
            chunk = self.port.read(65536)
            if chunk:
                with self._lock:
                    self.data += chunk

    def wait_for(self, needle: bytes, start: int, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                i = self.data.find(needle, start)
            if i >= 0:
                return i + len(needle)
            if time.monotonic() > deadline:
                raise TimeoutError(f"EMON: no {needle!r} within {timeout} s")
            time.sleep(0.005)

    def command(self, cmd: str) -> None:
        with self._lock:
            start = len(self.data)
        self.port.write(cmd.encode() + b"\n")
        self.wait_for(b"PowerShield > ack " + cmd.encode() + b"\r\n", start)

    def close(self) -> None:
        self._run = False
        self._thread.join(timeout=2)
        self.port.close()


def test_replay_kws_energy_session(golden, shared, models_dir, tmp_path):
    t0 = time.monotonic()
    steps = parse_session(golden / "kws" / "energy" / "log.txt")
    assert len(steps) == 26 and steps[0].cmd == "version" and steps[-1].cmd == "emon power off"
    rig = build_rig("kws01", models_dir=models_dir, interface="arduino", emon="lpm01a", speed="fast", dir=tmp_path)
    io = Lines(serial.Serial(rig.io_path, 115200, timeout=0.2))
    emon = Emon(rig.emon_path)
    try:
        rig.start()
        wait_for(lambda: rig.ioman.running)
        assert io.until(r"^m-ready$") == ["m-ver-IoTConnect IO Manager 1.0.3", "m-ready"]
        # the EnergyRunner's initialization before the session (script.async:
        # "emon voltage 3000", its dut-boot-mv default): take host control of
        # the LPM01A, set 3.0 V; then the user's setting, 1.8 V, which the
        # session's last "emon voltage" reports (m-voltage-mv[1800])
        emon.command("htc")
        emon.command("volt 3000m")
        emon.command("volt 1800m")

        expected: list[tuple[str, list[str]]] = []
        actual: list[tuple[str, list[str]]] = []
        results_expected: list[str] = []
        results_actual: list[str] = []
        replayed = {"io": 0, "emon": 0, "internal": 0, "bloadp": 0}
        loaded: list[str] = []
        for step in steps:
            words = step.cmd.split(" ", 1)
            head, rest = words[0], (words[1] if len(words) > 1 else "")
            ack = re.compile(step.ack)
            want = [text for src, text in step.lines if src == "io"]
            got: list[str] = []
            if head == "io":
                replayed["io"] += 1
                io.write(rest + "%")
                got = io.until(lambda ln: bool(ack.search(f"io: {ln}")), timeout=30)
            elif head == "emon":
                if rest in EMON_INTERNAL:
                    replayed["internal"] += 1
                else:
                    replayed["emon"] += 1
                    sub = "trace on" if rest.startswith("trace on") else rest
                    for native in EMON_NATIVE[sub]:
                        emon.command(native)
                    if sub == "trace off":
                        emon.wait_for(b"PowerShield > Acquisition completed", 0)
                    if "io: " in step.ack or "dut" in step.ack:  # the ack comes through the IO manager
                        got = io.until(lambda ln: bool(ack.search(f"io: {ln}")), timeout=30)
            elif head == "bloadp":
                replayed["bloadp"] += 1
                name = Path(rest.strip('"')).name
                loaded.append(name)
                data = (shared / "datasets" / "kws01" / name).read_bytes()
                assert len(data) == 490
                out = io.command(f"dut db load {len(data)}", ack=r"^\[dut\]: m-ready$")
                assert out[-2:] == ["[dut]: m-[Expecting 490 bytes]", "[dut]: m-ready"]
                for i in range(0, len(data), DB_CHUNK):
                    out = io.command("dut db " + data[i : i + DB_CHUNK].hex(), ack=r"^\[dut\]: m-ready$")
                    assert out[0] == f"m-dut-passthrough(db {data[i : i + DB_CHUNK].hex()})"
                assert out[-2:] == ["[dut]: m-load-done", "[dut]: m-ready"]
            else:
                assert head in INTERNAL, f"unexpected command in the session: {step.cmd!r}"
                replayed["internal"] += 1
            expected.append((step.cmd, [kind(x) for x in want]))
            actual.append((step.cmd, [kind(x) for x in got]))
            results_expected += [x for x in want if "m-results-" in x]
            results_actual += [x for x in got if "m-results-" in x]

        assert replayed == {"io": 10, "emon": 5, "internal": 6, "bloadp": 5}
        assert actual == expected
        # every input byte went through the IO manager intact: the DUT's
        # results are the model's for those files, run as `infer 100 1` runs
        # (1 warm-up + 100 inferences on the loaded input)
        engine = load_engine("kws01", models_dir)
        direct = []
        for name in loaded:
            engine.set_input((shared / "datasets" / "kws01" / name).read_bytes())
            engine.invoke(1)
            engine.invoke(100)
            direct.append("[dut]: " + engine.results_text().strip())
        assert results_actual == direct
        assert len(results_expected) == len(results_actual) == 5

        # the LPM01A saw the session's timestamp edges, and the windows last
        # what they lasted on the reference bench
        with emon._lock:
            stream = parse_ascii_stream(bytes(emon.data))
        assert stream.ended and stream.completed
        edges_ms = [n for _, n in stream.events]
        golden_s = json.loads((golden / "kws" / "energy" / "trace1-timestamps.json").read_text())
        assert len(edges_ms) == len(golden_s) == 11
        for k in range(1, 11, 2):
            twin_w = (edges_ms[k + 1] - edges_ms[k]) / 1000.0
            ref_w = golden_s[k + 1] - golden_s[k]
            assert twin_w == pytest.approx(ref_w, rel=0.01), (k, twin_w, ref_w)
        assert not rig.dut.powered  # "emon power off"
    finally:
        emon.close()
        io.port.close()
        rig.close()
    assert time.monotonic() - t0 < 90
