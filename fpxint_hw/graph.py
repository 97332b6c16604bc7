"""Network graph IR: typed nodes in topological order, float32 parameters by name, shape inference.

A :class:`Graph` is a tuple of frozen node dataclasses, the first an :class:`Input`, each later
node naming the earlier nodes it reads (a node's name is also the name of its one output
tensor), plus a read-only mapping ``parameter name -> float32 array``. Shapes are per sample,
without the batch axis: ``(C, H, W)`` for feature maps, ``(F,)`` for vectors and ``(T, F)`` for
sequences (T tokens of F features; their channel axis is F, the last). The graph infers and
checks every shape when it is built, so a node of a built graph always has ``shape``.

Walking a graph::

    for node in graph.nodes:
        node.op          # "conv", "relu", ... (see OPS)
        node.inputs      # names of the nodes it reads
        node.shape       # its output shape per sample
        node.attrs       # dict of attributes (stride, padding, ...)
        node.params      # names of its parameters, keys of graph.params

Parameter names are those of the model's own checkpoints (``layer1.0.conv1.weight`` for the
ResNets, as in torchvision's state_dict). :func:`fold_batchnorm` folds each BatchNorm into the
convolution or linear layer before it; a folded layer's weight keeps its name and gains a bias
named after it (``layer1.0.conv1.bias``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Iterable, Mapping

import numpy as np

from .errors import InputError

__all__ = [
    "OPS", "Node", "Input", "Conv2d", "BatchNorm", "Relu", "Clip", "MaxPool", "AvgPool",
    "GlobalAvgPool", "Add", "Linear", "Flatten", "HardSigmoid", "HardSwish", "Sigmoid",
    "LeakyRelu", "PRelu", "Scale", "Mul", "Concat", "Pad", "ZeroInsert", "Upsample",
    "Slice", "LayerNorm", "Gelu", "Softmax", "MatMul", "Graph", "fold_batchnorm", "folded_batchnorms",
    "graphs_equal", "channels", "MAX_TENSOR_ELEMENTS",
]

#: Largest tensor per sample (elements) a graph may need: every node's output, a window op's
#: padded input and a convolution's unfolded (im2col) input. 2^27 int32 elements are 512 MiB
#: per sample; a shape beyond it is almost always a broken export (huge pads or input size),
#: and the executors would otherwise fail deep inside with an out-of-memory error.
MAX_TENSOR_ELEMENTS = 1 << 27


def _float32_value(owner: str, field_name: str, value) -> float:
    """``value`` rounded to the nearest float32, as a Python float (so ONNX round-trips it)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(f"{owner}.{field_name} must be a finite number, got {value!r}")
    return float(np.float32(value))


def _int_tuple(owner: str, field_name: str, value, n: int, lo: int) -> tuple[int, ...]:
    """``value`` as a tuple of ``n`` ints, each ``>= lo`` (an int is repeated ``n`` times)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (int(value),) * n
    try:
        out = tuple(value)
    except TypeError:
        out = None
    if (out is None or len(out) != n
            or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo
                   for v in out)):
        raise InputError(f"{owner}.{field_name} must be {n} integers >= {lo}, got {value!r}")
    return tuple(int(v) for v in out)


def _pair(owner: str, field_name: str, value, lo: int = 1) -> tuple[int, int]:
    return _int_tuple(owner, field_name, value, 2, lo)


def _pads(owner: str, field_name: str, value) -> tuple[int, int, int, int]:
    """Padding as ``(top, left, bottom, right)``; an int or a ``(h, w)`` pair is symmetric."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        value = (value[0], value[1], value[0], value[1])
    return _int_tuple(owner, field_name, value, 4, 0)


def _window_out(size: int, k: int, s: int, d: int, p0: int, p1: int) -> int:
    """Output length of a sliding window (floor mode); may be <= 0 for a too-small input."""
    return (size + p0 + p1 - (d * (k - 1) + 1)) // s + 1


@dataclass(frozen=True, kw_only=True)
class Node:
    """Base of every node: one output tensor named ``name``, computed from ``inputs``.

    Members
    -------
    name : str
        Unique name of the node and of its output tensor.
    inputs : tuple of str
        Names of the earlier nodes it reads, in operand order.
    shape : tuple of int or None
        Output shape per sample (no batch axis); filled in by :class:`Graph`.
    """

    name: str
    inputs: tuple[str, ...] = ()
    shape: tuple[int, ...] | None = None

    #: Op kind, one of :data:`OPS`.
    op: ClassVar[str] = ""
    #: Number of inputs the op takes (-1: two or more).
    arity: ClassVar[int] = 1
    #: Fields that hold parameter names (a value of None means "no such parameter").
    param_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        owner = f"{type(self).__name__}({self.name!r})"
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"{type(self).__name__}.name must be a non-empty string, "
                             f"got {self.name!r}")
        ins = (self.inputs,) if isinstance(self.inputs, str) else tuple(self.inputs)
        count_ok = len(ins) == self.arity if self.arity >= 0 else len(ins) >= 2
        if not count_ok or not all(isinstance(i, str) and i for i in ins):
            want = self.arity if self.arity >= 0 else "two or more"
            raise InputError(f"{owner}.inputs must be {want} node name(s), "
                             f"got {self.inputs!r}")
        object.__setattr__(self, "inputs", ins)
        if self.shape is not None:
            object.__setattr__(self, "shape", _int_tuple(owner, "shape", self.shape,
                                                         len(tuple(self.shape)), 1))
        for f in self.param_fields:
            v = getattr(self, f)
            if v is not None and (not isinstance(v, str) or not v):
                raise InputError(f"{owner}.{f} must be a parameter name, got {v!r}")
        self._check(owner)

    def _check(self, owner: str) -> None:
        """Normalise and validate the op's own fields (overridden per op)."""

    @property
    def params(self) -> tuple[str, ...]:
        """Names of this node's parameters (keys of ``Graph.params``), weight first."""
        return tuple(getattr(self, f) for f in self.param_fields if getattr(self, f) is not None)

    @property
    def attrs(self) -> dict:
        """The op's attributes (everything but name, inputs, shape and parameter names)."""
        skip = {"name", "inputs", "shape", *self.param_fields}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in skip}

    def infer_shape(self, in_shapes: list[tuple[int, ...]],
                    params: Mapping[str, np.ndarray]) -> tuple[int, ...]:
        """Output shape per sample from the input shapes; raises InputError when they don't fit.

        Every op overrides this; a node type without a shape rule cannot join a graph.
        """
        raise self._fail("this op has no shape rule")

    def _fail(self, what: str) -> InputError:
        return InputError(f"node {self.name!r} ({self.op}): {what}")

    def _need_rank(self, shp: tuple[int, ...], *ranks: int, name: str | None = None) -> None:
        if len(shp) not in ranks:
            kinds = {1: "(F,)", 2: "(T, F)", 3: "(C, H, W)"}
            kind = " or ".join(kinds[r] for r in ranks)
            raise self._fail(f"input {name or self.inputs[0]!r} has shape {shp}, "
                             f"expected {kind}")


