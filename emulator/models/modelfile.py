"""Read and check a ``.tflite`` flatbuffer without running it: the one
``.tflite`` reader (the engine and the cycle model both use it).

The TFLM C++ runtime trusts the flatbuffer it is given (``tflite::GetModel`` does not
verify it), so a corrupt file must be rejected here, in Python, before any backend
sees it. Every table and vector is unpacked through the schema's object API and every
index is range-checked.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from . import ModelError

_TYPE_NAMES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
    6: "bool", 7: "int16", 8: "complex64", 9: "int8", 10: "float64",
    11: "complex128", 12: "uint64", 13: "resource", 14: "variant", 15: "uint32",
    16: "uint16", 17: "int4",
}
_TYPE_SIZES = {
    "float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "bool": 1,
    "int16": 2, "complex64": 8, "int8": 1, "float64": 8, "complex128": 16,
    "uint64": 8, "uint32": 4, "uint16": 2,
}


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    return fb


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the graph."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy-style name: int8, int32, float32, ...
    scale: float | None  # first (per-tensor) quantization scale, if any
    zero_point: int | None
    #: bytes of its data (of its constant buffer when it has one)
    nbytes: int = 0
    #: backed by a constant buffer in the flatbuffer (weights, biases, shapes)
    const: bool = False
    #: number of quantization scales (1 = per tensor, >1 = per channel)
    n_scales: int = 0

    @property
    def count(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    elems = count

    def describe(self) -> str:
        q = "" if self.scale is None else f" (scale {self.scale:.6g}, zero point {self.zero_point})"
        return f"{self.dtype}{list(self.shape)}{q}"


@dataclass(frozen=True)
class ModelFile:
    """A checked .tflite: its bytes, digests and the facts the engine needs."""

    data: bytes
    md5: str
    sha256: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    ops: tuple[str, ...]  # builtin op name of every operator, in execution order
    has_variables: bool
    schema_version: int
    tensor_count: int = field(default=0)
    #: every tensor of the (single) subgraph, by index
    tensors: tuple[TensorInfo, ...] = field(default=(), repr=False)
    #: the flatbuffer unpacked with the schema's object API (``ModelT``), for
    #: readers that need operator options (the cycle model)
    flatbuffer: object = field(default=None, repr=False, compare=False)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def op_set(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.ops)))


def _op_names() -> dict[int, str]:
    fb = _schema()
    return {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def parse_model(data: bytes, what: str = "model") -> ModelFile:
    """Check ``data`` is a usable TFLite flatbuffer; ModelError says what is wrong."""
    bad = f"{what} is not a valid .tflite file"
    if len(data) < 16:
        raise ModelError(f"{bad}: only {len(data)} bytes")
    if data[4:8] != b"TFL3":
        raise ModelError(f"{bad}: no TFL3 flatbuffer identifier (is it really a TensorFlow Lite model?)")
    fb = _schema()
    try:
        root = fb.Model.GetRootAsModel(data, 0)
        model = fb.ModelT.InitFromObj(root)
    except Exception as exc:  # any decoding failure means a corrupt flatbuffer
        raise ModelError(f"{bad}: corrupt flatbuffer ({type(exc).__name__}: {exc})") from None
    try:
        return _check(model, data, bad)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"{bad}: corrupt flatbuffer ({type(exc).__name__}: {exc})") from None


def _check(model, data: bytes, bad: str) -> ModelFile:
    if model.version != 3:
        raise ModelError(f"{bad}: schema version {model.version}, expected 3")
    subgraphs = model.subgraphs or []
    if len(subgraphs) != 1:
        raise ModelError(f"{bad} for TFLM v2.3: it has {len(subgraphs)} subgraphs (exactly 1 is supported)")
    sg = subgraphs[0]
    buffers = model.buffers or []
    opcodes = model.operatorCodes or []
    tensors = sg.tensors or []
    nt = len(tensors)
    names = _op_names()

    infos = []
    has_var = False
    for i, t in enumerate(tensors):
        if not (0 <= t.buffer < max(len(buffers), 1)):
            raise ModelError(f"{bad}: tensor {i} refers to buffer {t.buffer} of {len(buffers)}")
        if t.type not in _TYPE_NAMES:
            raise ModelError(f"{bad}: tensor {i} has unknown type {t.type}")
        shape = tuple(int(s) for s in (t.shape if t.shape is not None else ()))
        if any(s < 0 for s in shape):
            raise ModelError(f"{bad}: tensor {i} has a dynamic shape {list(shape)} (TFLM needs static shapes)")
        q = t.quantization
        scale = zp = None
        if q is not None and q.scale is not None and len(q.scale) > 0:
            scale = float(np.float32(q.scale[0]))
            zp = int(q.zeroPoint[0]) if q.zeroPoint is not None and len(q.zeroPoint) > 0 else 0
        name = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else str(t.name or "")
        dtype = _TYPE_NAMES[t.type]
        buf = buffers[t.buffer] if buffers else None
        data_len = 0
        if buf is not None:
            if buf.data is not None:
                data_len = len(buf.data)
            elif getattr(buf, "size", 0):
                data_len = int(buf.size)
        count = int(np.prod(shape)) if shape else 1
        nbytes = data_len if data_len else count * (_TYPE_SIZES.get(dtype) or 1)
        n_scales = len(q.scale) if (q is not None and q.scale is not None) else 0
        infos.append(TensorInfo(i, name, shape, dtype, scale, zp, nbytes, data_len > 0, n_scales))
        has_var = has_var or bool(t.isVariable)

    def idx(v, where):
        v = int(v)
        if not (-1 <= v < nt):
            raise ModelError(f"{bad}: {where} refers to tensor {v} of {nt}")
        return v

    ops = []
    for k, op in enumerate(sg.operators or []):
        if not (0 <= op.opcodeIndex < len(opcodes)):
            raise ModelError(f"{bad}: operator {k} uses opcode {op.opcodeIndex} of {len(opcodes)}")
        oc = opcodes[op.opcodeIndex]
        code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
        name = names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            cc = oc.customCode
            name = "CUSTOM:" + (cc.decode("utf-8", "replace") if isinstance(cc, bytes) else str(cc))
        ops.append(name)
        for v in list(op.inputs if op.inputs is not None else []) + list(op.outputs if op.outputs is not None else []):
            idx(v, f"operator {k} ({name})")
    ins = [idx(v, "the subgraph inputs") for v in (sg.inputs if sg.inputs is not None else [])]
    outs = [idx(v, "the subgraph outputs") for v in (sg.outputs if sg.outputs is not None else [])]
    if not ins or not outs or min(ins + outs) < 0:
        raise ModelError(f"{bad}: it declares no usable input or output tensor")
    return ModelFile(
        data=bytes(data),
        md5=hashlib.md5(data).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
        inputs=tuple(infos[i] for i in ins),
        outputs=tuple(infos[i] for i in outs),
        ops=tuple(ops),
        has_variables=has_var,
        schema_version=int(model.version),
        tensor_count=nt,
        tensors=tuple(infos),
        flatbuffer=model,
    )


def type_size(dtype: str) -> int:
    return _TYPE_SIZES.get(dtype, 0)
