"""A small helper that writes graph nodes and records the parameter shapes they need.

Model definitions call it layer by layer, naming nodes and parameters as the model's own
checkpoints do; :meth:`GraphBuilder.graph` then matches a weight mapping against the recorded
shapes (naming the file, the parameter and both shapes on a mismatch) and builds the Graph.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import InputError
from ..graph import (Add, AvgPool, BatchNorm, Clip, Conv2d, Flatten, GlobalAvgPool, Graph,
                     HardSigmoid, HardSwish, Input, Linear, MaxPool, Mul, Node, Relu,
                     fold_batchnorm)

__all__ = ["GraphBuilder", "same_padding"]


def same_padding(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) of one axis of ``size`` pixels.

    Output size is ``ceil(size / s)``; the odd pixel of padding goes after.
    """
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


class GraphBuilder:
    """Collects nodes in order plus ``shapes``: parameter name -> expected shape.

    Every layer method takes the node name (also the prefix of its parameters), the name of
    the node it reads, and returns the new node's name.
    """

    def __init__(self, name: str, input_shape: tuple[int, ...], input_name: str = "input"):
        self.name = name
        self.nodes: list[Node] = [Input(name=input_name, shape=tuple(input_shape))]
        self.shapes: dict[str, tuple[int, ...]] = {}
        #: Batch-norm nodes that end a residual branch (for synthetic initialisation).
        self.branch_ends: set[str] = set()

    def _add(self, node: Node) -> str:
        self.nodes.append(node)
        return node.name

    def conv(self, name: str, x: str, cin: int, cout: int, k: int, *, stride: int = 1,
             padding=0, dilation: int = 1, groups: int = 1, bias: bool = False) -> str:
        """A k x k Conv2d ``name`` with parameters ``name.weight`` (and ``name.bias``)."""
        self.shapes[f"{name}.weight"] = (cout, cin // groups, k, k)
        if bias:
            self.shapes[f"{name}.bias"] = (cout,)
        return self._add(Conv2d(name=name, inputs=(x,), weight=f"{name}.weight",
                                bias=f"{name}.bias" if bias else None, stride=stride,
                                padding=padding, dilation=dilation, groups=groups))

    def bn(self, name: str, x: str, c: int, eps: float = 1e-5, branch_end: bool = False) -> str:
        """BatchNorm ``name`` with torch's parameter names (weight, bias, running_mean/var)."""
        for p in ("weight", "bias", "running_mean", "running_var"):
            self.shapes[f"{name}.{p}"] = (c,)
        if branch_end:
            self.branch_ends.add(name)
        return self._add(BatchNorm(name=name, inputs=(x,), weight=f"{name}.weight",
                                   bias=f"{name}.bias", mean=f"{name}.running_mean",
                                   var=f"{name}.running_var", eps=eps))

    def relu(self, name: str, x: str) -> str:
        """ReLU."""
        return self._add(Relu(name=name, inputs=(x,)))

    def relu6(self, name: str, x: str) -> str:
        """ReLU6 as ``Clip(0, 6)``."""
        return self._add(Clip(name=name, inputs=(x,), lo=0.0, hi=6.0))

    def hardswish(self, name: str, x: str) -> str:
        """HardSwish, ``x * relu6(x + 3) / 6``."""
        return self._add(HardSwish(name=name, inputs=(x,)))

    def hardsigmoid(self, name: str, x: str) -> str:
        """torch's hardsigmoid, ``relu6(x + 3) / 6``."""
        return self._add(HardSigmoid(name=name, inputs=(x,), alpha=1.0 / 6.0, beta=0.5))

    def mul(self, name: str, x: str, gate: str) -> str:
        """``x`` times a per-channel ``gate`` of shape (C, 1, 1) (squeeze-and-excitation)."""
        return self._add(Mul(name=name, inputs=(x, gate)))

    def maxpool(self, name: str, x: str, k: int, stride: int, padding=0) -> str:
        """k x k max pooling."""
        return self._add(MaxPool(name=name, inputs=(x,), kernel=k, stride=stride,
                                 padding=padding))

    def avgpool(self, name: str, x: str, k: int, stride: int, padding=0) -> str:
        """k x k average pooling (padding counted)."""
        return self._add(AvgPool(name=name, inputs=(x,), kernel=k, stride=stride,
                                 padding=padding))

    def global_avgpool(self, name: str, x: str) -> str:
        """Global average pooling to (C, 1, 1)."""
        return self._add(GlobalAvgPool(name=name, inputs=(x,)))

    def add(self, name: str, a: str, b: str) -> str:
        """Residual sum."""
        return self._add(Add(name=name, inputs=(a, b)))

    def flatten(self, name: str, x: str) -> str:
        """Flatten to a vector."""
        return self._add(Flatten(name=name, inputs=(x,)))

    def linear(self, name: str, x: str, fin: int, fout: int, bias: bool = True) -> str:
        """Linear ``name`` with ``name.weight`` of shape (fout, fin) and ``name.bias``."""
        self.shapes[f"{name}.weight"] = (fout, fin)
        if bias:
            self.shapes[f"{name}.bias"] = (fout,)
        return self._add(Linear(name=name, inputs=(x,), weight=f"{name}.weight",
                                bias=f"{name}.bias" if bias else None))

    def graph(self, weights: Mapping[str, np.ndarray], *, source: str = "<weights>",
              fold_bn: bool = True, ignore: tuple[str, ...] = ("num_batches_tracked",)) -> Graph:
        """Match ``weights`` to the recorded shapes and build the graph.

        Keys ending in one of ``ignore`` are skipped (torch's BN counters). A missing
        parameter, a parameter of the wrong shape or an unknown key raises InputError naming
        ``source``, the parameter and the shapes. BatchNorms are folded unless ``fold_bn`` is
        false.
        """
        given = {k: v for k, v in weights.items() if not k.endswith(ignore)}
        missing = [k for k in self.shapes if k not in given]
        if missing:
            raise InputError(f"{source}: missing parameter {missing[0]!r} (shape "
                             f"{self.shapes[missing[0]]}) for model {self.name!r}"
                             f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}")
        unknown = [k for k in given if k not in self.shapes]
        if unknown:
            raise InputError(f"{source}: parameter {unknown[0]!r} is not part of model "
                             f"{self.name!r}"
                             f"{f' ({len(unknown) - 1} more unknown)' if len(unknown) > 1 else ''}")
        params = {}
        for k, shp in self.shapes.items():
            v = np.asarray(given[k])
            if tuple(v.shape) != shp:
                raise InputError(f"{source}: parameter {k!r} has shape {tuple(v.shape)}, "
                                 f"model {self.name!r} expects {shp}")
            params[k] = v
        g = Graph(tuple(self.nodes), params, name=self.name)
        return fold_batchnorm(g) if fold_bn else g
