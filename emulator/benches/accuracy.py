"""An accuracy run through the twin: the DUT (performance-mode firmware, its
engine running the board's int8 arithmetic with TFLite Micro) on a simulated
serial line, fed each input of a dataset with the firmware's own commands
(``db load``, ``db <hex>``, ``infer 1 0``), its ``m-results-[...]`` line
scored against the label (top-1), as the runner's accuracy mode does.

The dataset folder has the EEMBC runner layout: the input files and
``y_labels.csv`` (``file,classes,label`` per line).
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from ..dut.device import Dut
from ..dut.timing import timing_for
from ..errors import TinytwinError
from ..hw.uart import SerialEndpoint, connect
from ..sim import MS, Twin
from .dut import load_engine

_RESULTS = re.compile(rb"m-results-\[([^\]]*)\]")
#: input bytes per ``db`` command (the runner's chunk)
CHUNK = 26


class AccuracyError(TinytwinError):
    """A dataset the accuracy run cannot use."""


def labelled_inputs(dataset_dir: str | Path, limit: int | None = None) -> list[tuple[Path, int]]:
    d = Path(dataset_dir)
    labels = d / "y_labels.csv"
    if not labels.exists():
        raise AccuracyError(f"{d} has no y_labels.csv (give a dataset folder in the EEMBC runner layout)")
    out = []
    with open(labels, newline="") as fh:
        for row in csv.reader(fh):
            if len(row) < 3 or not row[0].strip():
                continue
            out.append((d / row[0].strip(), int(row[2])))
            if limit is not None and len(out) >= limit:
                break
    if not out:
        raise AccuracyError(f"{labels} lists no inputs")
    return out


def run_accuracy(model: str, dataset_dir: str | Path, limit: int | None = None, models_dir=None,
                 backend: str = "tflm") -> dict:
    """Top-1 accuracy of ``model`` on the labelled inputs, through the twin."""
    engine = load_engine(model, models_dir, backend)
    if engine.profile.results_format == "mse":
        raise AccuracyError(f"{model}: anomaly detection is scored by AUC over normal and anomalous clips, not top-1")
    twin = Twin("fast")
    dut = Dut(twin, engine, timing_for(engine.profile.name, engine=engine))
    replies = bytearray()
    host = SerialEndpoint(twin, "host", dut.uart.baud, receiver=replies.extend)
    connect(host, dut.uart)
    twin.run_until_idle(twin.now + 500 * MS)  # boot

    def command(text: str) -> bytes:
        mark = len(replies)
        host.send(text.encode() + b"%")
        while b"m-ready\r\n" not in replies[mark:]:
            twin.env.step()
        return bytes(replies[mark:])

    size = engine.profile.input_count * engine.profile.input_elem_size
    correct = total = 0
    for path, label in labelled_inputs(dataset_dir, limit):
        data = path.read_bytes()
        if len(data) != size:
            raise AccuracyError(f"{path}: {len(data)} bytes, {model} takes {size}")
        command(f"db load {size}")
        for i in range(0, size, CHUNK):
            command("db " + data[i : i + CHUNK].hex())
        m = _RESULTS.search(command("infer 1 0"))
        if m is None:
            raise AccuracyError(f"{model}: no m-results line for {path.name}")
        # vww01 ends its list with a comma: empty items are skipped, as the runners do
        scores = [float(x) for x in m.group(1).split(b",") if x.strip()]
        correct += int(max(range(len(scores)), key=scores.__getitem__) == label)
        total += 1
    return {"model": engine.profile.name, "accuracy_top1": correct / total, "accuracy_n": total,
            "accuracy_dataset": str(dataset_dir), "accuracy_how": "through the twin (TFLM, the board's int8 arithmetic)"}
