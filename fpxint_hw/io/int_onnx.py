"""The compiled integer program as a standard ONNX graph (``fpxint export --format int-onnx``).

:func:`int_onnx_model` writes a :class:`~fpxint_hw.quant.QProgram` (the program the fast
simulator runs) as an ONNX model that onnxruntime and ``onnx.reference`` run. Its input
``float_input`` is the float batch (NCHW float32, as the simulator takes it); its output
``int_output`` is the program's last integer tensor, equal to the simulator's bit for bit.

Between the input quantization and the output every operation is on integers, following
docs/numerics.md:

* the input quantization ``clamp(rint(x / unit) + zero_point, lo, hi)`` is the one float
  step: ``Cast`` to float64, ``Div`` by the float64 ``unit``, ``Round`` (half to even), ``Add``,
  ``Clip``, ``Cast`` to int64, the same IEEE operations the simulator's numpy performs;
* a conv / linear layer splits its input into the format's activation terms (uint8 digit
  planes ``<tensor>/a<j>``) and runs one ``ConvInteger`` / ``MatMulInteger`` per lane
  ``<layer>/w<k>a<j>`` (weight term k, activation term j, both numbered from 1); each lane's
  exact int32 sum is cast to int64, scaled by its lane weight ``m_k n_j`` and added (the
  AbelianAdd); the bias is added, then one requantization;
* rounding shifts are the model-local functions ``fpxint.RoundShiftRNE``,
  ``fpxint.RoundShiftHalfUp`` and ``fpxint.FloorShift`` (``BitwiseXor`` with the sign mask,
  ``BitShift`` on uint64, ``BitwiseAnd``, comparisons; no division);
* adds, pools and clamps are int64 ``Mul`` / ``Add`` / ``ReduceSum`` / ``Slice`` / ``Max`` /
  ``Clip``: a pool is the elementwise Max or sum of its window's strided slices (onnxruntime's
  ``MaxPool`` takes no int64, and ``onnx.reference``'s fails on integers at stride 1).

Digit planes are uint8: a signed activation term ``q`` is stored as ``q + 2^(b-1) - 1``
(from 0 up) with that zero point, a weight term as ``w + 128`` with zero point 128 (uint8 x uint8 is exact on
every CPU; uint8 x int8 pair sums saturate 16 bits on CPUs without VNNI). Every lane's int32
sum is bounded before the export (WidthError otherwise).

Every tensor a program layer produces keeps the layer's name, so :func:`run_int_onnx` can
return any layer and :func:`compare_int_outputs` name the first that differs. The writer
reads a program through its ops' ``kind`` and fields: like the other ONNX writers this module
is in the networks layer and imports nothing from :mod:`fpxint_hw.quant`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError, WidthError, missing_tool
from ..series import split_integer

__all__ = ["int_onnx_model", "save_int_onnx", "run_int_onnx", "compare_int_outputs",
           "load_int_onnx", "layer_names", "require_onnx", "require_onnxruntime", "KINDS",
           "INPUT_NAME", "OUTPUT_NAME", "INT_ONNX_OPSET", "DOMAIN", "RUNTIMES"]

#: Opset of the written graphs (BitwiseAnd needs 18).
INT_ONNX_OPSET = 18
#: Domain of the rounding-shift functions the graph defines for itself.
DOMAIN = "fpxint"
#: Names of the graph's float input and integer output.
INPUT_NAME, OUTPUT_NAME = "float_input", "int_output"
#: Runtimes :func:`run_int_onnx` runs a graph on.
RUNTIMES = ("ort", "reference")
#: Metadata key holding the program's layer names, in execution order (JSON list).
_LAYERS_KEY = "fpxint.layers"

_INT32_MAX = (1 << 31) - 1
_W_ZERO_POINT = 128             # weight terms are stored as uint8 w + 128 (|w| <= 127)
_INT64_LIMIT = 1 << 63
_SHIFT_FUNCTIONS = {"floor": "FloorShift", "rne": "RoundShiftRNE", "half_up": "RoundShiftHalfUp"}


def require_onnx(what: str):
    """The ``onnx`` module; ToolMissingError naming ``what`` and the install command."""
    try:
        import onnx
    except ImportError:
        raise missing_tool("onnx", "pip install onnx", what=what,
                           reason="writing and reading ONNX needs the 'onnx' package") from None
    return onnx


def require_onnxruntime(what: str):
    """The ``onnxruntime`` module; ToolMissingError naming ``what`` and the install command."""
    try:
        import onnxruntime
    except ImportError:
        raise missing_tool("onnxruntime", "pip install onnxruntime", what=what) from None
    return onnxruntime



# -- the rounding-shift functions --------------------------------------------------------------

def _shift_body(mode: str, h, nh, T) -> list:
    """Nodes computing ``y = round_shift(x, n, mode)`` (or ``floor(x / 2^n)``) for int64 ``x``
    and a uint64 shift ``n`` in 0..62 (docs/numerics.md):

    floor: ``~(~x >> n)`` for a negative ``x`` and ``x >> n`` otherwise, as ``((x ^ s) >> n) ^
    s`` with the sign mask ``s = -(x < 0)``, so that the uint64 BitShift sees only
    non-negative values (exact for every int64); ``rem = x & (2^n - 1)``; rounding up when
    ``2 rem > 2^n``, or ``2 rem == 2^n`` and (rne) the floor is odd / (half_up) always.
    """
    def const(name, value, dtype):
        return h.make_node("Constant", [], [name], value=nh.from_array(np.array(value, dtype),
                                                                        name))

    out = "y" if mode == "floor" else "q"
    nodes = [const("zero", 0, np.int64),
             h.make_node("Less", ["x", "zero"], ["negative"]),
             h.make_node("Cast", ["negative"], ["negative_int"], to=T.INT64),
             h.make_node("Neg", ["negative_int"], ["sign"]),
             h.make_node("BitwiseXor", ["x", "sign"], ["magnitude"]),
             h.make_node("Cast", ["magnitude"], ["magnitude_u64"], to=T.UINT64),
             h.make_node("BitShift", ["magnitude_u64", "n"], ["shifted_u64"], direction="RIGHT"),
             h.make_node("Cast", ["shifted_u64"], ["shifted"], to=T.INT64),
             h.make_node("BitwiseXor", ["shifted", "sign"], [out])]
    if mode == "floor":
        return nodes
    nodes += [const("one", 1, np.int64), const("one_u64", 1, np.uint64), const("two", 2, np.int64),
              h.make_node("BitShift", ["one_u64", "n"], ["step_u64"], direction="LEFT"),
              h.make_node("Cast", ["step_u64"], ["step"], to=T.INT64),
              h.make_node("Sub", ["step", "one"], ["mask"]),
              h.make_node("BitwiseAnd", ["x", "mask"], ["rem"]),
              h.make_node("Mul", ["rem", "two"], ["rem2"])]
    if mode == "half_up":
        nodes.append(h.make_node("GreaterOrEqual", ["rem2", "step"], ["up"]))
    else:
        nodes += [h.make_node("Greater", ["rem2", "step"], ["above_half"]),
                  h.make_node("Equal", ["rem2", "step"], ["tie"]),
                  h.make_node("BitwiseAnd", ["q", "one"], ["low_bit"]),
                  h.make_node("Equal", ["low_bit", "one"], ["odd"]),
                  h.make_node("And", ["tie", "odd"], ["tie_to_even"]),
                  h.make_node("Or", ["above_half", "tie_to_even"], ["up"])]
    return nodes + [h.make_node("Cast", ["up"], ["up_int"], to=T.INT64),
                    h.make_node("Add", ["q", "up_int"], ["y"])]


def _functions() -> list:
    """The rounding-shift functions every int-onnx graph carries."""
    from onnx import TensorProto, helper, numpy_helper
    return [helper.make_function(DOMAIN, name, ["x", "n"], ["y"],
                                 _shift_body(mode, helper, numpy_helper, TensorProto),
                                 [helper.make_opsetid("", INT_ONNX_OPSET)])
            for mode, name in _SHIFT_FUNCTIONS.items()]


def _magic_divisor(d: int, bound: int, what: str) -> tuple[int, int, int]:
    """``(k, m, s)`` with ``floor(x / d) == ((x + k d) * m >> s) - k`` for every integer
    ``|x| <= bound``, every product below 2^63 (a division-free exact floor division).

    ``y = x + k d`` lies in ``[0, Y]``; with ``2^s > Y d`` and ``m = ceil(2^s / d) = (2^s + e)
    / d``, ``e < d``: ``y m / 2^s = y / d + y e / (d 2^s)`` and ``y e < 2^s``, so the excess
    stays below ``1 / d`` and the floor is unchanged.
    """
    k = -(-bound // d)
    top = bound + k * d
    s = (top * d).bit_length()
    m = -(-(1 << s) // d)
    if top * m >= _INT64_LIMIT:
        raise WidthError(f"{what}: splitting values up to {bound} by the lane weight {d} "
                         f"without division needs {(top * m).bit_length()} bits, more than "
                         f"int64; use the pow2 scale (power-of-two lane weights)")
    return k, m, s


# -- the graph builder -------------------------------------------------------------------------

class _Builder:
    """Nodes and initializers, every name used once (a node is named after its output)."""

    def __init__(self):
        from onnx import TensorProto, helper, numpy_helper
        self.h, self.nh, self.T = helper, numpy_helper, TensorProto
        self.nodes, self.inits, self.names = [], [], {INPUT_NAME}

    def fresh(self, name: str) -> str:
        if name in self.names:
            raise InputError(f"int-onnx export: tensor name {name!r} is taken twice (a layer "
                             f"named like another's part, or {INPUT_NAME!r} / "
                             f"{OUTPUT_NAME!r}); rename the layer in the model")
        self.names.add(name)
        return name

    def const(self, name: str, value, dtype) -> str:
        self.inits.append(self.nh.from_array(np.asarray(value, dtype=dtype), self.fresh(name)))
        return name

    def shared(self, name: str, value, dtype) -> str:
        """A constant several nodes read: made on first use."""
        return name if name in self.names else self.const(name, value, dtype)

    def node(self, op: str, inputs: list[str], out: str, domain: str = "", **attrs) -> str:
        self.nodes.append(self.h.make_node(op, inputs, [self.fresh(out)], name=out,
                                           domain=domain, **attrs))
        return out


class _Writer:
    """One program's graph: a method per op kind, each ending in a tensor named like the
    layer."""

    def __init__(self, program, builder: _Builder):
        self.p, self.b = program, builder
        self.tensors = program.tensors()
        self.planes: dict[str, list[tuple[str, int]]] = {}
        self.weights: dict[str, tuple[str, int, int]] = {}

    # small helpers

    def shift(self, x: str, n, mode: str, out: str, shape=()) -> str:
        """``round_shift(x, n, mode)`` (``mode="floor"``: ``floor(x / 2^n)``), ``n`` an int or
        one per channel (reshaped to ``shape``); no node for ``n = 0``."""
        n = np.asarray(n, dtype=np.int64)
        if not n.any():
            return x
        amount = self.b.const(f"{out}/n", n.reshape(shape) if n.ndim else n, np.uint64)
        return self.b.node(_SHIFT_FUNCTIONS[mode], [x, amount], out, domain=DOMAIN)

    def mul(self, x: str, m, out: str, shape=()) -> str:
        m = np.asarray(m, dtype=np.int64)
        if m.ndim == 0 and int(m) == 1:
            return x
        return self.b.node("Mul", [x, self.b.const(f"{out}/m", m.reshape(shape) if m.ndim
                                                   else m, np.int64)], out)

    def add_const(self, x: str, c, out: str, shape=()) -> str:
        c = np.asarray(c, dtype=np.int64)
        if not c.any():
            return x
        return self.b.node("Add", [x, self.b.const(f"{out}/c", c.reshape(shape) if c.ndim
                                                   else c, np.int64)], out)

    def clip(self, x: str, lo: int, hi: int, out: str) -> str:
        return self.b.node("Clip", [x, self.b.const(f"{out}/lo", lo, np.int64),
                                    self.b.const(f"{out}/hi", hi, np.int64)], out)

    def total(self, parts: list[str], out: str) -> str:
        """The AbelianAdd of ``parts`` (int64): a chain of Adds ending in ``out``."""
        acc = parts[0]
        for i, part in enumerate(parts[1:], start=1):
            acc = self.b.node("Add", [acc, part], out if i == len(parts) - 1 else f"{out}/{i}")
        return acc if len(parts) > 1 else self.b.node("Identity", [acc], out)

    def pad(self, x: str, padding, value, dtype, out: str) -> str:
        top, left, bottom, right = padding
        if not any(padding):
            return x
        pads = self.b.const(f"{out}/pads", [0, 0, top, left, 0, 0, bottom, right], np.int64)
        return self.b.node("Pad", [x, pads, self.b.const(f"{out}/value", value, dtype)], out,
                           mode="constant")

    def taps(self, x: str, kernel, stride, out: str) -> list[str]:
        """The ``kh * kw`` strided slices of a padded NCHW tensor, one per window position."""
        (kh, kw), (sh, sw) = kernel, stride
        names = []
        steps = self.b.const(f"{out}/steps", [sh, sw], np.int64)
        axes = self.b.const(f"{out}/axes", [2, 3], np.int64)
        for i in range(kh):
            for j in range(kw):
                # rows i, i + sh, ... while a whole window still fits: end = size - (kh-1-i)
                ends = [-(kh - 1 - i) if i < kh - 1 else _INT64_LIMIT - 1,
                        -(kw - 1 - j) if j < kw - 1 else _INT64_LIMIT - 1]
                at = f"{out}/tap{i}_{j}"
                names.append(self.b.node("Slice", [x, self.b.const(f"{at}/starts", [i, j],
                                                                   np.int64),
                                                   self.b.const(f"{at}/ends", ends, np.int64),
                                                   axes, steps], at))
        return names

    # activation terms

    def digit_planes(self, name: str) -> list[tuple[str, int]]:
        """The activation terms of tensor ``name`` as uint8 planes ``(plane, zero point)``,
        split exactly as :func:`fpxint_hw.series.split_integer`: digit j is ``clamp(
        round_div(rem, m_j), qmin, qmax)`` (half to even for signed terms, floor for
        unsigned) and ``rem -= digit m_j``."""
        if name in self.planes:
            return self.planes[name]
        qt = self.tensors[name]
        fmt = qt.fmt
        mode = "rne" if fmt.signed else "floor"
        offset = -fmt.qmin if fmt.signed else 0          # signed digits stored from 0 up
        bound = max(abs(qt.lo), abs(qt.hi))
        rem, planes = name, []
        for j, m in enumerate(fmt.lane_weights):
            at = f"{name}/a{j + 1}"
            if m == 1:
                q = rem
            elif m & (m - 1) == 0:
                q = self.shift(rem, m.bit_length() - 1, mode, f"{at}/rounded")
            else:
                q = self.round_div(rem, m, mode, bound, f"{at}/rounded", name)
            digit = self.clip(q, fmt.qmin, fmt.qmax, f"{at}/digit")
            if j < fmt.terms - 1:
                rem = self.b.node("Sub", [rem, self.mul(digit, m, f"{at}/value")],
                                  f"{at}/rest")
                bound += max(-fmt.qmin, fmt.qmax) * m
            stored = self.add_const(digit, offset, f"{at}/stored")
            planes.append((self.b.node("Cast", [stored], at, to=self.b.T.UINT8), offset))
        self.planes[name] = planes
        return planes

    def round_div(self, x: str, d: int, mode: str, bound: int, out: str, tensor: str) -> str:
        """``round_div(x, d, mode)`` for a constant ``d`` that is no power of two, ``|x| <=
        bound``, by :func:`_magic_divisor` (no division); ``tensor`` names the split."""
        k, m, s = _magic_divisor(d, bound, f"tensor {tensor!r}")
        y = self.add_const(x, k * d, f"{out}/lifted")
        q = self.add_const(self.shift(self.mul(y, m, f"{out}/scaled"), s, "floor",
                                      f"{out}/floor_lifted"), -k, f"{out}/floor")
        if mode == "floor":
            return self.b.node("Identity", [q], out)
        rem2 = self.mul(self.b.node("Sub", [x, self.mul(q, d, f"{out}/back")], f"{out}/rem"),
                        2, f"{out}/rem2")
        dd = self.b.const(f"{out}/d", d, np.int64)
        above = self.b.node("Greater", [rem2, dd], f"{out}/above_half")
        tie = self.b.node("Equal", [rem2, dd], f"{out}/tie")
        one = self.b.const(f"{out}/one", 1, np.int64)
        odd = self.b.node("Equal", [self.b.node("BitwiseAnd", [q, one], f"{out}/low_bit"), one],
                          f"{out}/odd")
        up = self.b.node("Or", [above, self.b.node("And", [tie, odd], f"{out}/tie_to_even")],
                         f"{out}/up")
        return self.b.node("Add", [q, self.b.node("Cast", [up], f"{out}/up_int",
                                                  to=self.b.T.INT64)], out)

    # the ops

    def quantize(self, q) -> None:
        t, qt = self.b.T, q.out
        x = self.b.node("Cast", [INPUT_NAME], f"{q.name}/f64", to=t.DOUBLE)
        x = self.b.node("Div", [x, self.b.const(f"{q.name}/unit", qt.unit, np.float64)],
                        f"{q.name}/steps")
        x = self.b.node("Round", [x], f"{q.name}/rounded")
        if qt.zero_point:
            x = self.b.node("Add", [x, self.b.const(f"{q.name}/zero_point", qt.zero_point,
                                                    np.float64)], f"{q.name}/shifted")
        x = self.b.node("Clip", [x, self.b.const(f"{q.name}/lo", qt.lo, np.float64),
                                 self.b.const(f"{q.name}/hi", qt.hi, np.float64)],
                        f"{q.name}/clipped")
        self.b.node("Cast", [x], q.name, to=t.INT64)

    def gemm(self, q) -> None:
        conv = q.kind == "conv"
        xin = self.tensors[q.inputs[0]]
        fin = xin.fmt
        o = q.out_channels
        shape = (1, o, 1, 1) if conv else (1, o)
        planes = self.digit_planes(q.inputs[0])
        if conv and any(q.padding):
            pad_digits = split_integer(np.array([xin.zero_point]), fin)[:, 0]
            planes = [(self.pad(p, q.padding, int(dz) + off, np.uint8,
                                f"{q.name}/{p.rsplit('/', 1)[1]}_padded"), off)
                      for (p, off), dz in zip(planes, pad_digits)]
        a_max = fin.qmax + planes[0][1]                 # the largest stored digit
        mask = q.lanes_on(fin.terms)
        lanes: dict[int, list[str]] = {}
        for k, mk in enumerate(q.w_fmt.lane_weights):
            w, w_zp, w_raw = self.weight_term(q, k)
            for j, nj in enumerate(fin.lane_weights):
                if not mask[k, j]:
                    continue
                plane, a_zp = planes[j]
                lane = f"{q.name}/w{k + 1}a{j + 1}"
                self.check_lane(q, a_max, a_zp, w_raw, w_zp, lane)
                ins = [plane, w, self.b.shared(f"{q.name}/a{j + 1}_zero_point", a_zp, np.uint8),
                       self.b.shared(f"{q.name}/w_zero_point", w_zp, np.uint8)]
                if conv:
                    self.b.node("ConvInteger", ins, lane, kernel_shape=list(q.kernel),
                                strides=list(q.stride), dilations=list(q.dilation),
                                group=q.groups, pads=[0, 0, 0, 0])
                else:
                    self.b.node("MatMulInteger", ins, lane)
                wide = self.b.node("Cast", [lane], f"{lane}/int64", to=self.b.T.INT64)
                lanes.setdefault(k, []).append(self.mul(wide, mk * nj, f"{lane}/weighted"))
        if not lanes:                                   # every lane switched off: acc = bias
            plane, _ = planes[0]
            w = self.weight_term(q, 0)[0]
            zero = self.b.node("ConvInteger" if conv else "MatMulInteger", [plane, w],
                               f"{q.name}/no_lanes", **(dict(
                                   kernel_shape=list(q.kernel), strides=list(q.stride),
                                   dilations=list(q.dilation), group=q.groups,
                                   pads=[0, 0, 0, 0]) if conv else {}))
            zero = self.b.node("Cast", [zero], f"{zero}/int64", to=self.b.T.INT64)
            lanes = {0: [self.mul(zero, np.zeros(o), f"{q.name}/zero", shape)]}
        if self.p.level == "model":                     # basis models, then their sum
            parts = [self.total(v, f"{q.name}/basis{k + 1}") for k, v in lanes.items()]
        else:
            parts = [p for v in lanes.values() for p in v]
        acc = self.total(parts, f"{q.name}/lanes")
        bias = self.b.const(f"{q.name}/bias", np.asarray(q.bias, np.int64).reshape(shape),
                            np.int64)
        acc = self.b.node("Add", [acc, bias], f"{q.name}/acc")
        rq = q.requant
        if rq is None:                                  # the exact accumulator is the output
            self.b.node("Identity", [acc], q.name)
            return
        x = self.shift(acc, rq.pre_shift, rq.mode, f"{q.name}/pre_rounded", shape)
        x = self.mul(x, rq.multiplier, f"{q.name}/scaled", shape)
        x = self.shift(x, rq.shift, rq.mode, f"{q.name}/rounded")
        x = self.add_const(x, rq.zero_point, f"{q.name}/shifted")
        self.clip(x, rq.lo, rq.hi, q.name)

    def weight_term(self, q, k: int) -> tuple[str, int, int]:
        """Weight term ``k`` as a uint8 initializer ``w + 128`` with zero point 128 (OIHW for a
        conv, ``(F, O)`` for a linear layer): ``(name, zero point, largest stored value)``.

        uint8 x uint8 is onnxruntime's fast ConvInteger (about 9x its uint8 x int8 here) and
        exact on every CPU (uint8 x int8 pair sums saturate 16 bits on CPUs without VNNI).
        """
        name = f"{q.name}/w{k + 1}"
        if name not in self.weights:
            digits = np.asarray(q.w_digits[k], dtype=np.int64)
            if q.kind == "linear":
                digits = digits.T
            stored = digits + _W_ZERO_POINT
            self.weights[name] = (self.b.const(name, stored, np.uint8), _W_ZERO_POINT,
                                  int(stored.max()) if stored.size else 0)
        return self.weights[name]

    def check_lane(self, q, a_max: int, a_zp: int, w_raw: int, w_zp: int, lane: str) -> None:
        """Refuse a lane whose int32 ConvInteger / MatMulInteger sum could overflow: every
        term of ``sum (a - za)(w - zw) = sum a w - zw sum a - za sum w + K za zw`` bounded
        (``a`` up to ``a_max``, ``|w|`` up to ``w_raw`` as stored)."""
        k_len = q.reduction
        bound = k_len * (a_max * w_raw + w_zp * a_max + a_zp * w_raw + a_zp * w_zp)
        if bound > _INT32_MAX:
            raise WidthError(f"layer {q.name!r}: lane {lane} sums {k_len} products of up to "
                             f"{a_max} x {w_raw}; the bound {bound} leaves ConvInteger's int32 "
                             f"output; use fewer bits per term")

    def add(self, q) -> None:
        a = self.mul(q.inputs[0], q.ma, f"{q.name}/a_scaled")
        b = self.mul(q.inputs[1], q.mb, f"{q.name}/b_scaled")
        s = self.add_const(self.b.node("Add", [a, b], f"{q.name}/sum"), q.offset,
                           f"{q.name}/offset")
        x = self.add_const(self.shift(s, q.shift, q.mode, f"{q.name}/rounded"),
                           q.out.zero_point, f"{q.name}/shifted")
        self.clip(x, q.out.lo, q.out.hi, q.name)

    def maxpool(self, q) -> None:
        xin = self.tensors[q.inputs[0]]
        (kh, kw), (top, left, bottom, right) = q.kernel, q.padding
        if max(top, bottom) >= kh or max(left, right) >= kw:
            raise InputError(f"layer {q.name!r}: max pool padding {q.padding} reaches a whole "
                             f"{kh}x{kw} window of padding")
        # a padded position holds the input's lowest value: it never exceeds a real one
        x = self.pad(q.inputs[0], q.padding, xin.lo, np.int64, f"{q.name}/padded")
        self.b.node("Max", self.taps(x, q.kernel, q.stride, f"{q.name}/window"), q.name)

    def pooled(self, q, sums: str) -> None:
        """``clamp(round_shift((sums - count z) m0, shift) + z, lo, hi)`` of a pool's integer
        sums, ``z`` the zero point its output keeps from its input."""
        z = q.out.zero_point
        if z:
            sums = self.add_const(sums, -q.count * z, f"{q.name}/centred")
        x = self.shift(self.mul(sums, q.m0, f"{q.name}/scaled"), q.shift, q.mode,
                       f"{q.name}/rounded")
        if z:
            x = self.add_const(x, z, f"{q.name}/shifted")
        self.clip(x, q.out.lo, q.out.hi, q.name)

    def avgpool(self, q) -> None:
        x = self.pad(q.inputs[0], q.padding, 0, np.int64, f"{q.name}/padded")
        self.pooled(q, self.total(self.taps(x, q.kernel, q.stride, f"{q.name}/window"),
                                  f"{q.name}/sum"))

    def global_avgpool(self, q) -> None:
        axes = self.b.const(f"{q.name}/axes", [2, 3], np.int64)
        self.pooled(q, self.b.node("ReduceSum", [q.inputs[0], axes], f"{q.name}/sum",
                                   keepdims=1))

    def clamp(self, q) -> None:
        self.clip(q.inputs[0], q.out.lo, q.out.hi, q.name)

    def flatten(self, q) -> None:
        self.b.node("Flatten", [q.inputs[0]], q.name, axis=1)

    def _channel_shape(self, q) -> tuple[int, ...]:
        """Broadcast shape of a per-channel constant of ``q``'s output (NCHW or (N, F))."""
        rank = len(self.p.graph.node(q.node).shape) + 1
        return (1, -1) + (1,) * (rank - 2)

    def lookup(self, q) -> None:
        """``Gather`` of the constant int64 table at ``x - index_lo`` (plus ``c L`` per
        channel): exact."""
        idx = self.add_const(q.inputs[0], -q.index_lo, f"{q.name}/index")
        rows, length = q.table.shape
        if rows > 1:
            offs = (np.arange(rows, dtype=np.int64) * length).reshape(self._channel_shape(q))
            idx = self.b.node("Add", [idx, self.b.const(f"{q.name}/row", offs, np.int64)],
                              f"{q.name}/flat_index")
        table = self.b.const(f"{q.name}/table", q.table.reshape(-1), np.int64)
        self.b.node("Gather", [table, idx], q.name, axis=0)

    def mul_op(self, q) -> None:
        za, zb = (self.tensors[i].zero_point for i in q.inputs)
        a = self.add_const(q.inputs[0], -za, f"{q.name}/a")
        b = self.add_const(q.inputs[1], -zb, f"{q.name}/b")
        p = self.mul(self.b.node("Mul", [a, b], f"{q.name}/product"), q.m0, f"{q.name}/scaled")
        x = self.add_const(self.shift(p, q.shift, q.mode, f"{q.name}/rounded"),
                           q.out.zero_point, f"{q.name}/shifted")
        self.clip(x, q.out.lo, q.out.hi, q.name)

    def concat(self, q) -> None:
        parts = []
        for i, (name, m) in enumerate(zip(q.inputs, q.multipliers)):
            x = self.add_const(name, -self.tensors[name].zero_point, f"{q.name}/{i}/centred")
            x = self.shift(self.mul(x, m, f"{q.name}/{i}/scaled"), q.shift, q.mode,
                           f"{q.name}/{i}/rounded")
            x = self.add_const(x, q.out.zero_point, f"{q.name}/{i}/shifted")
            parts.append(self.clip(x, q.out.lo, q.out.hi, f"{q.name}/{i}"))
        self.b.node("Concat", parts, q.name, axis=1)

    def scale(self, q) -> None:
        shape = self._channel_shape(q)
        rq = q.requant
        x = self.add_const(q.inputs[0], -self.tensors[q.inputs[0]].zero_point,
                           f"{q.name}/centred")
        acc = self.b.node("Mul", [x, self.b.const(f"{q.name}/sign", (q.sign << q.frac_bits)
                                                  .reshape(shape), np.int64)], f"{q.name}/acc")
        acc = self.b.node("Add", [acc, self.b.const(f"{q.name}/bias", q.bias.reshape(shape),
                                                    np.int64)], f"{q.name}/biased")
        p = self.b.node("Mul", [acc, self.b.const(f"{q.name}/m0", rq.multiplier.reshape(shape),
                                                  np.int64)], f"{q.name}/scaled")
        x = self.add_const(self.shift(p, rq.shift, rq.mode, f"{q.name}/rounded"),
                           rq.zero_point, f"{q.name}/shifted")
        self.clip(x, rq.lo, rq.hi, q.name)

    def unsupported(self, q) -> None:
        """The transformer ops have no integer ONNX form yet: refuse, naming the layer."""
        raise InputError(f"int-onnx export: layer {q.name!r} is a {q.kind!r} (graph op "
                         f"{self.p.graph.node(q.node).op!r}), which has no integer ONNX form "
                         f"yet; run it with the simulator or the golden model")

    def _split_pixels(self, q, x: str) -> tuple[str, int, int]:
        """``x`` (N, C, H, W) reshaped to (N, C, H, 1, W, 1), and its H, W."""
        _, h, w = self.p.graph.node(self.p.graph.node(q.node).inputs[0]).shape
        shape = self.b.const(f"{q.name}/pixels_shape", [0, 0, h, 1, w, 1], np.int64)
        return self.b.node("Reshape", [x, shape], f"{q.name}/pixels"), h, w

    def zero_insert(self, q) -> None:
        """Each pixel padded with ``stride - 1`` zero points after it along H and W, the
        trailing ones cut: (N, C, H, 1, W, 1) -> Pad -> (N, C, H sh, W sw) -> Slice."""
        (sh, sw), z = q.stride, q.out.zero_point
        x, h, w = self._split_pixels(q, q.inputs[0])
        pads = self.b.const(f"{q.name}/gaps", [0] * 9 + [sh - 1, 0, sw - 1], np.int64)
        x = self.b.node("Pad", [x, pads, self.b.const(f"{q.name}/z", z, np.int64)],
                        f"{q.name}/spread", mode="constant")
        flat = self.b.const(f"{q.name}/spread_shape", [0, 0, h * sh, w * sw], np.int64)
        x = self.b.node("Reshape", [x, flat], f"{q.name}/grid")
        self.b.node("Slice", [x, self.b.const(f"{q.name}/starts", [0, 0], np.int64),
                              self.b.const(f"{q.name}/ends", [(h - 1) * sh + 1,
                                                               (w - 1) * sw + 1], np.int64),
                              self.b.const(f"{q.name}/axes", [2, 3], np.int64)], q.name)

    def upsample(self, q) -> None:
        """(N, C, H, 1, W, 1) expanded to (N, C, H, sh, W, sw), then (N, C, H sh, W sw)."""
        (sh, sw) = q.scale
        x, h, w = self._split_pixels(q, q.inputs[0])
        x = self.b.node("Expand", [x, self.b.const(f"{q.name}/repeats", [1, 1, 1, sh, 1, sw],
                                                   np.int64)], f"{q.name}/repeated")
        flat = self.b.const(f"{q.name}/out_shape", [0, 0, h * sh, w * sw], np.int64)
        self.b.node("Reshape", [x, flat], q.name)

    def slice_op(self, q) -> None:
        """Axis 1 ``start:stop`` (channels or tokens); a squeezed token reshaped to (N, F)."""
        name = f"{q.name}/token" if q.squeeze else q.name
        self.b.node("Slice", [q.inputs[0], self.b.const(f"{q.name}/starts", [q.start], np.int64),
                              self.b.const(f"{q.name}/ends", [q.stop], np.int64),
                              self.b.const(f"{q.name}/axes", [1], np.int64)], name)
        if q.squeeze:
            self.b.node("Reshape", [name, self.b.const(f"{q.name}/shape", [0, -1], np.int64)],
                        q.name)

    def pad_op(self, q) -> None:
        x = self.pad(q.inputs[0], q.padding, q.value, np.int64, q.name)
        if x != q.name:
            self.b.node("Identity", [x], q.name)


