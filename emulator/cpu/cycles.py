"""Cycle model of TFLM inference on the reference board (STM32L4R5, Cortex-M4F).

The latency of one ``Invoke()`` is derived from the ``.tflite`` graph itself:

1. :func:`load_graph` parses the flatbuffer (schema shipped with the
   ``tflite-micro`` package) into :class:`Graph` / :class:`OpInfo`: op type,
   shapes, strides, kernel size, padding, channels, MACs, weight bytes ...
2. Every op is mapped to the kernel the reference build runs for it
   (TFLM v2.3.1 ``cmsis-nn`` kernels: ``arm_convolve_s8``,
   ``arm_convolve_1x1_s8_fast``, ``arm_depthwise_conv_s8_opt``,
   ``arm_fully_connected_s8``, ...), and the loop structure of that kernel is
   turned into *counts*: MACs done by the 2x2-blocked dual-MAC (SMLAD) matrix
   kernel, MACs done by narrower blocks and scalar tails, MACs of the
   depthwise and vector x matrix kernels, im2col elements, im2col calls,
   requantized outputs, per-channel parameter set-ups, bytes moved by
   memory-bound ops, operators.
3. A :class:`KernelProfile` holds the cost, in CPU cycles, of one unit of each
   count (a handful of parameters with a physical meaning, fitted by
   :mod:`emulator.cpu.calibrate`). Cycles = sum(params x counts) plus the
   flash wait states paid when weights are streamed from flash, which depend
   on the clock (RM0432: one wait state per 20 MHz in range 1 boost).

There is no per-model table of latencies: a new ``.tflite`` gets a latency
from its structure alone. Held out (fitted on three of the reference models,
predicting the fourth) that is kws01 +5.3 %, ic01 -6.9 %, vww01 -7.4 % and
ad01 +47.9 % (README, "Latency"): a model dominated by fully-connected layers
is poorly pinned down by the three conv models. (``th_load_tensor``'s stages
are per reference model, the firmware's own code path for each input type;
another model takes the ``default`` copy.)

Besides the inference, the profile carries the firmware timing the DUT model
needs (``profile.firmware``): UART line time, printf overhead, the cost of
``th_load_tensor`` per model, command parsing, boot. :func:`window_us`
predicts what the board prints as the difference of the two ``m-lap-us-``
lines of ``infer N W``: N inferences plus the blocking print of the first
lap line (the firmware's printf waits for the UART, and the timer is read
before the print).
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..models.modelfile import TensorInfo, parse_model

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
DEFAULT_PROFILE = PROFILES_DIR / "l4r5zi_tflm231_cmsisnn.json"

#: STM32L4R5ZI memories (RM0432 / datasheet DS12023)
L4R5_SRAM_BYTES = 640 * 1024
L4R5_FLASH_BYTES = 2 * 1024 * 1024

#: the four official models and their file stems
MODEL_NAMES = ("kws01", "vww01", "ic01", "ad01")


# --------------------------------------------------------------------------
# the graph (read by the one .tflite reader, emulator.models.modelfile)
# --------------------------------------------------------------------------
@dataclass
class OpInfo:
    """One operator of the graph, with what the cost model needs."""

    index: int
    op_type: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any]
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    filter_shape: tuple[int, ...] = ()
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: str = ""
    #: top/left padding, as TFLM computes it (ComputePaddingHeightWidth)
    pad: tuple[int, int] = (0, 0)
    in_ch: int = 0
    out_ch: int = 0
    depth_multiplier: int = 1
    #: multiply-accumulates of the dense definition (padding taps counted)
    macs: int = 0
    #: MACs on taps that fall inside the input (what a bounds-checking loop does)
    macs_valid: int = 0
    in_elems: int = 0
    out_elems: int = 0
    #: constant bytes the op reads (weights + bias)
    weight_bytes: int = 0
    #: the CMSIS-NN / TFLM routine the reference build runs for this op
    path: str = ""
    #: loop-structure counts, keyed like the profile parameters
    counts: dict[str, float] = field(default_factory=dict)
    #: weight bytes fetched from flash per Invoke (re-reads included)
    flash_bytes: float = 0.0
    #: scratch buffer the kernel asks for (bytes)
    scratch_bytes: int = 0


@dataclass
class Graph:
    name: str
    model_bytes: int
    sha256: str
    tensors: list[TensorInfo]
    ops: list[OpInfo]
    inputs: list[int]
    outputs: list[int]
    raw: bytes = field(default=b"", repr=False, compare=False)

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    @property
    def weight_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors if t.const)

    def op_types(self) -> list[str]:
        return [op.op_type for op in self.ops]

    def arena_estimate(self) -> "ArenaEstimate":
        return estimate_arena(self)


def _same_padding(in_sz: int, out_sz: int, k: int, s: int, d: int) -> int:
    eff = (k - 1) * d + 1
    total = max((out_sz - 1) * s + eff - in_sz, 0)
    return total // 2


def _valid_taps(in_sz: int, out_sz: int, k: int, s: int, d: int, pad: int) -> int:
    """Sum over output positions of the kernel taps that land inside the input."""
    n = 0
    for o in range(out_sz):
        base = o * s - pad
        for kk in range(k):
            p = base + kk * d
            if 0 <= p < in_sz:
                n += 1
    return n


def _read_model_bytes(model: str | Path | bytes | bytearray) -> tuple[bytes, str]:
    if isinstance(model, (bytes, bytearray)):
        return bytes(model), "<bytes>"
    from ..models.store import resolve_model

    p = resolve_model(model)  # a name (kws01...) or a path; ModelError names the fix
    return p.read_bytes(), p.stem


def load_graph(model: "str | Path | bytes | Graph") -> Graph:
    """Parse a ``.tflite`` flatbuffer (path, model name or bytes) into a :class:`Graph`."""
    if isinstance(model, Graph):
        return model
    raw, stem = _read_model_bytes(model)
    mf = parse_model(raw, what=stem)  # checks the file; ModelError names the problem
    sg = mf.flatbuffer.subgraphs[0]
    tensors = list(mf.tensors)

    ops: list[OpInfo] = []
    for idx, (op, op_type) in enumerate(zip(sg.operators or [], mf.ops)):
        opts = op.builtinOptions
        options = {k: v for k, v in vars(opts).items() if not k.startswith("_")} if opts is not None else {}
        ins = [int(x) for x in (op.inputs if op.inputs is not None else [])]
        outs = [int(x) for x in (op.outputs if op.outputs is not None else [])]
        ops.append(_describe(idx, op_type, ins, outs, options, tensors))

    for op in ops:
        _assign_path_and_counts(op, tensors)

    return Graph(
        name=stem,
        model_bytes=len(raw),
        sha256=mf.sha256,
        tensors=tensors,
        ops=ops,
        inputs=[int(x) for x in sg.inputs],
        outputs=[int(x) for x in sg.outputs],
        raw=raw,
    )


def _shape(tensors: list[TensorInfo], idx: int) -> tuple[int, ...]:
    return tensors[idx].shape if 0 <= idx < len(tensors) else ()


def _nhwc(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    s = list(shape)
    while len(s) < 4:
        s.insert(1, 1)
    return int(s[0]), int(s[1]), int(s[2]), int(s[3])


def _describe(idx, op_type, ins, outs, options, tensors) -> OpInfo:
    op = OpInfo(idx, op_type, ins, outs, options)
    live_in = [i for i in ins if i >= 0]
    op.in_shape = _shape(tensors, live_in[0]) if live_in else ()
    op.out_shape = _shape(tensors, outs[0]) if outs else ()
    op.in_elems = tensors[live_in[0]].elems if live_in else 0
    op.out_elems = tensors[outs[0]].elems if outs else 0
    op.weight_bytes = sum(tensors[i].nbytes for i in live_in if tensors[i].const)

    if op_type in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D"):
        n, ih, iw, cin = _nhwc(op.in_shape)
        _, oh, ow, cout = _nhwc(op.out_shape)
        if op_type in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            op.filter_shape = _shape(tensors, ins[1])
            kh, kw = int(op.filter_shape[1]), int(op.filter_shape[2])
            sh, sw = options.get("strideH", 1), options.get("strideW", 1)
            dh, dw = options.get("dilationHFactor", 1) or 1, options.get("dilationWFactor", 1) or 1
        else:
            kh, kw = options.get("filterHeight", 1), options.get("filterWidth", 1)
            sh, sw = options.get("strideH", 1), options.get("strideW", 1)
            dh = dw = 1
        same = options.get("padding", 1) == 0  # schema: SAME = 0, VALID = 1
        op.padding = "SAME" if same else "VALID"
        ph = _same_padding(ih, oh, kh, sh, dh) if same else 0
        pw = _same_padding(iw, ow, kw, sw, dw) if same else 0
        op.kernel, op.stride, op.dilation, op.pad = (kh, kw), (sh, sw), (dh, dw), (ph, pw)
        op.in_ch, op.out_ch = cin, cout
        vy = _valid_taps(ih, oh, kh, sh, dh, ph)
        vx = _valid_taps(iw, ow, kw, sw, dw, pw)
        if op_type == "CONV_2D":
            op.macs = n * oh * ow * cout * kh * kw * cin
            op.macs_valid = n * vy * vx * cout * cin
        elif op_type == "DEPTHWISE_CONV_2D":
            op.depth_multiplier = int(options.get("depthMultiplier", 1) or max(cout // max(cin, 1), 1))
            op.macs = n * oh * ow * cout * kh * kw
            op.macs_valid = n * vy * vx * cout
        else:
            op.macs = 0
            op.macs_valid = 0
        op.options = dict(options, _valid_taps_hw=(vy, vx))
    elif op_type == "FULLY_CONNECTED":
        w = _shape(tensors, ins[1])
        units, depth = int(w[0]), int(w[-1])
        batches = max(op.in_elems // max(depth, 1), 1)
        op.filter_shape = w
        op.in_ch, op.out_ch = depth, units
        op.macs = op.macs_valid = batches * units * depth
    return op


# --------------------------------------------------------------------------
# kernel paths and loop-structure counts
# --------------------------------------------------------------------------
#: Cost of the narrower blocks of the CMSIS-NN matrix kernels relative to one
#: MAC of the 2x2-blocked inner loop, from their instruction counts per MAC
#: (2 rows x 2 columns x 4: 2 LDR + 4 SXTB16 for the weights, 4 LDR of q15
#: pairs, 8 SMLAD, 2 loop = 20 instructions / 16 MACs; 1 row x 2 columns: 13 / 8;
#: 1 x 1: 9 / 4; scalar tail of the 2x2 kernel (K % 4): 8 / 4 with LDRSB/LDRSH
#: and MLA; plain C loop (no SIMD): 6 / 1).
BLOCK_COST = {"2x2": 1.0, "1x2": 1.3, "1x1": 1.8, "tail": 1.6, "scalar": 4.8}
#: depthwise (arm_depthwise_conv_s8_opt): per tap and 4 channels: LDR weights,
#: 2 SXTB16, 2 LDR of q15 pairs, 4 SMLAxy, 2 pointer steps = 11 / 4 MACs,
#: relative to the 20 / 16 of the 2x2 kernel
DW_SIMD_COST = 2.2
#: requantizations per element of an elementwise add (both inputs and the output)
ADD_REQUANTS = 3.0
#: passes over the data of an int8 softmax (max, exp-sum, normalise)
SOFTMAX_PASSES = 3.0


def _conv_blocks(pixels: int, cout: int, k: int) -> dict[str, float]:
    """MACs of arm_nn_mat_mult_kernel_s8_s16 (2 columns x 2 rows, 4 deep),
    split by block shape: pairs of pixels x pairs of channels in 2x2 blocks,
    an odd channel in 1x2, an odd pixel in 1x1 (per-channel dot product),
    and the K % 4 scalar tail."""
    k4 = (k // 4) * 4
    kt = k - k4
    pp, cp = pixels // 2, cout // 2
    return {
        "2x2": pp * 2 * cp * 2 * k4,
        "1x2": pp * 2 * (cout % 2) * k4,
        "1x1": (pixels % 2) * cout * k4,
        "tail": pixels * cout * kt,
    }


def _assign_path_and_counts(op: OpInfo, tensors: list[TensorInfo]) -> None:
    t = op.op_type
    c: dict[str, float] = {"op_cycles": 1.0}
    int8 = all(tensors[i].dtype in ("int8", "int32") for i in op.inputs if i >= 0) if op.inputs else False
    in_bytes = tensors[op.inputs[0]].nbytes if op.inputs and op.inputs[0] >= 0 else 0
    out_bytes = tensors[op.outputs[0]].nbytes if op.outputs else 0

    if t == "CONV_2D" and int8:
        n, ih, iw, cin = _nhwc(op.in_shape)
        _, oh, ow, cout = _nhwc(op.out_shape)
        kh, kw = op.kernel
        pixels = n * oh * ow
        k = kh * kw * cin
        one_by_one = (kh, kw) == (1, 1) and op.pad == (0, 0) and op.stride == (1, 1) and cin % 4 == 0
        if op.dilation != (1, 1):
            op.path = "reference ConvPerChannel (dilation)"
            c["mac_cycles"] = op.macs_valid * BLOCK_COST["scalar"]
        else:
            blocks = _conv_blocks(pixels, cout, k)
            c["mac_cycles"] = sum(BLOCK_COST[b] * v for b, v in blocks.items())
            if one_by_one:
                # arm_nn_mat_mult_nt_t_s8 on the int8 input directly (no im2col):
                # per pair of filter rows, the row sums times the input offset are
                # computed once (cin x cout elements) and the row loop is set up
                op.path = "arm_convolve_1x1_s8_fast"
                c["im2col_cycles"] = cin * cout
                c["call_cycles"] = (cout + 1) // 2
            else:
                # im2col: every output pixel converts its K-element patch to q15
                # (with the input offset), one helper call per kernel tap (a
                # padded tap is a memset); the matrix kernel (2 columns) is called
                # once per pixel pair
                op.path = "arm_convolve_s8"
                c["im2col_cycles"] = pixels * k
                c["call_cycles"] = pixels * kh * kw + (pixels + 1) // 2
                op.scratch_bytes = 2 * k * 2
        c["out_cycles"] = op.out_elems
        # arm_convolve_s8 sweeps the whole filter once per pair of output pixels;
        # the 1x1 kernel keeps a pair of filter rows while it sweeps the pixels,
        # so it re-fetches them only when the pair does not fit the ART data cache
        if one_by_one and 2 * cin <= ART_DCACHE_BYTES:
            op.flash_bytes = float(op.weight_bytes)
        else:
            op.flash_bytes = _flash_rereads(op.weight_bytes, max((pixels + 1) // 2, 1))
    elif t == "DEPTHWISE_CONV_2D" and int8:
        n, ih, iw, cin = _nhwc(op.in_shape)
        _, oh, ow, cout = _nhwc(op.out_shape)
        kh, kw = op.kernel
        pixels = n * oh * ow
        if op.depth_multiplier == 1 and cin == cout and op.dilation == (1, 1):
            op.path = "arm_depthwise_conv_s8_opt"
            ch4 = (cout // 4) * 4
            c["mac_cycles"] = pixels * kh * kw * (ch4 * DW_SIMD_COST + (cout - ch4) * BLOCK_COST["scalar"])
            # per output pixel: the patch is copied to q15 one tap at a time
            # (kh*kw calls: q7->q15 with offset, or a memset where padded),
            # then the channel loop is set up (one more)
            c["im2col_cycles"] = pixels * kh * kw * cin
            c["call_cycles"] = pixels * (kh * kw + 1)
            op.scratch_bytes = kh * kw * cin * 2
        else:
            op.path = "arm_depthwise_conv_s8"
            c["mac_cycles"] = op.macs_valid * BLOCK_COST["scalar"]
        c["out_cycles"] = op.out_elems
        op.flash_bytes = _flash_rereads(op.weight_bytes, pixels)
    elif t == "FULLY_CONNECTED" and int8:
        op.path = "arm_fully_connected_s8"
        c["fc_mac_cycles"] = op.macs
        c["out_cycles"] = op.out_elems
        c["call_cycles"] = max(op.macs // max(op.in_ch * op.out_ch, 1), 1)  # one per batch row
        op.flash_bytes = float(op.weight_bytes)
    elif t in ("AVERAGE_POOL_2D", "MAX_POOL_2D") and int8:
        op.path = "arm_avgpool_s8" if t == "AVERAGE_POOL_2D" else "arm_max_pool_s8"
        vy, vx = op.options.get("_valid_taps_hw", (op.kernel[0], op.kernel[1]))
        n, ih, iw, cin = _nhwc(op.in_shape)
        c["byte_cycles"] = n * vy * vx * cin  # every window element is read once
        c["out_cycles"] = op.out_elems
        op.scratch_bytes = cin * 4 if t == "AVERAGE_POOL_2D" else 0
    elif t == "ADD" and int8:
        op.path = "arm_elementwise_add_s8"
        c["out_cycles"] = ADD_REQUANTS * op.out_elems
        c["byte_cycles"] = 3 * op.out_elems
    elif t == "MUL" and int8:
        op.path = "arm_elementwise_mul_s8"
        c["out_cycles"] = op.out_elems
        c["byte_cycles"] = 3 * op.out_elems
    elif t == "SOFTMAX":
        op.path = "arm_softmax_s8" if int8 else "reference Softmax"
        c["out_cycles"] = SOFTMAX_PASSES * op.out_elems
        c["byte_cycles"] = 2 * op.out_elems
    elif t in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS"):
        op.path = "reference Reshape (memcpy)"
        c["byte_cycles"] = out_bytes
    elif t in ("QUANTIZE", "DEQUANTIZE", "RELU", "RELU6", "LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU"):
        op.path = f"reference {t.title()}"
        c["out_cycles"] = op.out_elems
        c["byte_cycles"] = in_bytes + out_bytes
    else:
        # generic memory-bound op: one pass over inputs and output
        op.path = f"reference {t}"
        ins = sum(tensors[i].nbytes for i in op.inputs if i >= 0 and not tensors[i].const)
        c["byte_cycles"] = ins + out_bytes
        if t in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and op.macs_valid:
            c["mac_cycles"] = op.macs_valid * BLOCK_COST["scalar"]
            c["out_cycles"] = op.out_elems
    op.counts = c


#: ART accelerator data cache of the STM32L4+ (RM0432: 8 lines x 4 x 64 bit)
ART_DCACHE_BYTES = 256
#: flash line read by one access (64-bit)
FLASH_LINE_BYTES = 8


def _flash_rereads(weight_bytes: int, passes: int) -> float:
    """Weight bytes fetched from flash when the kernel sweeps the weights
    ``passes`` times: a sweep that fits the ART data cache is fetched once."""
    if weight_bytes <= ART_DCACHE_BYTES:
        return float(weight_bytes)
    return float(weight_bytes) * passes


def flash_wait_states(clock_mhz: float, mhz_per_ws: float = 20.0) -> int:
    """Flash latency the firmware must program at this HCLK (RM0432 table 12,
    range 1: 0 WS up to 20 MHz, +1 per 20 MHz, 5 WS at 120 MHz)."""
    return max(int(math.ceil(clock_mhz / mhz_per_ws - 1e-9)) - 1, 0)


# --------------------------------------------------------------------------
# profile
# --------------------------------------------------------------------------
#: parameters of the inference model, with their meaning (cycles per unit)
PARAM_DOC = {
    "mac_cycles": "cycles per MAC of the 2x2-blocked dual-MAC (SMLAD) matrix kernel "
    "(arm_nn_mat_mult_kernel_s8_s16, conv and 1x1 paths); narrower blocks, scalar tails "
    "and the depthwise kernel cost fixed multiples of it (BLOCK_COST, DW_SIMD_COST)",
    "fc_mac_cycles": "cycles per MAC of the vector x matrix kernel (arm_fully_connected_s8)",
    "im2col_cycles": "cycles per element converted to q15 with offset by im2col",
    "call_cycles": "cycles per call of a helper kernel (one im2col copy per kernel tap or row, "
    "one matrix-kernel call per pixel pair, the per-pixel set-up of the depthwise kernel): "
    "call, prologue, pointer and padding arithmetic",
    "out_cycles": "cycles per requantized output element (multiply-high, rounding shift, "
    "offset, clamp, store)",
    "op_cycles": "cycles per operator: interpreter dispatch and kernel prologue",
    "byte_cycles": "cycles per byte moved by memory-bound ops (reshape, pooling, add, softmax)",
    "flash_stall_per_line": "stall cycles per wait state for each 64-bit flash line of "
    "weights fetched by the data bus (1 = the full wait-state latency is exposed)",
}


@dataclass
class KernelProfile:
    """The cycle model's parameters for one kernel stack on one core (the
    shipped one: TFLM 2.3.1 + CMSIS-NN on the STM32L4R5 at 120 MHz): per-MAC,
    per-call, per-operator and per-byte costs (:data:`PARAM_DOC`), flash wait
    states, the firmware's fixed costs, and the provenance of the fit
    (``tinytwin calibrate`` writes new ones)."""

    name: str
    clock_mhz: float
    params: dict[str, float]
    provenance: dict[str, Any] = field(default_factory=dict)
    firmware: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "KernelProfile":
        p = Path(path) if path is not None else DEFAULT_PROFILE
        d = json.loads(p.read_text())
        return cls(
            name=d["name"],
            clock_mhz=float(d.get("clock_mhz", 120.0)),
            params={k: float(v) for k, v in d["params"].items()},
            provenance=d.get("provenance", {}),
            firmware=d.get("firmware", {}),
            memory=d.get("memory", {}),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "clock_mhz": self.clock_mhz,
            "params": dict(self.params),
            "param_doc": {k: PARAM_DOC[k] for k in self.params if k in PARAM_DOC},
            "firmware": self.firmware,
            "memory": self.memory,
            "provenance": self.provenance,
        }

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return p

    def copy(self, **changes) -> "KernelProfile":
        k = copy.deepcopy(self)
        for a, v in changes.items():
            setattr(k, a, v)
        return k


# --------------------------------------------------------------------------
# estimate
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerEstimate:
    index: int
    op_type: str
    path: str
    macs: int
    cycles: float
    us: float
    #: of which flash wait states
    flash_cycles: float = 0.0


@dataclass(frozen=True)
class ArenaEstimate:
    activations: int
    scratch: int
    persistent: int

    @property
    def total(self) -> int:
        return self.activations + self.scratch + self.persistent


@dataclass(frozen=True)
class MemoryFit:
    arena_bytes: int
    arena_source: str
    stack_bytes: int
    sram_bytes: int
    model_bytes: int
    flash_bytes: int

    @property
    def sram_used(self) -> int:
        return self.arena_bytes + self.stack_bytes

    @property
    def fits(self) -> bool:
        return self.sram_used <= self.sram_bytes and self.model_bytes <= self.flash_bytes

    @property
    def verdict(self) -> str:
        over = []
        if self.sram_used > self.sram_bytes:
            over.append(f"SRAM over by {self.sram_used - self.sram_bytes} B")
        if self.model_bytes > self.flash_bytes:
            over.append(f"flash over by {self.model_bytes - self.flash_bytes} B")
        return "fits" if not over else "; ".join(over)


@dataclass(frozen=True)
class Estimate:
    model: str
    profile: str
    clock_mhz: float
    cycles: float
    latency_us: float
    layers: list[LayerEstimate]
    memory: MemoryFit
    macs: int
    flash_wait_states: int

    def to_dict(self) -> dict[str, Any]:
        m = self.memory
        return {
            "model": self.model,
            "profile": self.profile,
            "clock_mhz": self.clock_mhz,
            "cycles": self.cycles,
            "latency_us": self.latency_us,
            "macs": self.macs,
            "flash_wait_states": self.flash_wait_states,
            "layers": [
                {"index": l.index, "op_type": l.op_type, "path": l.path, "macs": l.macs,
                 "cycles": l.cycles, "us": l.us, "flash_cycles": l.flash_cycles}
                for l in self.layers
            ],
            "memory": {
                "arena_bytes": m.arena_bytes, "arena_source": m.arena_source,
                "stack_bytes": m.stack_bytes, "sram_used": m.sram_used, "sram_bytes": m.sram_bytes,
                "model_bytes": m.model_bytes, "flash_bytes": m.flash_bytes,
                "fits": m.fits, "verdict": m.verdict,
            },
        }


def op_cycles(op: OpInfo, params: dict[str, float], clock_mhz: float,
              mhz_per_ws: float = 20.0) -> tuple[float, float]:
    """(total cycles, of which flash stalls) of one op; ``mhz_per_ws``: the
    board's flash latency step (the profile's ``memory.flash_mhz_per_ws``)."""
    core = sum(params.get(k, 0.0) * v for k, v in op.counts.items())
    ws = flash_wait_states(clock_mhz, mhz_per_ws)
    stall = params.get("flash_stall_per_line", 0.0) * ws * op.flash_bytes / FLASH_LINE_BYTES
    return core + stall, stall


def graph_cycles(graph: Graph, params: dict[str, float], clock_mhz: float, mhz_per_ws: float = 20.0) -> float:
    return sum(op_cycles(op, params, clock_mhz, mhz_per_ws)[0] for op in graph.ops)


def feature_vector(graph: Graph, names: Iterable[str], clock_mhz: float, mhz_per_ws: float = 20.0) -> np.ndarray:
    """d(cycles)/d(param) for the given parameter names: the model is linear
    in its parameters (used by the calibration)."""
    names = list(names)
    ws = flash_wait_states(clock_mhz, mhz_per_ws)
    v = np.zeros(len(names))
    for op in graph.ops:
        for j, n in enumerate(names):
            if n == "flash_stall_per_line":
                v[j] += ws * op.flash_bytes / FLASH_LINE_BYTES
            else:
                v[j] += op.counts.get(n, 0.0)
    return v


def flash_mhz_per_ws(profile: KernelProfile) -> float:
    """The board's flash latency step (MHz per wait state): the profile's
    ``memory.flash_mhz_per_ws`` (a board description sets it), else the
    STM32L4R5's 20 MHz."""
    return float((profile.memory or {}).get("flash_mhz_per_ws", 20.0))


