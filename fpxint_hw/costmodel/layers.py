"""The GEMM shapes of a network's convolution and linear layers (im2col view).

A conv layer with ``C_in`` input and ``C_out`` output channels, a ``kh x kw`` kernel,
``groups`` groups and an ``H_out x W_out`` output is, per group, a GEMM with
``M = batch * H_out * W_out`` vectors, reduction ``K = kh * kw * C_in / groups`` and
``N = C_out / groups`` columns. A linear layer is ``M = batch``, ``K = F_in``, ``N = F_out``.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from functools import lru_cache

from ..errors import FormatError

__all__ = ["GemmShape", "gemm_layers", "resnet50_layers"]


def _positive_int(v) -> bool:
    """True for an integer (not a bool) >= 1."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1


@dataclass(frozen=True)
class GemmShape:
    """One layer as ``groups`` independent GEMMs of ``M x K`` by ``K x N``.

    Members
    -------
    name : str
        Layer (node) name.
    m, k, n : int, >= 1
        Vectors, reduction length and output columns of one group.
    groups : int, >= 1
    """

    name: str
    m: int
    k: int
    n: int
    groups: int = 1

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the layer (all groups)."""
        return self.groups * self.m * self.k * self.n


def gemm_layers(graph, batch: int = 1) -> list[GemmShape]:
    """The conv / linear layers of ``graph`` (a :class:`fpxint_hw.graph.Graph`) in order."""
    from ..graph import Conv2d, Linear
    if not _positive_int(batch):
        raise FormatError(f"gemm_layers: batch must be an integer >= 1, got {batch!r}")
    out = []
    for node in graph.nodes:
        if isinstance(node, Conv2d):
            cout, cin_g, kh, kw = graph.params[node.weight].shape
            g = node.groups
            _, ho, wo = node.shape
            out.append(GemmShape(node.name, batch * ho * wo, cin_g * kh * kw, cout // g, g))
        elif isinstance(node, Linear):
            fout, fin = graph.params[node.weight].shape
            out.append(GemmShape(node.name, batch, fin, fout, 1))
    return out


@lru_cache(maxsize=4)
def _resnet50_shapes() -> tuple[GemmShape, ...]:
    import numpy as np

    from ..models.resnet import resnet_builder
    b = resnet_builder("resnet50")
    # shapes only: every parameter is a read-only broadcast of one value (no memory)
    params = {k: np.broadcast_to(np.float32(1.0), shp) for k, shp in b.shapes.items()}
    return tuple(gemm_layers(b.graph(params, source="layer shapes", fold_bn=False)))


def resnet50_layers(batch: int = 1) -> list[GemmShape]:
    """The 54 GEMM layers of ResNet-50 v1.5 at 224x224 (53 convs and the classifier) for
    ``batch`` images (M scales with the batch)."""
    if not _positive_int(batch):
        raise FormatError(f"resnet50_layers: batch (throughput.batch) must be an integer "
                          f">= 1, got {batch!r}")
    return [dataclasses.replace(s, m=s.m * batch) for s in _resnet50_shapes()]