def channels(shape: tuple[int, ...]) -> int:
    """Channel count of a per-sample shape: C of ``(C, H, W)``, F of ``(F,)`` or ``(T, F)``
    (per-channel parameters of a sequence apply per feature, the same for every token)."""
    return shape[-1] if len(shape) == 2 else shape[0]


@dataclass(frozen=True, kw_only=True)
class Input(Node):
    """The graph input; ``shape`` is required, e.g. ``(3, 224, 224)`` or ``(T, F)`` for a
    sequence (batch axis implied).

    A model that takes token ids (an ONNX export with ``input_ids``) keeps its embedding
    step on the host: ``embedding`` names its ``(V, F)`` table and ``addend`` the ``(T, F)``
    rows added to every sequence (position and segment embeddings), and the input is their
    sum ``embedding[ids] + addend`` (:meth:`Graph.embed`)."""

    op: ClassVar[str] = "input"
    arity: ClassVar[int] = 0
    param_fields: ClassVar[tuple[str, ...]] = ("embedding", "addend")

    embedding: str | None = None
    addend: str | None = None

    def _check(self, owner):
        if self.shape is None or len(self.shape) not in (1, 2, 3):
            raise InputError(f"{owner}.shape must be (C, H, W), (T, F) or (F,), "
                             f"got {self.shape!r}")
        _check_size(self, "its shape", self.shape)
        if (self.embedding or self.addend) and len(self.shape) != 2:
            raise InputError(f"{owner}: a token embedding needs a (T, F) input, got shape "
                             f"{self.shape}")

    def infer_shape(self, in_shapes, params):
        t, f = self.shape if len(self.shape) == 2 else (None, None)
        for field, want in (("embedding", (None, f)), ("addend", (t, f))):
            name = getattr(self, field)
            if name is not None:
                got = params[name].shape
                if len(got) != 2 or got[1] != f or want[0] not in (None, got[0]):
                    raise self._fail(f"{field} {name!r} has shape {got}, expected "
                                     f"({'V' if want[0] is None else want[0]}, {f})")
        return self.shape


def _check_window(node, owner, kernel_required: bool = True) -> None:
    if kernel_required:
        object.__setattr__(node, "kernel", _pair(owner, "kernel", node.kernel))
    object.__setattr__(node, "stride", _pair(owner, "stride", node.stride))
    object.__setattr__(node, "padding", _pads(owner, "padding", node.padding))


def _check_size(node, what: str, shape) -> None:
    """Refuse a tensor of more than :data:`MAX_TENSOR_ELEMENTS` elements per sample."""
    n = math.prod(shape)
    if n > MAX_TENSOR_ELEMENTS:
        raise node._fail(f"{what} {tuple(shape)} has {n:,} elements per sample, more than the "
                         f"{MAX_TENSOR_ELEMENTS:,} (2^27) a tensor may hold; check the model's "
                         f"input shape and paddings")


def _window_shape(node, shp, k, d) -> tuple[int, int]:
    (kh, kw), (sh, sw) = k, node.stride
    pt, pl, pb, pr = node.padding
    _check_size(node, "its padded input", (shp[0], shp[1] + pt + pb, shp[2] + pl + pr))
    ho = _window_out(shp[1], kh, sh, d[0], pt, pb)
    wo = _window_out(shp[2], kw, sw, d[1], pl, pr)
    if ho < 1 or wo < 1:
        raise node._fail(f"input {node.inputs[0]!r} of shape {shp} is too small for kernel "
                         f"{k}, dilation {d}, padding {node.padding}")
    return ho, wo


