"""One loaded model, its I/O profile and a backend: the firmware's
``th_load_tensor()``, ``th_infer()`` and ``th_results()``, computed for real."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from . import ModelError, carith
from .backends import BACKENDS, TFLMBackend, make_backend
from .mbedfmt import format_d, format_f
from .modelfile import ModelFile, parse_model
from .profiles import (
    CONVERT_COPY_INT8,
    CONVERT_INT8_MINUS_128,
    CONVERT_QUANTIZE_FLOAT32,
    CONVERT_UINT8_MINUS_128,
    PROFILES,
    RESULTS_KWS_DIGITS,
    RESULTS_MSE,
    RESULTS_PRINTF_F,
    IOProfile,
)
from .store import resolve_model

FP_CONTRACT = ("fast", "acc", "off")
_ARENA_CACHE: dict[str, int | None] = {}


class Engine:
    """A model ready to run the way one reference firmware runs it.

    ``fp_contract`` only matters for ad01's result (the reconstruction MSE computed
    in float32 by ``calculate_result()``): ``'fast'`` (default) fuses
    ``converted - input`` and ``diffsum += diff * diff`` into VFMS/VFMA, which is
    what GCC does by default for the GNU dialects mbed-os compiles with
    (``-ffp-contract=fast``) on the Cortex-M4F's FPv4-SP unit; ``'acc'`` fuses only the
    accumulation; ``'off'`` rounds every operation (``-ffp-contract=off``).
    """

    def __init__(
        self,
        model: ModelFile,
        profile: IOProfile,
        backend: str = "tflm",
        *,
        model_path: Path | None = None,
        official: bool = False,
        fp_contract: str = "fast",
    ):
        if fp_contract not in FP_CONTRACT:
            raise ModelError(f"unknown fp_contract {fp_contract!r}; use one of: {', '.join(FP_CONTRACT)}")
        self.model = model
        self.profile = profile
        self.model_path = model_path
        self.official = official
        self.fp_contract = fp_contract
        self.backend = make_backend(backend, model.data, profile.arena_size)
        self.backend_name = self.backend.name
        inp, out = model.inputs[0], model.outputs[0]
        self.input_scale = np.float32(inp.scale if inp.scale is not None else 0.0)
        self.input_zero_point = int(inp.zero_point or 0)
        self.output_scale = np.float32(out.scale if out.scale is not None else 0.0)
        self.output_zero_point = int(out.zero_point or 0)
        n = profile.input_count
        # ad01's global `float input_float[kInputSize]`: th_results() compares with it
        self._input_float_bytes = bytearray(n * 4) if profile.conversion == CONVERT_QUANTIZE_FLOAT32 else None
        self._input_q = np.zeros(n, dtype=np.int8)
        self.invokes = 0  # th_infer() calls since the engine was opened
        # an invoke leaves the input alone on backends that keep graph inputs and
        # on models without state: further invokes then give identical outputs
        self._settled = False
        self._stateless = not model.has_variables

    # ---------------------------------------------------------------- facts
    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def model_size(self) -> int:
        return self.model.size

    @property
    def md5(self) -> str:
        return self.model.md5

    @property
    def arena_used(self) -> int | None:
        """Bytes of tensor arena TFLM needs for this model (the smallest arena in
        which it allocates; measured once per model). None on other backends."""
        if self.backend_name != "tflm":
            return None
        if self.model.md5 not in _ARENA_CACHE:
            _ARENA_CACHE[self.model.md5] = TFLMBackend.arena_needed(self.model.data)
        return _ARENA_CACHE[self.model.md5]

    def info(self) -> dict:
        inp, out = self.model.inputs[0], self.model.outputs[0]
        return {
            "name": self.profile.name,
            "file": str(self.model_path) if self.model_path else None,
            "official": self.official,
            "md5": self.model.md5,
            "sha256": self.model.sha256,
            "size": self.model.size,
            "backend": self.backend_name,
            "arena_used": self.arena_used,
            "arena_size": self.profile.arena_size,
            "input": {"shape": list(inp.shape), "dtype": inp.dtype, "scale": inp.scale, "zero_point": inp.zero_point},
            "output": {"shape": list(out.shape), "dtype": out.dtype, "scale": out.scale, "zero_point": out.zero_point},
            "ops": list(self.model.op_set),
        }

    # --------------------------------------------------------- th_load_tensor
    def convert_input(self, raw: bytes) -> np.ndarray:
        """The int8 input tensor th_load_tensor() makes of ``raw`` (no side effects)."""
        p = self.profile
        if len(raw) != p.input_bytes:
            raise ValueError(f"{p.name} takes {p.input_bytes} bytes from the db buffer, got {len(raw)}")
        b = np.frombuffer(bytes(raw), dtype=np.uint8)
        if p.conversion == CONVERT_COPY_INT8:
            return b.view(np.int8).copy()
        if p.conversion == CONVERT_UINT8_MINUS_128:
            # if (u <= 127) (int8_t)u - 128  else  (int8_t)(u - 128)
            u = b.astype(np.int32)
            low = u.astype(np.int8).astype(np.int32) - 128
            high = (u - 128).astype(np.uint8).view(np.int8).astype(np.int32)
            return np.where(u <= 127, low, high).astype(np.int8)
        if p.conversion == CONVERT_INT8_MINUS_128:
            # input[i] -= 128 on an int8_t: int arithmetic, stored modulo 2**8
            s = b.view(np.int8).astype(np.int32) - 128
            return (s & 0xFF).astype(np.uint8).view(np.int8)
        if p.conversion == CONVERT_QUANTIZE_FLOAT32:
            x = np.frombuffer(bytes(raw), dtype="<f4")
            return self._quantize(x)
        raise AssertionError(p.conversion)

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        """QuantizeFloatToInt8: int32_t r = round(value / scale) + zero_point, clamped."""
        with np.errstate(all="ignore"):
            q = x.astype(np.float32) / self.input_scale  # float / float in float32
        r = carith.round_half_away(q) + float(self.input_zero_point)
        r = carith.to_i32_saturating(r)
        return np.clip(r, -128, 127).astype(np.int8)

    def set_input(self, raw: bytes) -> None:
        """th_load_tensor() with exactly ``input_count * input_elem_size`` bytes from the
        db buffer: convert and write the model's input tensor."""
        q = self.convert_input(raw)
        if self._input_float_bytes is not None:
            self._input_float_bytes[:] = raw
        self._input_q = q
        self.backend.set_input(q)
        self._settled = False

    def load_short(self, raw: bytes) -> None:
        """th_load_tensor() when the db buffer holds fewer bytes than it needs: the
        firmware prints its error and leaves the input tensor as it was, but ad01
        has already copied those bytes over its float input (used by th_results())."""
        if self._input_float_bytes is not None:
            k = min(len(raw), len(self._input_float_bytes))
            self._input_float_bytes[:k] = bytes(raw[:k])

    @property
    def input_float(self) -> np.ndarray | None:
        """ad01's float input as th_results() sees it (None for the int8 models)."""
        if self._input_float_bytes is None:
            return None
        return np.frombuffer(bytes(self._input_float_bytes), dtype="<f4").copy()

    # --------------------------------------------------------------- th_infer
    def invoke(self, count: int = 1) -> None:
        """``count`` consecutive th_infer() calls, the input left as the previous
        invoke left it (on TFLM, activations may have overwritten it).

        Every invoke really runs on TFLM. Note the layout of the arena, hence what
        overwrites the input, is the tflite-micro package's (reference kernels,
        no scratch buffers), not that of the board's TFLM v2.3.1 + CMSIS-NN build;
        since repeated invokes on a clobbered input behave chaotically, results
        after more than one invoke differ from the board's. On backends that keep
        graph inputs (LiteRT) and stateless models the repeats are skipped, exactly.
        """
        if count < 0:
            raise ValueError("count must be >= 0")
        for _ in range(count):
            if self._settled:
                self.invokes += 1
                continue
            self.backend.invoke()
            self.invokes += 1
            if self._stateless and not self.backend.clobbers_input:
                # exact: the input tensor is intact (the backend keeps graph inputs)
                # and there is no state, so every further invoke repeats this one
                self._settled = True

    # ------------------------------------------------------------- th_results
    def output_q(self) -> np.ndarray:
        """The int8 output tensor as th_results() reads it."""
        return self.backend.output().astype(np.int8)

    def dequantized(self) -> np.ndarray:
        """DequantizeInt8ToFloat of the output: (float)(q - zp) * scale in float32."""
        q = self.output_q().astype(np.int32)
        return (q - self.output_zero_point).astype(np.float32) * self.output_scale

    def mse(self) -> float:
        """ad01's calculate_result(), in float32 as the Cortex-M4F computes it."""
        n = self.profile.model_output_count
        t = (self.output_q()[:n].astype(np.int32) - self.output_zero_point).astype(np.float32)
        x = self.input_float[:n]
        if self.fp_contract == "fast":
            diff = carith.fma_array(t, np.full(n, self.output_scale, np.float32), -x)
        else:
            diff = (t * self.output_scale).astype(np.float32) - x
        diffs = diff.tolist()
        acc = 0.0
        if self.fp_contract == "off":
            for d in diffs:
                acc = carith.add(acc, carith.mul(d, d))
        else:
            acc = carith.fma_sum_squares(diffs)
        return carith.div(acc, float(n))

    def results_text(self) -> str:
        """Exactly what th_results() prints (with its ``\\r\\n``)."""
        p = self.profile
        if p.results_format == RESULTS_MSE:
            return f"m-results-[{format_f(self.mse())}]\r\n"
        vals = [float(v) for v in self.dequantized()[: p.model_output_count]]
        out = ["m-results-["]
        if p.results_format == RESULTS_KWS_DIGITS:
            for i, f in enumerate(vals):
                out.append("0." + format_d(carith.f2i(carith.mul(f, 10.0))))
                out.append(format_d(carith.cmod(carith.f2i(carith.mul(f, 100.0)), 10)))
                out.append(format_d(carith.cmod(carith.f2i(carith.mul(f, 1000.0)), 10)))
                if i < p.results_loop_count - 1:
                    out.append(",")
        elif p.results_format == RESULTS_PRINTF_F:
            for i, f in enumerate(vals):
                out.append(format_f(f))
                if i < p.results_loop_count - 1:
                    out.append(",")
        else:  # pragma: no cover - profiles are fixed
            raise AssertionError(p.results_format)
        out.append("]\r\n")
        return "".join(out)


