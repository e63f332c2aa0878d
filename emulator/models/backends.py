"""Inference backends behind :class:`emulator.models.engine.Engine`.

``tflm`` (default): TensorFlow Lite for Microcontrollers through the ``tflite-micro``
package, with the firmware's tensor arena size. Its memory planner lets later
activations overwrite the input tensor, as on the board, so repeated invokes without
a new input see a clobbered input.

``litert``: Google's LiteRT (``ai-edge-litert``) or, if that is missing, the legacy
``tflite_runtime``. Its arena planner keeps graph inputs alive, so repeated invokes
all see the same input; with its default XNNPACK delegate its int8 results are not
bit-exact with TFLM. ``litert-ref`` uses LiteRT's reference kernels
(``OpResolverType.BUILTIN_REF``) and ``litert-builtin`` its optimized builtin kernels
without the default delegates.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from . import ModelError

BACKENDS = ("tflm", "litert", "litert-ref", "litert-builtin")


@contextlib.contextmanager
def _quiet_stderr():
    """Silence the C++ runtime's own messages on fd 2 (e.g. failed allocations)."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2: nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class TFLMBackend:
    """TFLite Micro through its Python interpreter: the same kernels'
    arithmetic as the reference firmware (bit-exact results), and, like the
    board, an arena in which activations may overwrite the input tensor."""

    name = "tflm"
    clobbers_input = True

    def __init__(self, data: bytes, arena_size: int):
        try:
            from tflite_micro.python.tflite_micro import runtime
        except ImportError:
            raise ModelError(
                "the tflm backend needs the tflite-micro package: pip install tflite-micro"
            ) from None
        self._runtime = runtime
        self.arena_size = arena_size
        try:
            with _quiet_stderr():
                self._it = runtime.Interpreter.from_bytes(data, arena_size=arena_size)
        except RuntimeError:
            needed = self.arena_needed(data)
            if needed is None:
                raise ModelError(
                    "TFLM cannot prepare this model (an operator is unsupported or rejects its tensors); "
                    "check it runs with the TFLM interpreter"
                ) from None
            raise ModelError(
                f"the model needs a {needed}-byte tensor arena but the firmware has a "
                f"{arena_size}-byte tensor arena (kTensorArenaSize); the reference firmware would fail the same way"
            ) from None
        except Exception as exc:
            raise ModelError(f"TFLM rejected the model ({type(exc).__name__}: {exc})") from None
        d = self._it.get_input_details(0)
        self.input_shape = tuple(int(s) for s in d["shape"])
        self.input_dtype = np.dtype(d["dtype"])

    def set_input(self, arr: np.ndarray) -> None:
        self._it.set_input(np.ascontiguousarray(arr, dtype=self.input_dtype).reshape(self.input_shape), 0)

    def invoke(self) -> None:
        self._it.invoke()

    def output(self) -> np.ndarray:
        return np.asarray(self._it.get_output(0)).reshape(-1)

    @staticmethod
    def arena_needed(data: bytes, upper: int = 16 * 1024 * 1024) -> int | None:
        """The smallest arena (bytes) in which TFLM allocates this model, by
        bisection (allocation succeeds for every size above the threshold)."""
        from tflite_micro.python.tflite_micro import runtime

        def fits(n: int) -> bool:
            try:
                runtime.Interpreter.from_bytes(data, arena_size=n)
                return True
            except RuntimeError:
                return False

        with _quiet_stderr():
            if not fits(upper):
                return None
            lo, hi = 0, upper  # fits(hi), not fits(lo)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if fits(mid):
                    hi = mid
                else:
                    lo = mid
        return hi


class LiteRTBackend:
    clobbers_input = False

    def __init__(self, data: bytes, kernels: str = "default"):
        Interpreter = OpResolverType = None
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType  # type: ignore
            pkg = "ai-edge-litert"
        except ImportError:
            try:
                from tflite_runtime.interpreter import Interpreter  # type: ignore
                try:
                    from tflite_runtime.interpreter import OpResolverType  # type: ignore
                except ImportError:
                    OpResolverType = None
                pkg = "tflite-runtime"
            except ImportError:
                raise ModelError(
                    "the litert backend needs the ai-edge-litert package: pip install ai-edge-litert "
                    "(or pip install 'tinytwin[litert]')"
                ) from None
        self.package = pkg
        self.kernels = kernels
        self.name = "litert" if kernels == "default" else f"litert-{kernels}"
        kw = {}
        if kernels != "default":
            if OpResolverType is None:
                raise ModelError(f"{pkg} here cannot select kernels; use backend 'litert'")
            kw["experimental_op_resolver_type"] = {
                "ref": OpResolverType.BUILTIN_REF,
                "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            }[kernels]
        try:
            self._it = Interpreter(model_content=bytes(data), num_threads=1, **kw)
            self._it.allocate_tensors()
        except Exception as exc:
            raise ModelError(f"LiteRT rejected the model ({type(exc).__name__}: {exc})") from None
        d = self._it.get_input_details()[0]
        self._in = d["index"]
        self.input_shape = tuple(int(s) for s in d["shape"])
        self.input_dtype = np.dtype(d["dtype"])
        self._out = self._it.get_output_details()[0]["index"]

    def set_input(self, arr: np.ndarray) -> None:
        self._it.set_tensor(self._in, np.ascontiguousarray(arr, dtype=self.input_dtype).reshape(self.input_shape))

    def invoke(self) -> None:
        self._it.invoke()

    def output(self) -> np.ndarray:
        return np.array(self._it.get_tensor(self._out)).reshape(-1)


def make_backend(backend: str, data: bytes, arena_size: int):
    if backend == "tflm":
        return TFLMBackend(data, arena_size)
    if backend == "litert":
        return LiteRTBackend(data, "default")
    if backend == "litert-ref":
        return LiteRTBackend(data, "ref")
    if backend == "litert-builtin":
        return LiteRTBackend(data, "builtin")
    raise ModelError(f"unknown backend {backend!r}; use one of: {', '.join(BACKENDS)}")