@dataclass(frozen=True, kw_only=True)
class Conv2d(Node):
    """2-D convolution (cross-correlation), grouped when ``groups > 1``.

    Members
    -------
    weight : str
        Parameter of shape ``(C_out, C_in / groups, kh, kw)``.
    bias : str or None
        Parameter of shape ``(C_out,)``.
    stride, dilation : (int, int)
        Along (H, W), each >= 1.
    padding : (top, left, bottom, right)
        Zero padding in pixels, each >= 0 (an int or an (h, w) pair is symmetric).
    groups : int
        ``C_in`` and ``C_out`` must be multiples of it; ``groups == C_in`` is depthwise.
    """

    weight: str
    bias: str | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    op: ClassVar[str] = "conv"
    param_fields: ClassVar[tuple[str, ...]] = ("weight", "bias")

    def _check(self, owner):
        _check_window(self, owner, kernel_required=False)
        object.__setattr__(self, "dilation", _pair(owner, "dilation", self.dilation))
        object.__setattr__(self, "groups", _int_tuple(owner, "groups", self.groups, 1, 1)[0])

    def infer_shape(self, in_shapes, params):
        shp = in_shapes[0]
        self._need_rank(shp, 3)
        w = params[self.weight]
        if w.ndim != 4:
            raise self._fail(f"parameter {self.weight!r} has shape {w.shape}, "
                             f"expected (C_out, C_in/groups, kh, kw)")
        cout, cin_g, kh, kw = w.shape
        g = self.groups
        if shp[0] % g or cout % g or cin_g != shp[0] // g:
            raise self._fail(f"parameter {self.weight!r} has shape {w.shape}, expected "
                             f"(C_out, {shp[0] // g if shp[0] % g == 0 else '?'}, kh, kw) with "
                             f"C_out a multiple of groups={g} for input channels {shp[0]}")
        if self.bias is not None and params[self.bias].shape != (cout,):
            raise self._fail(f"parameter {self.bias!r} has shape {params[self.bias].shape}, "
                             f"expected ({cout},)")
        ho, wo = _window_shape(self, shp, (kh, kw), self.dilation)
        _check_size(self, "its unfolded (im2col) input", (ho * wo, shp[0] * kh * kw))
        return cout, ho, wo


@dataclass(frozen=True, kw_only=True)
class BatchNorm(Node):
    """Per-channel ``(x - mean) / sqrt(var + eps) * weight + bias`` over axis C (or F of a
    vector or sequence).

    Members
    -------
    weight, bias, mean, var : str
        Parameters of shape ``(C,)`` (torch names: weight, bias, running_mean, running_var).
    eps : float
        > 0, stored as the nearest float32.
    """

    weight: str
    bias: str
    mean: str
    var: str
    eps: float = 1e-5

    op: ClassVar[str] = "batchnorm"
    param_fields: ClassVar[tuple[str, ...]] = ("weight", "bias", "mean", "var")

    def _check(self, owner):
        eps = _float32_value(owner, "eps", self.eps)
        if eps <= 0:
            raise InputError(f"{owner}.eps must be > 0, got {self.eps!r}")
        object.__setattr__(self, "eps", eps)

    def infer_shape(self, in_shapes, params):
        shp = in_shapes[0]
        c = channels(shp)
        for p in self.params:
            if params[p].shape != (c,):
                raise self._fail(f"parameter {p!r} has shape {params[p].shape}, "
                                 f"expected ({c},)")
        return shp


class _Elementwise(Node):
    """A node whose output has its (first) input's shape."""

    def infer_shape(self, in_shapes, params):
        return in_shapes[0]


@dataclass(frozen=True, kw_only=True)
class Relu(_Elementwise):
    """``max(x, 0)``."""

    op: ClassVar[str] = "relu"


@dataclass(frozen=True, kw_only=True)
class Clip(_Elementwise):
    """``min(max(x, lo), hi)``; ReLU6 is ``Clip(lo=0, hi=6)``. Bounds stored as float32 values."""

    lo: float
    hi: float

    op: ClassVar[str] = "clip"

    def _check(self, owner):
        lo, hi = _float32_value(owner, "lo", self.lo), _float32_value(owner, "hi", self.hi)
        if lo > hi:
            raise InputError(f"{owner}: lo={lo} must be <= hi={hi}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)


@dataclass(frozen=True, kw_only=True)
class MaxPool(Node):
    """Max over ``kernel`` windows; padded positions never win (floor output size)."""

    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)

    op: ClassVar[str] = "maxpool"

    def _check(self, owner):
        _check_window(self, owner)
        pt, pl, pb, pr = self.padding
        kh, kw = self.kernel
        if max(pt, pb) >= kh or max(pl, pr) >= kw:
            raise InputError(f"{owner}.padding {self.padding} must be smaller than the kernel "
                             f"{self.kernel}")

    def infer_shape(self, in_shapes, params):
        shp = in_shapes[0]
        self._need_rank(shp, 3)
        return (shp[0], *_window_shape(self, shp, self.kernel, (1, 1)))


@dataclass(frozen=True, kw_only=True)
class AvgPool(Node):
    """Mean over ``kernel`` windows; with ``count_include_pad`` the zeros of the padding count."""

    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    count_include_pad: bool = True

    op: ClassVar[str] = "avgpool"

    def _check(self, owner):
        _check_window(self, owner)
        if not isinstance(self.count_include_pad, bool):
            raise InputError(f"{owner}.count_include_pad must be true or false, "
                             f"got {self.count_include_pad!r}")

    def infer_shape(self, in_shapes, params):
        shp = in_shapes[0]
        self._need_rank(shp, 3)
        return (shp[0], *_window_shape(self, shp, self.kernel, (1, 1)))


@dataclass(frozen=True, kw_only=True)
class GlobalAvgPool(Node):
    """Mean over H and W: ``(C, H, W) -> (C, 1, 1)`` (as ONNX GlobalAveragePool)."""

    op: ClassVar[str] = "global_avgpool"

    def infer_shape(self, in_shapes, params):
        shp = in_shapes[0]
        self._need_rank(shp, 3)
        return (shp[0], 1, 1)