def measured_arena(graph: Graph) -> int | None:
    """The smallest arena in which the TFLM runtime of the ``tflite-micro``
    package allocates this model, measured by :mod:`emulator.models` (a current
    TFLM, leaner in persistent allocations than v2.3.1); None if unavailable."""
    try:
        from emulator.models.backends import TFLMBackend
    except Exception:
        return None
    try:
        v = TFLMBackend.arena_needed(graph.raw)
    except Exception:
        return None
    return int(v) if v else None


def estimate(
    model: "str | Path | bytes | Graph",
    profile: KernelProfile | None = None,
    clock_mhz: float | None = None,
    arena: str = "estimate",
) -> Estimate:
    """Latency of one inference of ``model`` under ``profile`` at ``clock_mhz``
    (default: the profile's clock), per layer, with the memory fit.

    ``arena``: ``"estimate"`` (tensor lifetimes + TFLM 2.3.1 bookkeeping, see
    :func:`estimate_arena`) or ``"measured"`` (:func:`measured_arena`, falls
    back to the estimate when emulator.models is not available)."""
    g = load_graph(model)
    prof = profile if profile is not None else KernelProfile.load()
    f = float(clock_mhz if clock_mhz is not None else prof.clock_mhz)
    ws_step = flash_mhz_per_ws(prof)
    layers = []
    total = 0.0
    for op in g.ops:
        cyc, stall = op_cycles(op, prof.params, f, ws_step)
        total += cyc
        layers.append(LayerEstimate(op.index, op.op_type, op.path, op.macs, cyc, cyc / f, stall))
    mem = prof.memory or {}
    if arena not in ("estimate", "measured"):
        raise ValueError(f"arena must be 'estimate' or 'measured', not {arena!r}")
    measured = measured_arena(g) if arena == "measured" else None
    arena_bytes = measured if measured is not None else estimate_arena(g).total
    fit = MemoryFit(
        arena_bytes=int(arena_bytes),
        arena_source="measured (emulator.models, current TFLM)" if measured is not None
        else "estimate (tensor lifetimes, TFLM 2.3.1 bookkeeping)",
        stack_bytes=int(mem.get("stack_bytes", 0)),
        sram_bytes=int(mem.get("sram_bytes", L4R5_SRAM_BYTES)),
        model_bytes=g.model_bytes,
        flash_bytes=int(mem.get("flash_bytes", L4R5_FLASH_BYTES)),
    )
    return Estimate(
        model=g.name, profile=prof.name, clock_mhz=f, cycles=total, latency_us=total / f,
        layers=layers, memory=fit, macs=g.macs, flash_wait_states=flash_wait_states(f, ws_step),
    )


