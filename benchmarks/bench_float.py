"""Float inference speed: fpxint's numpy executor vs onnxruntime on the same graph, same run.

Builds the model (ResNet-50 with its synthetic weights by default), exports it to ONNX, and
times both runtimes with 2 threads (``--threads``) on the same inputs at batch 1 and 8 (medians of runs
that alternate between the two, after a warm-up). Prints images/s of each, the ratio onnxruntime / fpxint, and the relative
logit difference as a sanity check. Speeds are only measured here, never asserted in tests.

    .venv/bin/python benchmarks/bench_float.py [--model resnet50] [--batch 1 8] [--threads 2]
"""

from __future__ import annotations

import os
import sys


def _threads(argv) -> str:
    """The --threads value (default 2), read before numpy starts its BLAS thread pool."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "2"


THREADS = _threads(sys.argv[1:])
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = THREADS

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def _time_pair(fa, fb, min_runs: int, min_seconds: float) -> tuple[float, float]:
    """Median seconds of one call of ``fa`` and of ``fb``, timed alternately after a warm-up.

    Alternating keeps both runtimes under the same machine load when the load changes.
    """
    fa(), fb()
    ta, tb, t_end = [], [], time.perf_counter() + 2 * min_seconds
    while len(ta) < min_runs or time.perf_counter() < t_end:
        for f, acc in ((fa, ta), (fb, tb)):
            t0 = time.perf_counter()
            f()
            acc.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--min-runs", type=int, default=5)
    ap.add_argument("--min-seconds", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=2,
                    help="BLAS threads for fpxint and intra-op threads for onnxruntime")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)

    import onnxruntime as ort

    from fpxint_hw.float_exec import FloatExecutor
    from fpxint_hw.io.onnx_export import graph_to_onnx
    from fpxint_hw.models import build_model

    graph = build_model(args.model)
    ex = FloatExecutor(graph)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(THREADS)
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(graph_to_onnx(graph).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    name = graph.input.name
    print(f"{args.model}: {graph.macs() / 1e9:.2f} G MAC per image; numpy {np.__version__}, "
          f"onnxruntime {ort.__version__}, {THREADS} threads, {platform.processor() or platform.machine()}")
    print(f"{'batch':>5}  {'fpxint img/s':>12}  {'onnxruntime img/s':>17}  "
          f"{'ort/fpxint':>10}  {'rel. logit diff':>15}")
    rows = []
    for b in args.batch:
        x = np.random.default_rng(b).standard_normal((b, *graph.input_shape)).astype(np.float32)
        ours, theirs = _time_pair(lambda: ex(x), lambda: sess.run(None, {name: x}),
                                  args.min_runs, args.min_seconds)
        y, r = ex(x), sess.run(None, {name: x})[0]
        diff = float(np.max(np.abs(y - r)) / np.max(np.abs(r)))
        row = {"batch": b, "fpxint_img_s": b / ours, "onnxruntime_img_s": b / theirs,
               "ratio": ours / theirs, "rel_logit_diff": diff}
        rows.append(row)
        print(f"{b:5d}  {row['fpxint_img_s']:12.1f}  {row['onnxruntime_img_s']:17.1f}  "
              f"{row['ratio']:10.2f}  {diff:15.2e}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "threads": int(THREADS), "rows": rows}, f,
                      indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
