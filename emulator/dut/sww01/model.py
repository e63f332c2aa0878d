"""The sww01 model, run for real: what the streaming firmware's ``th_ai_run()`` computes.

The reference firmware runs ``str_ww_ref_model.tflite`` through ST's X-CUBE-AI
runtime, whose licence forbids running it off an ST device; the twin runs the
same file through TFLite Micro (or LiteRT). Whether X-CUBE-AI's integer kernels
are bit-identical to TFLM's on this model is not known (see
``firmware_api_spec/sww01_protocol.md``).

The file is found by the project's one model resolver
(:func:`emulator.models.store.resolve_model`) and checked against the pinned
md5 of :data:`emulator.models.store.OFFICIAL`; ``tinytwin models download`` fetches it.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np

from ...models import ModelError
from ...models.backends import BACKENDS, TFLMBackend, make_backend
from ...models.modelfile import parse_model
from ...models.store import OFFICIAL, resolve_model
from .features import MODEL_INPUT_SIZE

NAME = "sww01"
#: TFLM needs 16,640 bytes for this model (measured); the firmware's X-CUBE-AI
#: build needs 10,116 bytes of activations. The twin gives TFLM room to spare.
ARENA_SIZE = 32 * 1024
OUTPUTS = 3  # classes: 0 = wakeword "marvin", 1 = silence, 2 = other


class Sww01Model:
    """The engine the protocol core calls (see :class:`emulator.dut.sww01.core.ModelEngine`)."""

    def __init__(self, data: bytes, path: str, backend: str = "tflm"):
        self.model = parse_model(data, path)
        self.path = path
        inp, out = self.model.inputs[0], self.model.outputs[0]
        probs = []
        if inp.dtype != "int8" or inp.count != MODEL_INPUT_SIZE or inp.scale is None:
            probs.append(f"its input is {inp.describe()}, the firmware feeds int8 x {MODEL_INPUT_SIZE} with a scale")
        if out.dtype != "int8" or out.count != OUTPUTS:
            probs.append(f"its output is {out.describe()}, the firmware reads int8 x {OUTPUTS}")
        if probs:
            raise ModelError(f"{path} does not fit the sww01 firmware: " + "; ".join(probs))
        #: what the firmware reads from the model to quantise features (float32)
        self.input_scale = np.float32(inp.scale)
        self.backend = make_backend(backend, data, ARENA_SIZE)
        self.backend_name = self.backend.name
        self.invokes = 0

    # -- the engine protocol ------------------------------------------------------
    def set_input(self, window: np.ndarray) -> None:
        """``in_data[i] = g_model_input[i]``: 1200 int8 features, oldest frame first."""
        q = np.asarray(window, dtype=np.int8)
        if q.size != MODEL_INPUT_SIZE:
            raise ValueError(f"the sww01 model takes {MODEL_INPUT_SIZE} int8 values, got {q.size}")
        self.backend.set_input(q)

    def invoke(self) -> None:
        self.backend.invoke()
        self.invokes += 1

    def output(self) -> np.ndarray:
        """``out_data``: the 3 int8 class scores (softmax, scale 1/256, zero point -128)."""
        return self.backend.output().astype(np.int8)

    # -- facts (for `tinytwin models info`) ---------------------------------------------
    def info(self) -> dict:
        inp, out = self.model.inputs[0], self.model.outputs[0]
        return {
            "name": NAME,
            "file": self.path,
            "official": True,
            "md5": self.model.md5,
            "sha256": self.model.sha256,
            "size": self.model.size,
            "backend": self.backend_name,
            "arena_used": TFLMBackend.arena_needed(self.model.data) if self.backend_name == "tflm" else None,
            "arena_size": ARENA_SIZE,
            "input": {"shape": list(inp.shape), "dtype": inp.dtype, "scale": inp.scale, "zero_point": inp.zero_point},
            "output": {"shape": list(out.shape), "dtype": out.dtype, "scale": out.scale, "zero_point": out.zero_point},
            "ops": list(self.model.op_set),
        }


def open_sww01(models_dir: str | os.PathLike | None = None, backend: str = "tflm") -> Sww01Model:
    """The official sww01 model from the models directory (md5 checked).

    Every user error raises :class:`ModelError` with one message naming the fix."""
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}; use one of: {', '.join(BACKENDS)}")
    path = resolve_model(NAME, models_dir)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
    md5 = hashlib.md5(data).hexdigest()
    want = OFFICIAL[NAME].md5
    if md5 != want:
        raise ModelError(
            f"{path} is not the official sww01 model (md5 {md5}, expected {want}): "
            f"re-download it with `tinytwin models download`"
        )
    return Sww01Model(data, str(path), backend)
