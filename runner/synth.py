"""Synthetic datasets in the EEMBC layout, labelled by the model itself.

The ic01, vww01 and ad01 evaluation sets are licensed; to exercise the whole
runner path (download in ``db`` chunks, sliding windows, result parsing,
Top-1/AUC) on every model without them, :func:`synthesize` makes inputs of
the right format and labels each one with what the model (the emulator's
engine, the same code the twin runs) answers for it:

* kws01 (49x10 int8 MFCC), ic01 (32x32x3 uint8), vww01 (96x96x3 uint8):
  random inputs with plausible statistics; label = argmax of the model's
  scores; three inputs are drawn per file and kept round-robin over the labels
  they got, to cover as many classes as the generator reaches (random images
  are never a "person" for vww01: its sets are all label 0). Expected Top-1:
  100 %.
* ad01 (frames x 128 float32 log-mel bins, windows of 5 frames, stride 1
  frame): half of the files a smooth "machine" spectrogram, half the same
  kind with perturbations (tonal lines, bursts); each file's score is the
  mean of its windows' scores (the runner's procedure); the files above the
  median score are labelled anomalous (1), the others normal (0). Expected
  AUC: 1.0 (score ties across the split would lower it; none occur in
  practice, and the expected value is recorded anyway).

Beside ``y_labels.csv`` a ``synth.json`` records the seed and, for every
file, the model's scores, and the expected Top-1/AUC, so a test can compare a
run with them figure by figure.

What this proves: that the runner and the twin carry inputs and results
faithfully end to end (an input changed on the way, a window dropped or
shifted, a score misread would change the figures). What it does not prove:
anything about the model's real accuracy (the labels are the model's own
answers), nor that the reference board computes the same scores (that is the
engine's bit-exactness, tested elsewhere against the board's logs).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import RunnerError
from .metrics import anomaly_auc, classification_auc, file_score, top1
from .protocol import MODELS, parse_results, sliding_windows

AD_BINS = 128
AD_FRAME_BYTES = AD_BINS * 4
AD_WINDOW_FRAMES = 5
#: classification sets: inputs drawn per file kept (to cover more classes)
CANDIDATES = 3


@dataclass
class SynthDataset:
    folder: Path
    labels_path: Path
    count: int
    labels: list[int]
    expected: dict

    def describe(self) -> str:
        counts = {}
        for lab in self.labels:
            counts[lab] = counts.get(lab, 0) + 1
        parts = ", ".join(f"label {k}: {v}" for k, v in sorted(counts.items()))
        exp = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in self.expected.items())
        return f"{parts}; expected {exp}"


def _engine(model: str, models_dir):
    from emulator.errors import TinytwinError
    from emulator.models.engine import open_engine

    try:
        return open_engine(model, models_dir=str(models_dir) if models_dir else None)
    except TinytwinError as exc:  # the engine's errors carry a user-facing message
        raise RunnerError(f"cannot open the {model} model: {exc}") from None


def _scores(engine, raw: bytes) -> list[float]:
    engine.set_input(raw)
    engine.invoke()
    text = engine.results_text().strip()
    line = text.splitlines()[-1] if text else ""
    values = parse_results(line.strip())
    if values is None:
        raise RunnerError(f"the engine printed no m-results line: {text!r}")
    return values


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], scale: int) -> np.ndarray:
    """Low-frequency noise: coarse random grid, upsampled by repetition and blurred."""
    h, w = shape[0], shape[1]
    coarse = rng.normal(size=(max(1, h // scale + 1), max(1, w // scale + 1)) + shape[2:])
    up = np.repeat(np.repeat(coarse, scale, axis=0), scale, axis=1)[:h, :w]
    k = np.ones(scale) / scale
    for axis in (0, 1):
        up = np.apply_along_axis(lambda v: np.convolve(v, k, mode="same"), axis, up)
    return up


def _image(rng: np.random.Generator, side: int) -> bytes:
    base = rng.uniform(40, 215, size=3)
    img = base + 60 * _smooth_noise(rng, (side, side, 3), max(2, side // 8))
    img += rng.normal(0, 12, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8).tobytes()


def _mfcc(rng: np.random.Generator) -> bytes:
    mean = np.array([59, 85, 83, 82, 82, 82, 82, 82, 82, 82], dtype=float)
    std = np.array([38, 6.8, 4.5, 3.4, 2.8, 2.2, 2.0, 1.8, 1.7, 1.6])
    burst = np.zeros(49)
    start = rng.integers(0, 40)
    burst[start : start + rng.integers(5, 25)] = 1.0
    x = mean + std * (rng.normal(size=(49, 10)) + 1.5 * burst[:, None] * rng.normal(size=10))
    return np.clip(np.rint(x), -128, 127).astype(np.int8).tobytes()


def _spectrogram(rng: np.random.Generator, frames: int, anomalous: bool) -> bytes:
    bins = np.arange(AD_BINS)
    profile = -10.0 - 37.0 * np.exp(-bins / 3.0) - 12.0 * (bins / AD_BINS) + rng.normal(0, 2, AD_BINS)
    x = profile + 4.0 * rng.normal(size=(frames, AD_BINS))
    x += 3.0 * _smooth_noise(rng, (frames, AD_BINS), 4)
    if anomalous:
        for _ in range(rng.integers(1, 4)):  # tonal lines
            b = rng.integers(4, AD_BINS - 4)
            x[:, b - 1 : b + 2] += rng.uniform(15, 30)
        for _ in range(rng.integers(1, 4)):  # broadband bursts
            f = rng.integers(0, max(1, frames - 3))
            x[f : f + rng.integers(1, 4), :] += rng.uniform(10, 25)
    return np.clip(x, -80.0, 10.0).astype("<f4").tobytes()


def synthesize(
    model: str,
    out: Path,
    count: int,
    *,
    models_dir=None,
    seed: int = 0,
    frames: int = 200,
    engine=None,
) -> SynthDataset:
    """Write ``count`` inputs and ``y_labels.csv`` to ``out/<model>/``."""
    info = MODELS.get(model)
    if info is None:
        raise RunnerError(f"unknown model {model!r}: one of {', '.join(MODELS)}")
    if count < 1:
        raise RunnerError("--count must be >= 1")
    if info.windowed and count < 2:
        raise RunnerError("ad01 needs at least 2 files (normal and anomalous) for the AUC to be defined")
    if info.windowed and frames < AD_WINDOW_FRAMES:
        raise RunnerError(f"--frames must be >= {AD_WINDOW_FRAMES} (one window)")
    eng = engine if engine is not None else _engine(model, models_dir)
    folder = Path(out) / model
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunnerError(f"cannot create {folder}: {exc.strerror}") from None
    rng = np.random.default_rng(seed)
    names: list[str] = []
    labels: list[int] = []
    records: list[dict] = []
    if info.windowed:
        width, stride = AD_WINDOW_FRAMES * AD_FRAME_BYTES, AD_FRAME_BYTES
        blobs, scores = [], []
        for i in range(count):
            anomalous = i % 2 == 1
            blob = _spectrogram(rng, frames, anomalous)
            wins = [_scores(eng, blob[o : o + width]) for o in sliding_windows(len(blob), width, stride)]
            if any(len(w) != 1 for w in wins):
                raise RunnerError("the ad01 engine did not answer one score per window")
            blobs.append((anomalous, blob))
            scores.append(file_score([w[0] for w in wins]))
        threshold = float(np.median(scores))
        for i, ((perturbed, blob), score) in enumerate(zip(blobs, scores)):
            label = int(score > threshold)
            name = f"{'anomaly' if label else 'normal'}_synth_{i:06d}.bin"
            (folder / name).write_bytes(blob)
            names.append(name)
            labels.append(label)
            records.append({"file": name, "label": label, "score": score, "perturbed": perturbed})
        if len(set(labels)) < 2:
            raise RunnerError("all ad01 files got the same score; try another --seed or more --count")
        lines = [f"{n},2,{lab},{width},{stride}" for n, lab in zip(names, labels)]
        expected = {"auc": anomaly_auc(scores, labels)}
    else:
        gen = {"kws01": _mfcc, "ic01": lambda r: _image(r, 32), "vww01": lambda r: _image(r, 96)}[model]
        # draw up to CANDIDATES x count inputs and keep them round-robin over the
        # labels the model gave, so that as many classes as possible are covered
        by_label: dict[int, list[tuple[bytes, list[float]]]] = {}
        for _ in range(CANDIDATES * count):
            raw = gen(rng)
            assert len(raw) == info.input_bytes
            sc = _scores(eng, raw)
            if len(sc) != info.classes:
                raise RunnerError(f"the {model} engine answered {len(sc)} scores, expected {info.classes}")
            by_label.setdefault(int(np.argmax(sc)), []).append((raw, sc))
        picked: list[tuple[bytes, list[float]]] = []
        queues = [by_label[k] for k in sorted(by_label)]
        while len(picked) < count:
            for q in queues:
                if q and len(picked) < count:
                    picked.append(q.pop(0))
        all_scores = []
        for i, (raw, sc) in enumerate(picked):
            label = int(np.argmax(sc))
            name = f"synth_{i:06d}_{label}.bin"
            (folder / name).write_bytes(raw)
            names.append(name)
            labels.append(label)
            all_scores.append(sc)
            records.append({"file": name, "label": label, "results": sc})
        lines = [f"{n},{info.classes},{lab}" for n, lab in zip(names, labels)]
        expected = {"top1": top1(all_scores, labels)}
        auc = classification_auc(all_scores, labels, info.classes)
        if auc is not None:
            expected["auc"] = auc
    labels_path = folder / "y_labels.csv"
    labels_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest = {
        "model": model,
        "seed": seed,
        "count": count,
        "frames": frames if info.windowed else None,
        "labelled_by": "the model's own answers (emulator.models.engine)",
        "expected": expected,
        "files": records,
    }
    (folder / "synth.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return SynthDataset(folder, labels_path, count, labels, expected)
