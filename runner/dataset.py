"""Datasets in the EEMBC runner layout: ``DIR/<model>/y_labels.csv`` beside the
input files.

``y_labels.csv`` lines (EEMBC energyrunner ``datasets/README.md``):

* kws01, vww01, ic01: ``file,number_of_classes,label``
* ad01: ``file,number_of_classes(2),label(0 normal, 1 anomaly),window_width,stride``
  (bytes; each window of the file is one input)

Everything is checked before the run starts, so a 2-hour run does not stop at
input 900 for a missing file: each problem names the file and the line.
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import DatasetError
from .protocol import ModelInfo, sliding_windows

LABELS_FILE = "y_labels.csv"
#: the streaming-wakeword truth file mlcommons/tiny's tests_*.yaml name (the submission test)
SWW_DEFAULT_TRUTH = "sww_long_test.json"


@dataclass(frozen=True)
class Entry:
    file: str
    path: Path
    classes: int
    label: int
    line: int  # 1-based line number in y_labels.csv
    size: int  # bytes
    window: int | None = None  # ad01: window width (bytes)
    stride: int | None = None  # ad01: stride (bytes)

    def windows(self) -> list[int]:
        """Start offsets of the inputs this file gives (one for non-windowed models)."""
        if self.window is None:
            return [0]
        return sliding_windows(self.size, self.window, self.stride)

    def read(self) -> bytes:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise DatasetError(f"cannot read {self.path}: {exc.strerror}") from None
        if len(data) != self.size:
            raise DatasetError(f"{self.path} changed size during the run ({self.size} -> {len(data)} bytes)")
        return data

    def input_bytes(self, data: bytes, offset: int = 0) -> bytes:
        if self.window is None:
            return data
        return data[offset : offset + self.window]


@dataclass
class Dataset:
    folder: Path
    labels_path: Path
    model: ModelInfo
    entries: list[Entry]

    def __len__(self) -> int:
        return len(self.entries)

    def total_inputs(self) -> int:
        return sum(len(e.windows()) for e in self.entries)


def dataset_folder(root: Path, model: str, labels: str = LABELS_FILE) -> Path:
    """``root/<model>``; ``root`` itself when it is already the model's folder."""
    root = Path(root)
    candidate = root / model
    if (candidate / labels).is_file():
        return candidate
    if root.name == model and (root / labels).is_file():
        return root
    if not root.is_dir():
        raise DatasetError(f"dataset directory {root} does not exist")
    if not candidate.is_dir():
        raise DatasetError(
            f"no folder for model {model} in {root}: expected {candidate}/ with {labels} and the input files"
        )
    others = sorted(p.name for p in candidate.glob("*.csv"))
    raise DatasetError(f"{candidate / labels} is missing" + (f" (the folder has {', '.join(others)}: --labels)" if others else ""))


def load_dataset(root: Path, model: ModelInfo, labels: str | None = None) -> Dataset:
    """Read and check the labels file of ``model`` under ``root``:
    ``y_labels.csv``, or ``labels`` (a file name in the model's folder, e.g.
    ad01's smaller ``y_labels_alt.csv``, accepted in submissions from v1.2;
    mlcommons/tiny's runner names it with ``truth_file`` in tests_accuracy.yaml)."""
    if labels is None:
        labels = LABELS_FILE
    if not labels or Path(labels).name != labels or labels in (".", ".."):
        raise DatasetError(f"--labels {labels!r}: give a file name in the model's dataset folder, not a path")
    folder = dataset_folder(Path(root), model.name, labels)
    labels_path = folder / labels
    try:
        text = labels_path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"cannot read {labels_path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{labels_path} is not a text (UTF-8) file") from None
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    nfields = 5 if model.windowed else 3
    fmt = (
        "file,number_of_classes,label,window_width,stride"
        if model.windowed
        else "file,number_of_classes,label"
    )
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or all(not c.strip() for c in row):
            continue
        where = f"{labels_path}:{lineno}"
        fields = [c.strip() for c in row]
        if len(fields) != nfields:
            raise DatasetError(
                f"{where}: expected {nfields} fields ({fmt}) for {model.name}, got {len(fields)}: {','.join(row)!r}"
            )
        name = fields[0]
        nums = []
        for label, value in zip(fmt.split(",")[1:], fields[1:]):
            try:
                nums.append(int(value))
            except ValueError:
                raise DatasetError(f"{where}: {label} must be an integer, got {value!r}") from None
        classes, label = nums[0], nums[1]
        if classes != model.classes:
            raise DatasetError(
                f"{where}: {model.name} has {model.classes} classes, the line says {classes}"
            )
        if not 0 <= label < classes:
            raise DatasetError(f"{where}: label {label} is not in 0..{classes - 1}")
        if not name or os.sep in name or name in (".", ".."):
            raise DatasetError(f"{where}: {name!r} is not a file name in {folder}")
        if name in seen:
            raise DatasetError(f"{where}: {name} is already listed on line {seen[name]}")
        seen[name] = lineno
        path = folder / name
        if not path.is_file():
            raise DatasetError(f"{where}: input file {path} is missing")
        size = path.stat().st_size
        window = stride = None
        if model.windowed:
            window, stride = nums[2], nums[3]
            if window != model.input_bytes:
                raise DatasetError(
                    f"{where}: window width {window} bytes; {model.name} takes {model.input_bytes}-byte inputs"
                )
            if stride <= 0:
                raise DatasetError(f"{where}: stride must be > 0, got {stride}")
            if size < window:
                raise DatasetError(
                    f"{where}: {path} has {size} bytes, less than one {window}-byte window"
                )
        elif size != model.input_bytes:
            raise DatasetError(
                f"{where}: {path} has {size} bytes; {model.name} takes {model.input_bytes}-byte inputs"
            )
        entries.append(Entry(name, path, classes, label, lineno, size, window, stride))
    if not entries:
        raise DatasetError(f"{labels_path} lists no inputs")
    return Dataset(folder, labels_path, model, entries)