# --------------------------------------------------------------------------
# arena
# --------------------------------------------------------------------------
#: TFLM v2.3.1 on a 32-bit target: sizeof(TfLiteTensor), per-node bookkeeping
#: (TfLiteNode + registration pointer), OpData of a kernel, alignment
TFLM_TENSOR_STRUCT = 64
TFLM_NODE_STRUCT = 40
TFLM_OPDATA = 64
TFLM_ALIGN = 16


def _align(n: int, a: int = TFLM_ALIGN) -> int:
    return (n + a - 1) // a * a


def estimate_arena(graph: Graph) -> ArenaEstimate:
    """TFLM-style arena estimate: activations placed by a greedy first-fit over
    their lifetimes (as TFLM's GreedyMemoryPlanner does), plus kernel scratch
    buffers (persistent in TFLM 2.3.1's CMSIS-NN kernels) and the interpreter's
    persistent structures (TfLiteTensor per tensor, nodes, OpData, per-channel
    multipliers/shifts, quantization zero-point arrays)."""
    n_ops = len(graph.ops)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i in graph.inputs:
        first[i] = 0
    for op in graph.ops:
        for t in op.inputs + op.outputs:
            if t < 0 or graph.tensors[t].const:
                continue
            first.setdefault(t, op.index)
            first[t] = min(first[t], op.index)
            last[t] = max(last.get(t, op.index), op.index)
    for o in graph.outputs:
        last[o] = n_ops - 1
        first.setdefault(o, n_ops - 1)
    bufs = sorted(
        ((_align(graph.tensors[t].nbytes), first[t], last.get(t, first[t]), t) for t in first),
        key=lambda b: (-b[0], b[1]),
    )
    placed: list[tuple[int, int, int, int]] = []  # offset, size, first, last
    high = 0
    for size, a, b, _t in bufs:
        overlapping = sorted((o, s) for o, s, fa, fb in placed if not (fb < a or fa > b))
        off = 0
        for o, s in overlapping:
            if off + size <= o:
                break
            off = max(off, o + s)
        placed.append((off, size, a, b))
        high = max(high, off + size)
    scratch = sum(_align(op.scratch_bytes) for op in graph.ops if op.scratch_bytes)
    persistent = len(graph.tensors) * TFLM_TENSOR_STRUCT + n_ops * (TFLM_NODE_STRUCT + TFLM_OPDATA)
    for op in graph.ops:
        if op.op_type in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            persistent += _align(8 * op.out_ch)
    for t in graph.tensors:
        if t.n_scales:
            persistent += _align(4 * (t.n_scales + 1) + 16)
    return ArenaEstimate(activations=high, scratch=scratch, persistent=persistent)