@dataclass(frozen=True, kw_only=True)
class Add(Node):
    """Elementwise sum of two tensors of the same shape (residual connections)."""

    op: ClassVar[str] = "add"
    arity: ClassVar[int] = 2

    def infer_shape(self, in_shapes, params):
        a, b = in_shapes
        if a != b:
            raise self._fail(f"inputs {self.inputs[0]!r} {a} and {self.inputs[1]!r} {b} "
                             f"differ in shape")
        return a


@dataclass(frozen=True, kw_only=True)
class Linear(Node):
    """``y = x @ weight.T + bias`` on a vector ``(F_in,)``, or on each token of a sequence
    ``(T, F_in) -> (T, F_out)`` with the same weight.

    Members
    -------
    weight : str
        Parameter of shape ``(F_out, F_in)`` (torch nn.Linear layout).
    bias : str or None
        Parameter of shape ``(F_out,)``.
    """

    weight: str
    bias: str | None = None

    op: ClassVar[str] = "linear"
    param_fields: ClassVar[tuple[str, ...]] = ("weight", "bias")

    def infer_shape(self, in_shapes, params):
        shp = in_shapes[0]
        self._need_rank(shp, 1, 2)
        w = params[self.weight]
        if w.ndim != 2 or w.shape[1] != shp[-1]:
            raise self._fail(f"parameter {self.weight!r} has shape {w.shape}, "
                             f"expected (F_out, {shp[-1]})")
        if self.bias is not None and params[self.bias].shape != (w.shape[0],):
            raise self._fail(f"parameter {self.bias!r} has shape {params[self.bias].shape}, "
                             f"expected ({w.shape[0]},)")
        return (*shp[:-1], w.shape[0])


@dataclass(frozen=True, kw_only=True)
class Flatten(Node):
    """``(C, H, W) -> (C*H*W,)`` in C-major order (as torch.flatten(x, 1)); ``(T, F)`` ->
    ``(T*F,)`` token-major."""

    op: ClassVar[str] = "flatten"

    def infer_shape(self, in_shapes, params):
        return (int(np.prod(in_shapes[0])),)


def _broadcast_channels(node, shp, p: np.ndarray, pname: str) -> None:
    """Refuse a per-channel parameter that is neither one value nor one per channel."""
    c = channels(shp)
    if p.shape not in ((1,), (c,)):
        raise node._fail(f"parameter {pname!r} has shape {p.shape}, expected (1,) or "
                         f"({c},) (one value, or one per channel)")


@dataclass(frozen=True, kw_only=True)
class HardSigmoid(_Elementwise):
    """``clip(alpha x + beta, 0, 1)``; torch's ``hardsigmoid`` is ``alpha=1/6, beta=0.5``
    (ONNX's defaults are 0.2 and 0.5). ``alpha`` and ``beta`` stored as float32."""

    alpha: float = 0.2
    beta: float = 0.5

    op: ClassVar[str] = "hardsigmoid"

    def _check(self, owner):
        object.__setattr__(self, "alpha", _float32_value(owner, "alpha", self.alpha))
        object.__setattr__(self, "beta", _float32_value(owner, "beta", self.beta))


@dataclass(frozen=True, kw_only=True)
class HardSwish(_Elementwise):
    """``x * clip(x / 6 + 1/2, 0, 1)`` (ONNX HardSwish, torch ``hardswish``)."""

    op: ClassVar[str] = "hardswish"


@dataclass(frozen=True, kw_only=True)
class Sigmoid(_Elementwise):
    """``1 / (1 + exp(-x))``."""

    op: ClassVar[str] = "sigmoid"


@dataclass(frozen=True, kw_only=True)
class LeakyRelu(_Elementwise):
    """``x`` where ``x >= 0``, else ``alpha x`` (``alpha`` stored as float32; ONNX default
    0.01)."""

    alpha: float = 0.01

    op: ClassVar[str] = "leakyrelu"

    def _check(self, owner):
        object.__setattr__(self, "alpha", _float32_value(owner, "alpha", self.alpha))


@dataclass(frozen=True, kw_only=True)
class PRelu(Node):
    """``x`` where ``x >= 0``, else ``slope[c] x``.

    Members
    -------
    slope : str
        Parameter of shape ``(1,)`` or ``(C,)`` (one slope, or one per channel).
    """

    slope: str

    op: ClassVar[str] = "prelu"
    param_fields: ClassVar[tuple[str, ...]] = ("slope",)

    def infer_shape(self, in_shapes, params):
        _broadcast_channels(self, in_shapes[0], params[self.slope], self.slope)
        return in_shapes[0]


@dataclass(frozen=True, kw_only=True)
class Scale(Node):
    """Per-channel ``x * weight[c] + bias[c]`` (a constant Mul, Div, Add or Sub that no
    convolution absorbs).

    Members
    -------
    weight : str
        Parameter of shape ``(1,)`` or ``(C,)``.
    bias : str or None
        Parameter of shape ``(1,)`` or ``(C,)``.
    """

    weight: str
    bias: str | None = None

    op: ClassVar[str] = "scale"
    param_fields: ClassVar[tuple[str, ...]] = ("weight", "bias")

    def infer_shape(self, in_shapes, params):
        for p in self.params:
            _broadcast_channels(self, in_shapes[0], params[p], p)
        return in_shapes[0]