#: The writer of every op kind of :data:`fpxint_hw.quant.OPS` (tests check the two agree).
_WRITERS = {"quantize": _Writer.quantize, "conv": _Writer.gemm, "linear": _Writer.gemm,
            "add": _Writer.add, "maxpool": _Writer.maxpool, "avgpool": _Writer.avgpool,
            "global_avgpool": _Writer.global_avgpool, "clamp": _Writer.clamp,
            "flatten": _Writer.flatten, "lookup": _Writer.lookup, "mul": _Writer.mul_op,
            "concat": _Writer.concat, "scale": _Writer.scale, "pad": _Writer.pad_op,
            "zero_insert": _Writer.zero_insert, "upsample": _Writer.upsample,
            "slice": _Writer.slice_op,
            "matmul": _Writer.unsupported, "softmax": _Writer.unsupported,
            "layernorm": _Writer.unsupported}
#: Op kinds the writer handles.
KINDS = tuple(_WRITERS)


def int_onnx_model(program, *, name: str | None = None):
    """The integer program as an ``onnx.ModelProto`` (see the module docstring).

    ``program`` is a :class:`~fpxint_hw.quant.QProgram` at layer or model level; the batch
    axis is symbolic (``N``). Raises WidthError for a lane whose int32 sum could overflow,
    InputError for a layer name the graph cannot hold.
    """
    require_onnx(f"int-onnx export of {program.graph.name!r}")
    from onnx import TensorProto, helper
    b = _Builder()
    w = _Writer(program, b)
    for q in program.layers:
        writer = _WRITERS.get(q.kind)
        if writer is None:
            raise InputError(f"int-onnx export: layer {q.name!r} is a {q.kind!r}, which has no "
                             f"integer ONNX form")
        writer(w, q)
    b.node("Identity", [program.output], OUTPUT_NAME)
    graph = program.graph
    x = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", *graph.input_shape])
    y = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.INT64,
                                      ["N", *graph.output_shape])
    g = helper.make_graph(b.nodes, name or f"{graph.name} (integer program)", [x], [y],
                          initializer=b.inits)
    model = helper.make_model(g, producer_name="fpxint-hw", functions=_functions(),
                              opset_imports=[helper.make_opsetid("", INT_ONNX_OPSET),
                                             helper.make_opsetid(DOMAIN, 1)])
    model.ir_version = 9
    meta = {_LAYERS_KEY: json.dumps([q.name for q in program.layers]),
            "fpxint.level": program.level, "fpxint.rounding": program.mode,
            "fpxint.formats": json.dumps({"w": program.w_fmt.to_dict(),
                                          "a": program.a_fmt.to_dict()})}
    helper.set_model_props(model, meta)
    return model