# --------------------------------------------------------------------------
# firmware time (UART, printf, th_load_tensor, commands, boot)
# --------------------------------------------------------------------------
LAP_FORMAT = "m-lap-us-{}\r\n"


def uart_char_us(baud: float, bits_per_char: int = 10) -> float:
    return bits_per_char * 1e6 / baud


def model_name_of(model: "str | Path | bytes | Graph") -> str:
    if isinstance(model, Graph):
        return model.name
    if isinstance(model, (bytes, bytearray)):
        return "<bytes>"
    return Path(str(model)).stem


def perf_baud(model: "str | Path | bytes | Graph", profile: KernelProfile | None = None) -> int:
    """UART baud of the performance-mode firmware for this model (the ad01
    reference firmware runs at 921600, the others at 115200)."""
    prof = profile if profile is not None else KernelProfile.load()
    fw = prof.firmware or {}
    return int(fw.get("baud", {}).get(model_name_of(model), fw.get("default_baud", 115200)))


def lap_print_us(
    profile: KernelProfile | None = None,
    baud: float | None = None,
    timestamp_us: int | None = None,
    clock_mhz: float | None = None,
) -> float:
    """Time the firmware is blocked printing one ``m-lap-us-<t>`` line: the
    characters go out at 10 bit times each (the UART holds two characters,
    the previous line's last ones are still in it, so the call returns after
    about one line time), plus the printf call overhead (CPU time, scales
    with the clock)."""
    prof = profile if profile is not None else KernelProfile.load()
    fw = prof.firmware or {}
    b = float(baud if baud is not None else fw.get("default_baud", 115200))
    digits = len(str(int(timestamp_us))) if timestamp_us is not None else int(fw.get("lap_digits", 9))
    chars = len(LAP_FORMAT.format("0" * digits))
    f = float(clock_mhz if clock_mhz is not None else prof.clock_mhz)
    overhead = float(fw.get("printf_overhead_us", 0.0)) * prof.clock_mhz / f
    return chars * uart_char_us(b, int(fw.get("bits_per_char", 10))) + overhead