@dataclass(frozen=True, kw_only=True)
class Mul(Node):
    """Elementwise product of two tensors: equal shapes, or a ``(C, 1, 1)`` gate times a
    ``(C, H, W)`` map in either order (squeeze-and-excitation)."""

    op: ClassVar[str] = "mul"
    arity: ClassVar[int] = 2

    def infer_shape(self, in_shapes, params):
        a, b = in_shapes
        if a == b:
            return a
        for big, gate in ((a, b), (b, a)):
            if len(big) == 3 and gate == (big[0], 1, 1):
                return big
        raise self._fail(f"inputs {self.inputs[0]!r} {a} and {self.inputs[1]!r} {b} are "
                         f"neither the same shape nor a (C, 1, 1) gate of a (C, H, W) map")


@dataclass(frozen=True, kw_only=True)
class Concat(Node):
    """Two or more ``(C_i, H, W)`` maps (or ``(F_i,)`` vectors) joined along the channel
    axis."""

    op: ClassVar[str] = "concat"
    arity: ClassVar[int] = -1

    def infer_shape(self, in_shapes, params):
        first = in_shapes[0]
        if len(first) == 2:
            raise self._fail(f"input {self.inputs[0]!r} is a sequence {first}; Concat joins "
                             f"(C, H, W) maps or (F,) vectors only")
        for name, shp in zip(self.inputs, in_shapes):
            if len(shp) != len(first) or shp[1:] != first[1:]:
                raise self._fail(f"input {name!r} has shape {shp}; every input must be "
                                 f"{('C',) + first[1:]} (only the channel count may differ)")
        return (sum(s[0] for s in in_shapes), *first[1:])


@dataclass(frozen=True, kw_only=True)
class Pad(Node):
    """Constant padding of a ``(C, H, W)`` map by (top, left, bottom, right) pixels of
    ``value`` (stored as float32)."""

    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    value: float = 0.0

    op: ClassVar[str] = "pad"

    def _check(self, owner):
        object.__setattr__(self, "padding", _pads(owner, "padding", self.padding))
        object.__setattr__(self, "value", _float32_value(owner, "value", self.value))

    def infer_shape(self, in_shapes, params):
        shp = in_shapes[0]
        self._need_rank(shp, 3)
        pt, pl, pb, pr = self.padding
        return (shp[0], shp[1] + pt + pb, shp[2] + pl + pr)


@dataclass(frozen=True, kw_only=True)
class ZeroInsert(Node):
    """``stride - 1`` zeros between neighbouring pixels of a ``(C, H, W)`` map:
    ``(C, (H - 1) sh + 1, (W - 1) sw + 1)``, ``out[:, i sh, j sw] = x[:, i, j]``. With a
    :class:`Pad` and a :class:`Conv2d` of the flipped kernel it is a transposed convolution
    (the ONNX importer writes ConvTranspose so, and the array runs it as a convolution)."""

    stride: tuple[int, int] = (1, 1)

    op: ClassVar[str] = "zero_insert"

    def _check(self, owner):
        object.__setattr__(self, "stride", _pair(owner, "stride", self.stride))

    def infer_shape(self, in_shapes, params):
        shp = in_shapes[0]
        self._need_rank(shp, 3)
        (sh, sw) = self.stride
        return (shp[0], (shp[1] - 1) * sh + 1, (shp[2] - 1) * sw + 1)


@dataclass(frozen=True, kw_only=True)
class Upsample(Node):
    """Nearest-neighbour upsampling of a ``(C, H, W)`` map by integer factors:
    ``out[:, i, j] = x[:, i // sh, j // sw]`` (torch ``Upsample(mode="nearest")``, ONNX
    Resize with integer scales)."""

    scale: tuple[int, int] = (2, 2)

    op: ClassVar[str] = "upsample"

    def _check(self, owner):
        object.__setattr__(self, "scale", _pair(owner, "scale", self.scale))

    def infer_shape(self, in_shapes, params):
        shp = in_shapes[0]
        self._need_rank(shp, 3)
        return (shp[0], shp[1] * self.scale[0], shp[2] * self.scale[1])


@dataclass(frozen=True, kw_only=True)
class Slice(Node):
    """The entries ``start <= i < stop`` (step 1) of the first per-sample axis: channels of a
    ``(C, H, W)`` map (``x[:, start:stop]`` in NCHW) or tokens of a ``(T, F)`` sequence
    (``x[:, start:stop]``). ``squeeze`` (one token, ``stop = start + 1``, of a sequence)
    drops the token axis: ``(T, F) -> (F,)``, the CLS token ``x[:, 0]``. A slice of integers
    keeps their grid (scale and zero point)."""

    start: int = 0
    stop: int = 1
    squeeze: bool = False

    op: ClassVar[str] = "slice"

    def _check(self, owner):
        object.__setattr__(self, "start", _int_tuple(owner, "start", (self.start,), 1, 0)[0])
        object.__setattr__(self, "stop", _int_tuple(owner, "stop", (self.stop,), 1, 1)[0])
        if not isinstance(self.squeeze, (bool, np.bool_)):
            raise InputError(f"{owner}.squeeze must be true or false, got {self.squeeze!r}")
        object.__setattr__(self, "squeeze", bool(self.squeeze))
        if self.stop <= self.start:
            raise InputError(f"{owner}: stop {self.stop} must exceed start {self.start}")
        if self.squeeze and self.stop != self.start + 1:
            raise InputError(f"{owner}: squeeze needs one entry, got {self.start}:{self.stop}")

    def infer_shape(self, in_shapes, params):
        shp = in_shapes[0]
        self._need_rank(shp, 2, 3)
        if self.stop > shp[0]:
            raise self._fail(f"slice {self.start}:{self.stop} exceeds axis size {shp[0]} of "
                             f"input {self.inputs[0]!r} {shp}")
        if self.squeeze:
            if len(shp) != 2:
                raise self._fail(f"squeeze drops a token axis; input {self.inputs[0]!r} has "
                                 f"shape {shp}")
            return shp[1:]
        return (self.stop - self.start, *shp[1:])


