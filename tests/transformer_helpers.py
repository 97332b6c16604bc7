"""A tiny random BERT encoder layer built in code (T=5, F=8, H=2, FFN 16), as minilm's."""

import numpy as np

from fpxint_hw.graph import Add, Gelu, Graph, Input, LayerNorm, Linear, MatMul, Scale, Softmax

T, F, H, FFN = 5, 8, 2, 16


def tiny_encoder(seed: int = 0) -> Graph:
    """Embedding LayerNorm, then one encoder layer: q/k/v, scores, scale, softmax, context,
    output dense + residual, LayerNorm, FFN with GELU, residual, LayerNorm."""
    rng = np.random.default_rng(seed)
    p = {}

    def lin(name, fin, fout):
        p[name + ".weight"] = (rng.standard_normal((fout, fin)) / np.sqrt(fin)).astype(np.float32)
        p[name + ".bias"] = (rng.standard_normal(fout) * 0.1).astype(np.float32)
        return Linear(name=name, inputs=(src[0],), weight=name + ".weight", bias=name + ".bias")

    def ln(name, x):
        p[name + ".weight"] = rng.uniform(0.5, 1.5, F).astype(np.float32)
        p[name + ".bias"] = (rng.standard_normal(F) * 0.2).astype(np.float32)
        return LayerNorm(name=name, inputs=(x,), weight=name + ".weight", bias=name + ".bias",
                         eps=1e-12)

    nodes = [Input(name="x", shape=(T, F)), ln("ln0", "x")]
    src = ["ln0"]
    nodes += [lin("q", F, F), lin("k", F, F), lin("v", F, F)]
    p["scale"] = np.array([1 / np.sqrt(F // H)], dtype=np.float32)
    nodes += [MatMul(name="scores", inputs=("q", "k"), heads=H, transpose_b=True),
              Scale(name="scaled", inputs=("scores",), weight="scale"),
              Softmax(name="probs", inputs=("scaled",), groups=H),
              MatMul(name="context", inputs=("probs", "v"), heads=H)]
    src = ["context"]
    nodes += [lin("o", F, F), Add(name="res1", inputs=("o", "ln0")), ln("ln1", "res1")]
    src = ["ln1"]
    nodes += [lin("ff1", F, FFN), Gelu(name="gelu", inputs=("ff1",))]
    src = ["gelu"]
    nodes += [lin("ff2", FFN, F), Add(name="res2", inputs=("ff2", "ln1")), ln("ln2", "res2")]
    return Graph(tuple(nodes), p)


def tiny_inputs(n: int = 3, seed: int = 1) -> np.ndarray:
    """``(n, T, F)`` float32 embeddings (std 1, a nonzero mean per feature)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, T, F)) + rng.standard_normal(F) * 0.3).astype(np.float32)