# ---------------------------------------------------------------------------
# streaming wakeword: DIR/sww01/<truth>.json (mlcommons/tiny runner layout)


@dataclass(frozen=True)
class StreamEntry:
    """One file of a streaming test: what the interface board plays and where
    the wakewords are (s from the start of the file)."""

    wav_file: str
    length_sec: float
    windows: tuple[tuple[float, float], ...]
    sample_rate: int | None = None


@dataclass
class StreamTruth:
    folder: Path
    labels_path: Path  # the truth JSON (named like the EEMBC labels file for the run record)
    model: ModelInfo
    entries: list[StreamEntry]

    def __len__(self) -> int:
        return len(self.entries)

    def total_inputs(self) -> int:
        return len(self.entries)


def truth_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("sww_*_test.json"))


def load_truth(root: Path, model: ModelInfo, truth: str | None = None) -> StreamTruth:
    """The truth JSON of a streaming test: ``root/<model>/<truth>`` (``truth``
    may also be a path). Without ``truth``: ``sww_long_test.json`` (the file
    mlcommons/tiny's tests_*.yaml name) if present, else the only
    ``sww_*_test.json``. Each entry needs ``wav_file``, ``length_sec`` and
    ``detection_windows`` (``[[t_start, t_stop], ...]`` in s)."""
    root = Path(root)
    folder = root / model.name if (root / model.name).is_dir() else root
    if not folder.is_dir():
        raise DatasetError(f"dataset directory {root} does not exist")
    if truth is not None:
        path = Path(truth) if (Path(truth).is_absolute() or os.sep in truth) else folder / truth
        if not path.is_file():
            have = ", ".join(p.name for p in truth_files(folder)) or "none"
            raise DatasetError(f"truth file {path} does not exist (sww_*_test.json in {folder}: {have})")
    else:
        found = truth_files(folder)
        if (folder / SWW_DEFAULT_TRUTH).is_file():
            path = folder / SWW_DEFAULT_TRUTH
        elif len(found) == 1:
            path = found[0]
        elif not found:
            raise DatasetError(
                f"no truth file in {folder}: expected sww_*_test.json (mlcommons/tiny benchmark/runner/sww_data_dir)"
            )
        else:
            raise DatasetError(
                f"{folder} holds several truth files ({', '.join(p.name for p in found)}) and no {SWW_DEFAULT_TRUTH}: "
                "pick one with --truth"
            )
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, list) or not data:
        raise DatasetError(f"{path}: a truth file is a non-empty JSON list of dicts (wav_file, length_sec, detection_windows)")
    entries = []
    for i, e in enumerate(data):
        where = f"{path}, entry {i}"
        if not isinstance(e, dict):
            raise DatasetError(f"{where}: not a JSON object")
        if "detection_windows" not in e:
            raise DatasetError(
                f"{where} has no 'detection_windows': list where the wakewords are, as [[t_start, t_stop], ...] in "
                "seconds from the start of the file; without them no detection can be scored"
            )
        name = e.get("wav_file")
        if not isinstance(name, str) or not name.strip():
            raise DatasetError(f"{where}: 'wav_file' must name the file on the interface board's SD card")
        try:
            length = float(e.get("length_sec"))
        except (TypeError, ValueError):
            raise DatasetError(f"{where}: 'length_sec' (the file's length in s) is missing or not a number") from None
        if not length > 0 or not math.isfinite(length):
            raise DatasetError(f"{where}: 'length_sec' must be > 0, got {e.get('length_sec')!r}")
        wins = []
        raw = e["detection_windows"]
        if not isinstance(raw, list):
            raise DatasetError(f"{where}: 'detection_windows' must be a list of [t_start, t_stop] pairs")
        for w in raw:
            try:
                a, b = (float(x) for x in w)
            except (TypeError, ValueError):
                raise DatasetError(f"{where}: detection window {w!r} is not a [t_start, t_stop] pair of numbers") from None
            if not a <= b:
                raise DatasetError(f"{where}: detection window {w!r} ends before it starts")
            wins.append((a, b))
        rate = e.get("sample_rate")
        entries.append(StreamEntry(name, length, tuple(wins), int(rate) if isinstance(rate, (int, float)) else None))
    return StreamTruth(folder, path, model, entries)