@dataclass(frozen=True, kw_only=True)
class LayerNorm(Node):
    """``(x - mean) / sqrt(var + eps) * weight + bias`` over the last axis: per token of a
    ``(T, F)`` sequence (or over an ``(F,)`` vector), mean and biased variance of its F values.

    Members
    -------
    weight, bias : str
        Parameters of shape ``(F,)``.
    eps : float
        > 0, stored as the nearest float32 (BERT's is 1e-12).
    """

    weight: str
    bias: str
    eps: float = 1e-5

    op: ClassVar[str] = "layernorm"
    param_fields: ClassVar[tuple[str, ...]] = ("weight", "bias")

    def _check(self, owner):
        eps = _float32_value(owner, "eps", self.eps)
        if eps <= 0:
            raise InputError(f"{owner}.eps must be > 0, got {self.eps!r}")
        object.__setattr__(self, "eps", eps)

    def infer_shape(self, in_shapes, params):
        shp = in_shapes[0]
        self._need_rank(shp, 1, 2)
        for p in self.params:
            if params[p].shape != (shp[-1],):
                raise self._fail(f"parameter {p!r} has shape {params[p].shape}, "
                                 f"expected ({shp[-1]},)")
        return shp


@dataclass(frozen=True, kw_only=True)
class Gelu(_Elementwise):
    """``x / 2 * (1 + erf(x / sqrt(2)))``, the exact (erf) GELU of BERT and torch's
    ``gelu(approximate="none")``."""

    op: ClassVar[str] = "gelu"


@dataclass(frozen=True, kw_only=True)
class Softmax(Node):
    """``exp(x_i) / sum_j exp(x_j)`` along the last axis, separately in each of ``groups``
    equal contiguous segments of it.

    On the ``(T, H*T)`` attention scores of :class:`MatMul` (``groups=H``) each token's
    scores are normalised per head; ``groups=1`` is the plain softmax over the last axis.

    Members
    -------
    groups : int
        >= 1, dividing the last axis.
    """

    groups: int = 1

    op: ClassVar[str] = "softmax"

    def _check(self, owner):
        object.__setattr__(self, "groups", _int_tuple(owner, "groups", self.groups, 1, 1)[0])

    def infer_shape(self, in_shapes, params):
        shp = in_shapes[0]
        self._need_rank(shp, 1, 2)
        if shp[-1] % self.groups:
            raise self._fail(f"last axis of input {self.inputs[0]!r} {shp} is not a multiple "
                             f"of groups={self.groups}")
        return shp


@dataclass(frozen=True, kw_only=True)
class MatMul(Node):
    """Per-head product of two sequence activations (no weights): the two matrix products
    of multi-head attention, with every tensor a ``(T, F)`` sequence.

    Head ``h`` of a ``(T, H*d)`` tensor is its column block ``[h*d, (h+1)*d)``.

    - ``transpose_b=True``: ``a (T, H*d)``, ``b (S, H*d)`` -> ``(T, H*S)``, head ``h``'s
      block ``a_h @ b_h.T`` (T x S): the attention scores ``Q_h K_h^T``.
    - ``transpose_b=False``: ``a (T, H*S)``, ``b (S, H*d)`` -> ``(T, H*d)``, head ``h``'s
      block ``a_h @ b_h`` (T x d): the attention-weighted values ``P_h V_h``, heads merged.

    Each head is one activation x activation GEMM of inner length d (scores) or S (values).

    Members
    -------
    heads : int
        H >= 1; the feature axes must divide into H blocks as above.
    transpose_b : bool
        Which of the two products.
    """

    heads: int = 1
    transpose_b: bool = False

    op: ClassVar[str] = "matmul"
    arity: ClassVar[int] = 2

    def _check(self, owner):
        object.__setattr__(self, "heads", _int_tuple(owner, "heads", self.heads, 1, 1)[0])
        if not isinstance(self.transpose_b, bool):
            raise InputError(f"{owner}.transpose_b must be true or false, "
                             f"got {self.transpose_b!r}")

    def infer_shape(self, in_shapes, params):
        (a, b), h = in_shapes, self.heads
        self._need_rank(a, 2, name=self.inputs[0])
        self._need_rank(b, 2, name=self.inputs[1])
        if b[1] % h:
            raise self._fail(f"input {self.inputs[1]!r} {b} has {b[1]} features, not a "
                             f"multiple of heads={h}")
        if self.transpose_b:
            if a[1] != b[1]:
                raise self._fail(f"inputs {self.inputs[0]!r} {a} and {self.inputs[1]!r} {b} "
                                 f"must have the same features (H*d) for a @ b.T per head")
            return (a[0], h * b[0])
        if a[1] != h * b[0]:
            raise self._fail(f"input {self.inputs[0]!r} {a} must have heads*S = {h}*{b[0]} = "
                             f"{h * b[0]} features for a @ b per head with "
                             f"{self.inputs[1]!r} {b}")
        return (a[0], b[1])