# ---------------------------------------------------------------------- opening


def _fit_problems(m: ModelFile, p: IOProfile) -> list[str]:
    """Why the model cannot run under profile ``p`` (empty: it fits)."""
    probs = []
    if len(m.inputs) != 1:
        probs.append(f"it has {len(m.inputs)} inputs (the firmware feeds exactly 1)")
    if len(m.outputs) != 1:
        probs.append(f"it has {len(m.outputs)} outputs (the firmware reads exactly 1)")
    i, o = m.inputs[0], m.outputs[0]
    if i.dtype != "int8" or i.count != p.input_count:
        probs.append(f"its input is {i.describe()} but the {p.name} firmware feeds int8 with {p.input_count} elements")
    elif p.conversion == CONVERT_QUANTIZE_FLOAT32 and tuple(i.shape) != p.input_shape:
        probs.append(f"its input shape is {list(i.shape)} but the {p.name} firmware requires {list(p.input_shape)}")
    if p.conversion == CONVERT_QUANTIZE_FLOAT32 and i.scale is None:
        probs.append("its input has no quantization scale (needed to quantize the float input)")
    if o.dtype != "int8" or o.count != p.model_output_count:
        probs.append(f"its output is {o.describe()} but the {p.name} firmware reads int8 with {p.model_output_count} elements")
    if o.scale is None:
        probs.append("its output has no quantization scale (needed to dequantize the result)")
    return probs