def window_us(
    model: "str | Path | bytes | Graph",
    n: int,
    profile: KernelProfile | None = None,
    clock_mhz: float | None = None,
    baud: float | None = None,
    timestamp_us: int | None = None,
) -> float:
    """What the board prints as the difference of the two ``m-lap-us-`` lines
    of ``infer n w``: the first timestamp is read, its line printed (blocking),
    then n inferences run, then the second timestamp is read.

    ``baud`` defaults to the model's performance-mode baud (profile
    ``firmware.baud``); ``timestamp_us`` (the first lap value) sets the line
    length, default ``firmware.lap_digits`` digits."""
    prof = profile if profile is not None else KernelProfile.load()
    b = baud if baud is not None else perf_baud(model, prof)
    est = estimate(model, prof, clock_mhz)
    return n * est.latency_us + lap_print_us(prof, b, timestamp_us, est.clock_mhz)


def energy_window_us(
    model: "str | Path | bytes | Graph",
    n: int,
    profile: KernelProfile | None = None,
    clock_mhz: float | None = None,
) -> float:
    """Energy mode: the time between the two falling edges of the timestamp
    GPIO around ``infer n w`` (the first ``th_timestamp()`` holds the pin low
    for a 100000-iteration nop loop, then n inferences run)."""
    prof = profile if profile is not None else KernelProfile.load()
    est = estimate(model, prof, clock_mhz)
    hold = float((prof.firmware or {}).get("timestamp_hold_us", 0.0)) * prof.clock_mhz / est.clock_mhz
    return hold + n * est.latency_us


