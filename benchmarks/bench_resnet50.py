"""Throughput of the bit-exact expanded ResNet-50 against float32 peers, same run, same threads.

Runs the layer-level integer program (W4x2/A4x2 and W4x3/A4x3, pow2, per-channel weights) with
the fast simulator at batch 1 and 8, float32 ResNet-50 in onnxruntime (the same graph exported
to ONNX) and, when installed, in PyTorch; prints images/s and the ratios to onnxruntime.

    python benchmarks/bench_resnet50.py [--threads 2] [--repeats 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def _rate(fn, x, repeats):
    fn(x)                                                  # warm-up (compilation, caches)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t0)
    return x.shape[0] / best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import numba
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    import onnxruntime as ort

    from fpxint_hw.quant import expand_graph
    from fpxint_hw.io.onnx_export import graph_to_onnx
    from fpxint_hw.intsim import Simulator
    from fpxint_hw.models import build_model, get_model_info, sample_inputs
    from fpxint_hw.workflows.network import input_range
    from fpxint_hw.spec import SeriesFormat

    graph = build_model("resnet50", fold_bn=False)
    info = get_model_info("resnet50")
    x8 = sample_inputs(graph.input_shape, task="synthetic", limit=8).x
    rows = []
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    from fpxint_hw.graph import fold_batchnorm
    sess = ort.InferenceSession(graph_to_onnx(fold_batchnorm(graph)).SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    iname = sess.get_inputs()[0].name
    ort_fn = lambda x: sess.run(None, {iname: x})[0]       # noqa: E731
    peers = {}
    for b in (1, 8):
        peers[("ort", b)] = _rate(ort_fn, x8[:b], args.repeats)
        rows.append({"name": "onnxruntime float32", "batch": b, "img_s": peers[("ort", b)]})
    try:
        import torch
        torch.set_num_threads(args.threads)
        from fpxint_hw.float_exec import FloatExecutor  # noqa: F401
        tm = _torch_module(graph)
        with torch.inference_mode():
            for b in (1, 8):
                r = _rate(lambda x: tm(torch.from_numpy(x)), x8[:b], args.repeats)
                rows.append({"name": "torch float32", "batch": b, "img_s": r})
    except ImportError:
        pass
    for wt, at in ((2, 2), (3, 3)):
        prog = expand_graph(graph, SeriesFormat(4, wt, per_channel=True), SeriesFormat(4, at),
                            "layer", input_range=input_range(info))
        sim = Simulator(prog, threads=args.threads)
        for b in (1, 8):
            r = _rate(sim, x8[:b], args.repeats)
            rows.append({"name": f"bit-exact W4x{wt}/A4x{at}", "batch": b, "img_s": r,
                         "backends": sorted(set(sim.backends().values()))})
    print(f"ResNet-50, {args.threads} threads, best of {args.repeats}")
    print(f"{'runner':28s} {'batch':>5s} {'img/s':>8s} {'x ort fp32':>10s}")
    for r in rows:
        r["ratio_vs_ort"] = r["img_s"] / peers[("ort", r["batch"])]
        print(f"{r['name']:28s} {r['batch']:5d} {r['img_s']:8.2f} {r['ratio_vs_ort']:10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


def _torch_module(graph):
    """The folded graph as a torch callable (convs, pools, adds), float32."""
    import torch
    import torch.nn.functional as F
    from fpxint_hw import graph as G
    g = G.fold_batchnorm(graph)
    params = {k: torch.from_numpy(np.array(v)) for k, v in g.params.items()}

    def run(x):
        env = {}
        for n in g.nodes:
            a = [env[i] for i in n.inputs]
            if isinstance(n, G.Input):
                v = x
            elif isinstance(n, G.Conv2d):
                pt, pl, pb, pr = n.padding
                xi = F.pad(a[0], (pl, pr, pt, pb)) if (pt, pl, pb, pr) != (0, 0, 0, 0) else a[0]
                v = F.conv2d(xi, params[n.weight], params[n.bias] if n.bias else None,
                             n.stride, 0, n.dilation, n.groups)
            elif isinstance(n, G.Relu):
                v = F.relu(a[0])
            elif isinstance(n, G.Clip):
                v = a[0].clamp(n.lo, n.hi)
            elif isinstance(n, G.Add):
                v = a[0] + a[1]
            elif isinstance(n, G.MaxPool):
                pt, pl, pb, pr = n.padding
                v = F.max_pool2d(F.pad(a[0], (pl, pr, pt, pb), value=-float("inf")),
                                 n.kernel, n.stride)
            elif isinstance(n, G.GlobalAvgPool):
                v = a[0].mean(dim=(2, 3), keepdim=True)
            elif isinstance(n, G.Flatten):
                v = a[0].flatten(1)
            elif isinstance(n, G.Linear):
                v = F.linear(a[0], params[n.weight], params[n.bias] if n.bias else None)
            else:
                raise NotImplementedError(n.op)
            env[n.name] = v
        return env[g.output]
    return run


if __name__ == "__main__":
    main()