#: Op kind -> node class.
OPS: dict[str, type[Node]] = {c.op: c for c in (
    Input, Conv2d, BatchNorm, Relu, Clip, MaxPool, AvgPool, GlobalAvgPool, Add, Linear,
    Flatten, HardSigmoid, HardSwish, Sigmoid, LeakyRelu, PRelu, Scale, Mul, Concat, Pad,
    ZeroInsert, Upsample, Slice, LayerNorm, Gelu, Softmax, MatMul)}


def _as_param(graph_name: str, name: str, value) -> np.ndarray:
    """A read-only float32 array from ``value``; raises InputError naming the parameter."""
    arr = np.asarray(value)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"graph {graph_name!r}: parameter {name!r} has dtype {arr.dtype}, "
                         f"expected a float array")
    arr = np.array(arr, dtype=np.float32, copy=arr.dtype != np.float32 or arr.flags.writeable)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"graph {graph_name!r}: parameter {name!r} holds non-finite values")
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class Graph:
    """A validated network: nodes in topological order, parameters, one output.

    Members
    -------
    nodes : tuple of Node
        ``nodes[0]`` is the :class:`Input`; every other node reads only earlier nodes.
        After construction each node's ``shape`` is filled in.
    params : mapping str -> float32 ndarray
        Every parameter some node names, and no other; arrays are read-only.
    output : str
        Name of the output node (default: the last node).
    name : str
        Name of the network (used in messages and exports).
    """

    nodes: tuple[Node, ...]
    params: Mapping[str, np.ndarray]
    output: str | None = None
    name: str = "graph"

    def __post_init__(self):
        nodes = tuple(self.nodes)
        if not nodes or not isinstance(nodes[0], Input):
            raise InputError(f"graph {self.name!r}: the first node must be an Input node")
        params = {}
        for k, v in dict(self.params).items():
            params[k] = _as_param(self.name, k, v)
        shapes: dict[str, tuple[int, ...]] = {}
        used: set[str] = set()
        out_nodes = []
        for node in nodes:
            if not isinstance(node, Node) or type(node) not in OPS.values():
                raise InputError(f"graph {self.name!r}: {node!r} is not a graph node")
            if node.name in shapes:
                raise InputError(f"graph {self.name!r}: node name {node.name!r} is used twice")
            if isinstance(node, Input) and node is not nodes[0]:
                raise InputError(f"graph {self.name!r}: a second Input node {node.name!r}")
            for i in node.inputs:
                if i not in shapes:
                    raise InputError(f"graph {self.name!r}: node {node.name!r} reads {i!r}, "
                                     f"which is not an earlier node")
            for p in node.params:
                if p not in params:
                    raise InputError(f"graph {self.name!r}: node {node.name!r} needs parameter "
                                     f"{p!r}, which is missing")
                used.add(p)
            shp = node.infer_shape([shapes[i] for i in node.inputs], params)
            _check_size(node, "its output", shp)
            if node.shape is not None and node.shape != tuple(shp):
                raise InputError(f"graph {self.name!r}: node {node.name!r} declares shape "
                                 f"{node.shape}, inferred {tuple(shp)}")
            shapes[node.name] = tuple(shp)
            out_nodes.append(node if node.shape is not None
                             else dataclasses.replace(node, shape=tuple(shp)))
        unused = sorted(set(params) - used)
        if unused:
            raise InputError(f"graph {self.name!r}: parameters no node uses: "
                             f"{', '.join(map(repr, unused[:5]))}{' ...' if len(unused) > 5 else ''}")
        output = self.output if self.output is not None else nodes[-1].name
        if output not in shapes:
            raise InputError(f"graph {self.name!r}: output {output!r} is not a node")
        object.__setattr__(self, "nodes", tuple(out_nodes))
        object.__setattr__(self, "params", MappingProxyType(params))
        object.__setattr__(self, "output", output)
        object.__setattr__(self, "_by_name", {n.name: n for n in out_nodes})

    # -- looking things up ----------------------------------------------------------------

    @property
    def input(self) -> Input:
        """The Input node."""
        return self.nodes[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Input shape per sample, e.g. ``(3, 224, 224)``."""
        return self.nodes[0].shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Output shape per sample, e.g. ``(1000,)``."""
        return self._by_name[self.output].shape

    def embed(self, ids) -> np.ndarray:
        """The input of token ids ``ids`` (``(N, T)`` or ``(T,)`` integers) of a graph whose
        Input has an ``embedding``: ``embedding[ids] + addend`` as float32 ``(N, T, F)``.
        InputError for another graph, another length or an id outside the vocabulary."""
        inp = self.input
        if inp.embedding is None:
            raise InputError(f"graph {self.name!r} takes {self.input_shape} values, not token "
                             f"ids")
        ids = np.asarray(ids)
        if ids.ndim == 1:
            ids = ids[None]
        t = self.input_shape[0]
        if ids.ndim != 2 or ids.shape[1] != t or not np.issubdtype(ids.dtype, np.integer):
            raise InputError(f"graph {self.name!r}: token ids must be (N, {t}) integers, got "
                             f"{ids.dtype} of shape {ids.shape}")
        table = self.params[inp.embedding]
        bad = (ids < 0) | (ids >= table.shape[0])
        if bad.any():
            raise InputError(f"graph {self.name!r}: token id {int(ids[bad][0])} is outside "
                             f"the vocabulary 0..{table.shape[0] - 1}")
        x = table[ids]
        if inp.addend is not None:
            x = x + self.params[inp.addend]
        return x.astype(np.float32)

    def node(self, name: str) -> Node:
        """The node called ``name``; raises InputError naming it when there is none."""
        try:
            return self._by_name[name]
        except KeyError:
            raise InputError(f"graph {self.name!r} has no node {name!r}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def consumers(self, name: str) -> tuple[Node, ...]:
        """Nodes that read node ``name``, in graph order."""
        self.node(name)
        return tuple(n for n in self.nodes if name in n.inputs)

    def num_params(self) -> int:
        """Total number of parameter values (elements)."""
        return int(sum(a.size for a in self.params.values()))

    def macs(self, name: str | None = None) -> int:
        """Multiply-accumulates per sample of one conv/linear/matmul node, or of the whole
        graph."""
        if name is None:
            return sum(self.macs(n.name) for n in self.nodes)
        n = self.node(name)
        if isinstance(n, Conv2d):
            w = self.params[n.weight]
            return int(np.prod(n.shape) * np.prod(w.shape[1:]))
        if isinstance(n, Linear):                   # per token of a sequence
            return int(np.prod(n.shape[:-1]) * self.params[n.weight].size)
        if isinstance(n, MatMul):                   # T * S * H*d either way round
            (t, _), (s, hd) = (self.node(i).shape for i in n.inputs)
            return int(t * s * hd)
        return 0

    def replace(self, **changes) -> "Graph":
        """A new graph with some of ``nodes``, ``params``, ``output``, ``name`` replaced.

        Node shapes are inferred again, so edited nodes may leave ``shape=None``.
        """
        kw = {"nodes": self.nodes, "params": self.params, "output": self.output,
              "name": self.name}
        kw.update(changes)
        if "nodes" in changes:
            kw["nodes"] = tuple(dataclasses.replace(n, shape=None) if not isinstance(n, Input)
                                else n for n in kw["nodes"])
        return Graph(**kw)

    def summary(self) -> str:
        """A table: one line per node with op, inputs, output shape and MACs."""
        lines = [f"graph {self.name!r}: {len(self.nodes)} nodes, {self.num_params():,} "
                 f"parameters, {self.macs() / 1e6:,.1f} M MAC per sample"]
        for n in self.nodes:
            macs = self.macs(n.name)
            lines.append(f"  {n.name:40s} {n.op:15s} {str(n.shape):18s} "
                         f"{'<- ' + ', '.join(n.inputs) if n.inputs else ''}"
                         f"{f'  {macs / 1e6:.1f} M MAC' if macs else ''}")
        return "\n".join(lines)


def _bias_name(weight: str, taken: Iterable[str]) -> str:
    base = weight[:-len(".weight")] + ".bias" if weight.endswith(".weight") else weight + ".bias"
    name, k, taken = base, 1, set(taken)
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def folded_batchnorms(graph: Graph, folded: Graph) -> dict[str, str]:
    """For each BatchNorm of ``graph`` that :func:`fold_batchnorm` folded away in ``folded``:
    its name -> the conv/linear layer that absorbed it (whose folded output it is)."""
    return {n.name: n.inputs[0] for n in graph.nodes
            if isinstance(n, BatchNorm) and n.name not in folded}


def fold_batchnorm(graph: Graph) -> Graph:
    """Fold every BatchNorm that directly follows a Conv2d or Linear into that layer.

    A BatchNorm is folded when its input is a conv/linear node that nothing else reads:
    ``w' = w * s`` per output channel and ``b' = (b - mean) * s + beta`` with
    ``s = gamma / sqrt(var + eps)`` (computed in float64, stored as float32). The layer keeps
    its name and weight name; a layer without bias gets one named after its weight
    (``x.weight`` -> ``x.bias``). Readers of the BatchNorm then read the layer. Other
    BatchNorms stay as they are.
    """
    params = dict(graph.params)
    by_name = {n.name: n for n in graph.nodes}
    rename: dict[str, str] = {}
    dropped: set[str] = set()
    for bn in graph.nodes:
        if not isinstance(bn, BatchNorm):
            continue
        src = by_name[bn.inputs[0]]
        if not isinstance(src, (Conv2d, Linear)) or len(graph.consumers(src.name)) != 1:
            continue
        s = (params[bn.weight].astype(np.float64)
             / np.sqrt(params[bn.var].astype(np.float64) + bn.eps))
        w = params[src.weight].astype(np.float64)
        w = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
        b = params[src.bias].astype(np.float64) if src.bias is not None else 0.0
        b = (b - params[bn.mean]) * s + params[bn.bias]
        bias = src.bias or _bias_name(src.weight, params)
        params[src.weight] = w.astype(np.float32)
        params[bias] = b.astype(np.float32)
        params[src.weight].flags.writeable = False      # fresh arrays: no copy in Graph
        params[bias].flags.writeable = False
        for p in bn.params:
            params.pop(p)
        by_name[src.name] = dataclasses.replace(src, bias=bias)
        rename[bn.name] = src.name
        dropped.add(bn.name)
    if not dropped:
        return graph
    nodes = []
    for n in graph.nodes:
        if n.name in dropped:
            continue
        n = by_name[n.name]
        if any(i in rename for i in n.inputs):
            n = dataclasses.replace(n, inputs=tuple(rename.get(i, i) for i in n.inputs))
        nodes.append(n)
    return Graph(tuple(nodes), params, rename.get(graph.output, graph.output), graph.name)


def graphs_equal(a: Graph, b: Graph) -> bool:
    """True when two graphs have equal nodes, output and bit-identical parameters by name."""
    return (a.nodes == b.nodes and a.output == b.output and set(a.params) == set(b.params)
            and all(a.params[k].shape == b.params[k].shape
                    and a.params[k].tobytes() == b.params[k].tobytes() for k in a.params))