@dataclass(frozen=True)
class FirmwareTiming:
    """Firmware costs other than the inference, for the SimPy DUT model."""

    command_overhead_us: float
    boot_ms: float
    printf_overhead_us_per_call: float
    timestamp_hold_us: float
    bits_per_char: int
    load_tensor_cycles_per_byte: float
    float_quantize_cycles: float
    load_tensor_stages: dict[str, list[str]]
    clock_mhz: float

    def load_tensor_us(self, model: str, input_bytes: int | None = None, clock_mhz: float | None = None) -> float:
        """``th_load_tensor()`` of the reference firmware for ``model``: the
        copy out of the ``db`` buffer, the per-model conversion and the copy
        into the input tensor (``input_bytes``: bytes the host loaded)."""
        name = model_name_of(model)
        stages = self.load_tensor_stages.get(name, self.load_tensor_stages.get("default", ["copy", "copy"]))
        nbytes = input_bytes if input_bytes is not None else DEFAULT_INPUT_BYTES.get(name, 0)
        cyc = 0.0
        for s in stages:
            if s == "quantize_f32":  # QuantizeFloatToInt8 on every float
                cyc += (nbytes // 4) * self.float_quantize_cycles
            elif s == "copy_quantized":  # copy of the int8 result (one byte per float)
                cyc += (nbytes // 4) * self.load_tensor_cycles_per_byte
            else:  # copy / sub128 / u8_to_s8: one byte loop each
                cyc += nbytes * self.load_tensor_cycles_per_byte
        f = clock_mhz if clock_mhz is not None else self.clock_mhz
        return cyc / f


#: bytes the host sends for one input of each official model
DEFAULT_INPUT_BYTES = {"kws01": 490, "vww01": 27648, "ic01": 3072, "ad01": 2560}


def firmware_timing(profile: KernelProfile | None = None, clock_mhz: float | None = None) -> FirmwareTiming:
    prof = profile if profile is not None else KernelProfile.load()
    fw = prof.firmware or {}
    f = float(clock_mhz if clock_mhz is not None else prof.clock_mhz)
    scale = prof.clock_mhz / f
    lt = fw.get("load_tensor", {})
    return FirmwareTiming(
        command_overhead_us=float(fw.get("command_overhead_us", 0.0)) * scale,
        boot_ms=float(fw.get("boot_ms", 0.0)),
        printf_overhead_us_per_call=float(fw.get("printf_overhead_us", 0.0)) * scale,
        timestamp_hold_us=float(fw.get("timestamp_hold_us", 0.0)) * scale,
        bits_per_char=int(fw.get("bits_per_char", 10)),
        load_tensor_cycles_per_byte=float(lt.get("cycles_per_byte", 0.0)),
        float_quantize_cycles=float(lt.get("float_quantize_cycles", 0.0)),
        load_tensor_stages={k: list(v) for k, v in lt.get("stages", {}).items()},
        clock_mhz=f,
    )