def save_int_onnx(program, path) -> object:
    """Write :func:`int_onnx_model` of ``program`` to ``path`` atomically; returns the model."""
    from ..outputs import write_bytes
    model = int_onnx_model(program)
    write_bytes(path, model.SerializeToString())
    return model


def load_int_onnx(path):
    """An int-onnx file written by :func:`save_int_onnx` (InputError for another file)."""
    onnx = require_onnx(f"reading {path}")
    from google.protobuf.message import DecodeError
    try:
        model = onnx.load_model(str(path))
    except (ValueError, DecodeError) as exc:
        raise InputError(f"{path}: not a readable ONNX file ({exc})") from None
    layer_names(model, str(path))
    return model


def layer_names(model, source: str = "model") -> list[str]:
    """The program's layer names, in execution order, that an int-onnx model records."""
    props = {p.key: p.value for p in model.metadata_props}
    if _LAYERS_KEY not in props:
        raise InputError(f"{source}: not an int-onnx graph written by fpxint export (no "
                         f"{_LAYERS_KEY!r} metadata)")
    return json.loads(props[_LAYERS_KEY])


def run_int_onnx(model, x: np.ndarray, runtime: str = "ort", *, layers: bool = False,
                 threads: int | None = None) -> dict[str, np.ndarray]:
    """Run an int-onnx model on the float batch ``x`` (NCHW, cast to float32).

    ``runtime``: ``"ort"`` (onnxruntime, CPU) or ``"reference"`` (``onnx.reference``, pure
    numpy and slow). Returns ``{"int_output": ...}`` and, with ``layers``, every program
    layer's integer tensor by name (int64, NCHW / (N, F)). ``threads``: onnxruntime's
    intra-op threads (default: its own choice).
    """
    if runtime not in RUNTIMES:
        raise InputError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    onnx = require_onnx("running an int-onnx graph")
    if isinstance(model, (str, Path)):
        model = load_int_onnx(model)
    names = [OUTPUT_NAME]
    if layers:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        from onnx import TensorProto, helper
        names += layer_names(model)
        model.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.INT64, None)
                                  for n in names[1:])
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    x = np.asarray(x)
    if x.ndim != len(dims) + 1 or list(x.shape[1:]) != dims or x.shape[0] < 1:
        raise InputError(f"int-onnx graph {model.graph.name!r}: input of shape {x.shape}, "
                         f"expected (N, {', '.join(map(str, dims))})")
    feed = {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)}
    if runtime == "reference":
        from onnx.reference import ReferenceEvaluator
        outs = ReferenceEvaluator(model).run(names, feed)
    else:
        ort = require_onnxruntime("running an int-onnx graph")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        sess = ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        outs = sess.run(names, feed)
    return dict(zip(names, outs))


def compare_int_outputs(expected, got, names) -> dict:
    """Compare integer tensors by exact equality, in the order of ``names``.

    ``expected`` and ``got`` map names to integer arrays (the simulator's captured layers, a
    runtime's outputs). Returns ``{"layers_checked", "mismatches", "first"}``: ``first``
    names the first differing tensor, its first differing element (index, expected and got
    values) or, when the shapes differ, both shapes.
    """
    checked, bad, first = 0, 0, None
    for n in names:
        want = np.asarray(expected[n]).astype(np.int64)
        have = np.asarray(got[n]).astype(np.int64)
        checked += 1
        if want.shape != have.shape:
            bad += 1
            first = first or {"layer": n, "shapes": [list(want.shape), list(have.shape)]}
        elif not np.array_equal(want, have):
            bad += 1
            if first is None:
                idx = tuple(int(v) for v in np.argwhere(want != have)[0])
                first = {"layer": n, "element": list(idx), "expected": int(want[idx]),
                         "got": int(have[idx]), "differing": int(np.sum(want != have))}
    return {"layers_checked": checked, "mismatches": bad, "first": first}