def _op_problems(m: ModelFile, p: IOProfile) -> str | None:
    extra = [op for op in m.op_set if op not in p.ops]
    if not extra:
        return None
    return (f"it uses {', '.join(extra)}, which the {p.name} reference firmware does not register "
            f"(it registers {', '.join(p.ops)})")


def open_engine(
    model: str | os.PathLike,
    models_dir: str | os.PathLike | None = None,
    backend: str = "tflm",
    profile: str | None = None,
    *,
    fp_contract: str = "fast",
    check_ops: bool = True,
) -> Engine:
    """Load ``model`` (one of kws01, vww01, ic01, ad01 from the models directory, or
    a path to an int8 .tflite with ``profile=`` naming whose I/O it follows).

    Every user error raises :class:`ModelError` with one message naming the fix.
    ``check_ops=False`` lets a model use ops the reference firmware does not
    register (the real board would refuse it).
    """
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}; use one of: {', '.join(BACKENDS)}")
    if profile is not None and profile not in PROFILES:
        raise ModelError(f"unknown I/O profile {profile!r}; use one of: {', '.join(PROFILES)}")
    name = os.fspath(model)
    official = name in PROFILES
    if official:
        if profile is not None and profile != name:
            raise ModelError(f"{name} is an official model with its own I/O profile; drop --io-profile {profile}")
        path = resolve_model(name, models_dir)
        prof = PROFILES[name]
    else:
        if name == "sww01":
            raise ModelError(
                "sww01 (streaming wakeword) runs on its own firmware, not the EEMBC one of kws01/vww01/ic01/ad01: "
                "open it with emulator.dut.sww01.model.open_sww01"
            )
        path = resolve_model(name)
        prof = PROFILES[profile] if profile is not None else None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
    if official:
        md5 = hashlib.md5(data).hexdigest()
        if md5 != prof.official_md5:
            raise ModelError(
                f"{path} is not the official {name} model (md5 {md5}, expected {prof.official_md5}): "
                f"re-download it with `tinytwin models download`, or run your own file by its path with --io-profile"
            )
    m = parse_model(data, str(path))
    if prof is None:
        match = [p for p in PROFILES.values() if p.official_md5 == m.md5]
        if not match:
            raise ModelError(
                f"{path} is not one of the official models: say which firmware's I/O it follows with "
                f"--io-profile kws01|vww01|ic01|ad01"
            )
        prof = match[0]
        official = True
    probs = _fit_problems(m, prof)
    if check_ops:
        op_prob = _op_problems(m, prof)
        if op_prob:
            probs.append(op_prob)
    if probs:
        raise ModelError(f"{path} does not fit the {prof.name} I/O profile: " + "; ".join(probs))
    return Engine(m, prof, backend, model_path=path, official=official, fp_contract=fp_contract)
