"""Throughput of the bit-exact ResNet-50 against onnxruntime float32 and int8, same run.

Each runner works in its own process (same threads, batch 1 and 8), twice, the second pass in
reverse order; images/s is the median of all its timed runs:

* onnxruntime float32 on the float graph exported to ONNX;
* onnxruntime int8: the same float graph quantized here with ``quantize_static``
  (QLinearConv, per-channel int8 weights, uint8 activations, calibrated on the shipped
  photos) -- fast, but not any hardware's exact arithmetic;
* the bit-exact simulator at W4x2/A4x2, W4x3/A4x3 and W8x1/A8x1 (pow2, per-channel weights,
  layer level), with the int8 GEMMs each format needs on this CPU.

It prints images/s, the ratios to both onnxruntime runners, the peak memory of each
runner's batch-8 runs (the resident-set high-water mark from the timed runs alone), where the
simulator's time goes (GEMM, im2col, requantization, split, other layers), the 1,000-digit
MNIST run at W4x4/A4x4, and the machine's load.

    python benchmarks/bench_resnet50.py [--threads 2] [--repeats 3] [--passes 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

FORMATS = {"W4x2/A4x2": (4, 2, 4, 2), "W4x3/A4x3": (4, 3, 4, 3), "W8x1/A8x1": (8, 1, 8, 1)}
RUNNERS = ["onnxruntime float32", "onnxruntime int8"] + [f"bit-exact {f}" for f in FORMATS]
BATCHES = (1, 8)


# -- memory ------------------------------------------------------------------------------------

def _status_kb(field: str) -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the resident-set high-water mark (Linux ``clear_refs``); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    """Peak resident set since the last reset (MB)."""
    kb = _status_kb("VmHWM")
    if kb is None:
        import resource
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024


# -- one runner, in its own process ------------------------------------------------------------

def _ort_session(model_bytes_or_path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_bytes_or_path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def _quantized(float_model, calib, tmp):
    """The float model quantized by onnxruntime: QLinearConv, per-channel s8 x u8."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    src, dst = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "int8.onnx")
    onnx.save(float_model, src)
    name = float_model.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{name: calib[i:i + 1]} for i in range(calib.shape[0])])

        def get_next(self):
            return next(self._it, None)

    import logging
    logging.getLogger().setLevel(logging.ERROR)          # its pre-processing advice
    quantize_static(src, dst, Reader(), quant_format=QuantFormat.QOperator, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return dst


def _times(fn, x, repeats) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return times


def run_one(name: str, threads: int, repeats: int) -> dict:
    """Time one runner at batch 1 and 8 (this process only); returns its figures."""
    importlib.import_module("fpxint_hw")       # sets the OpenMP wait policy before Numba
    import numba
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    from fpxint_hw.graph import fold_batchnorm
    from fpxint_hw.io.onnx_export import graph_to_onnx
    from fpxint_hw.models import build_model, get_model_info, sample_inputs

    graph = build_model("resnet50", fold_bn=False)
    x8 = sample_inputs(graph.input_shape, task="synthetic", limit=8).x
    info: dict = {"name": name}
    with tempfile.TemporaryDirectory() as tmp:
        if name.startswith("onnxruntime"):
            model = graph_to_onnx(fold_batchnorm(graph))
            if name.endswith("int8"):
                calib = sample_inputs(graph.input_shape).x          # the shipped photos
                fn = _ort_session(_quantized(model, calib, tmp), threads)
            else:
                fn = _ort_session(model.SerializeToString(), threads)
            sim = None
        else:
            from fpxint_hw.intsim import Simulator
            from fpxint_hw.intsim.cpu import int8_gemm
            from fpxint_hw.quant import expand_graph
            from fpxint_hw.spec import SeriesFormat
            from fpxint_hw.workflows.network import input_range
            wb, wt, ab, at = FORMATS[name.split()[-1]]
            prog = expand_graph(graph, SeriesFormat(wb, wt, per_channel=True),
                                SeriesFormat(ab, at), "layer",
                                input_range=input_range(get_model_info("resnet50")))
            sim = Simulator(prog, threads=threads)
            fn = sim
            plans = sorted(set(sim.gemm_plans().values()))
            info.update(plans=plans, int8_gemm=int8_gemm().to_dict(),
                        gemms=max(p.plan.gemms for p in sim.plans.values()
                                  if p.plan is not None))
        for b in BATCHES:                                   # warm-up: JIT, caches, prepacking
            fn(x8[:b])
        info["load"] = _load()
        info["seconds"] = {}
        for b in BATCHES:
            if b == 8:
                info["peak_reset"] = _reset_peak()
                base = (_status_kb("VmRSS") or 0) / 1024
            info["seconds"][b] = _times(fn, x8[:b], repeats)
        info["peak_mb_b8"] = _peak_mb()
        info["rss_before_b8_mb"] = base
        if sim is not None:
            # the phases from a profiled twin, after the timed runs: profiling drives each
            # layer's chunks from Python to time them, a few per cent slower
            del sim, fn
            prof = Simulator(prog, threads=threads, profile=True)
            prof(x8)
            prof.profile.clear()
            _times(prof, x8, repeats)
            info["profile_b8"] = {k: v / repeats for k, v in prof.profile.by_phase().items()}
            layers = prof.profile.by_layer()
            top = sorted(layers.items(), key=lambda kv: -sum(kv[1].values()))[:6]
            info["top_layers_b8"] = [(n, {k: v / repeats for k, v in ph.items()})
                                     for n, ph in top]
    return info


def run_mnist(repeats: int, threads: int) -> dict:
    """The 1,000 held-out MNIST digits at W4x4/A4x4 (batch 8, as ``fpxint simulate``):
    seconds to compile the program, build the simulator and run the digits (after one
    warm-up batch, so no JIT)."""
    importlib.import_module("fpxint_hw")
    import numba
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    from fpxint_hw.intsim import Simulator
    from fpxint_hw.models import build_model, get_model_info, sample_inputs
    from fpxint_hw.quant import expand_graph
    from fpxint_hw.spec import SeriesFormat
    from fpxint_hw.workflows.network import input_range
    graph = build_model("mnist-resnet", fold_bn=False)
    samples = sample_inputs(graph.input_shape, limit=1000)
    fmt = (SeriesFormat(4, 4, per_channel=True), SeriesFormat(4, 4))
    rng = input_range(get_model_info("mnist-resnet"))
    Simulator(expand_graph(graph, *fmt, "layer", input_range=rng), threads=threads)(
        samples.x[:8])                                        # JIT and the int8 self-test
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        prog = expand_graph(graph, *fmt, "layer", input_range=rng)
        t1 = time.perf_counter()
        sim = Simulator(prog, threads=threads)
        t2 = time.perf_counter()
        out = np.concatenate([sim.logits(samples.x[i:i + 8]) for i in range(0, 1000, 8)])
        t3 = time.perf_counter()
        runs.append((t1 - t0, t2 - t1, t3 - t2))
    compile_s, build_s, run_s = (float(np.median(v)) for v in zip(*runs))
    acc = float(np.mean(out.argmax(1) == samples.labels))
    return {"compile_s": compile_s, "simulator_s": build_s, "run_s": run_s,
            "total_s": compile_s + build_s + run_s, "accuracy": acc}


# -- the driver ------------------------------------------------------------------------------

def _child(args, what: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--threads", str(args.threads),
           "--repeats", str(args.repeats), "--child", what]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{what} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _merge(passes: list[dict]) -> dict:
    """One runner's passes as one row: images/s from the median of every timed run, the
    largest peak memory, the last pass's profile."""
    row = dict(passes[-1])
    row["img_s"] = {str(b): b / float(np.median([t for p in passes
                                                 for t in p["seconds"][str(b)]]))
                    for b in BATCHES}
    row["peak_mb_b8"] = max(p["peak_mb_b8"] for p in passes)
    row["passes"] = len(passes)
    return row


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per batch and pass")
    ap.add_argument("--passes", type=int, default=2, choices=(1, 2),
                    help="runs of every runner (the second in reverse order); images/s is "
                         "the median over all timed runs")
    ap.add_argument("--json", default=None, help="write every figure to this JSON file")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        res = run_mnist(args.repeats, args.threads) if args.child == "mnist" else \
            run_one(args.child, args.threads, args.repeats)
        print(json.dumps(res))
        return res
    load_start = _load()
    # every runner twice, the second pass in reverse order, so that a change of the
    # machine's load in between weighs on all of them alike
    runs = {name: [] for name in RUNNERS}
    for order in [RUNNERS, RUNNERS[::-1]][:args.passes]:
        for name in order:
            runs[name].append(_child(args, name))
    rows = [_merge(runs[name]) for name in RUNNERS]
    mnist = _child(args, "mnist")
    load_end = _load()
    by = {r["name"]: r for r in rows}
    f32, i8 = by["onnxruntime float32"], by["onnxruntime int8"]
    print(f"ResNet-50, {args.threads} threads, median of {args.passes} x {args.repeats} "
          f"runs; load average "
          f"(1, 5, 15 min) {load_start} at the start, {load_end} at the end")
    det = next((r["int8_gemm"] for r in rows if "int8_gemm" in r), None)
    if det:
        print(f"int8 GEMM: {det['reason']}")
    head = (f"{'runner':22s} {'GEMMs':>5s} " + " ".join(f"{'img/s b' + str(b):>9s}"
                                                        for b in BATCHES)
            + f" {'x ort int8 (b1/b8)':>19s} {'x ort fp32 (b1/b8)':>19s} {'peak MB b8':>10s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        r["x_ort_int8"] = {b: r["img_s"][str(b)] / i8["img_s"][str(b)] for b in BATCHES}
        r["x_ort_fp32"] = {b: r["img_s"][str(b)] / f32["img_s"][str(b)] for b in BATCHES}
        rates = " ".join(f"{r['img_s'][str(b)]:9.2f}" for b in BATCHES)
        x8 = "/".join(f"{r['x_ort_int8'][b]:.2f}" for b in BATCHES)
        x32 = "/".join(f"{r['x_ort_fp32'][b]:.2f}" for b in BATCHES)
        print(f"{r['name']:22s} {r.get('gemms', ''):>5} {rates} {x8:>19s} {x32:>19s} "
              f"{r['peak_mb_b8']:10.0f}")
    print()
    for r in rows:
        if "plans" in r:
            print(f"{r['name']}: {'; '.join(r['plans'])}")
            prof = r["profile_b8"]
            total = sum(prof.values())
            print("  batch 8, profiled run, seconds per run: " + ", ".join(
                f"{k} {v:.3f} ({100 * v / total:.0f} %)" for k, v in prof.items() if v > 1e-3))
            print("  slowest layers: " + "; ".join(
                f"{n} {sum(ph.values()):.3f} s (gemm {ph.get('gemm', 0):.3f})"
                for n, ph in r["top_layers_b8"][:4]))
            print(f"  peak memory b8: {r['peak_mb_b8']:.0f} MB = "
                  f"{r['peak_mb_b8'] / i8['peak_mb_b8']:.2f}x onnxruntime int8, "
                  f"{r['peak_mb_b8'] / f32['peak_mb_b8']:.2f}x float32")
    print()
    print(f"MNIST ResNet, 1,000 digits, W4x4/A4x4: {mnist['total_s']:.2f} s "
          f"(compile {mnist['compile_s']:.2f}, simulator {mnist['simulator_s']:.2f}, run "
          f"{mnist['run_s']:.2f}); accuracy {100 * mnist['accuracy']:.1f} %")
    result = {"threads": args.threads, "repeats": args.repeats, "passes": args.passes,
              "load_start": load_start,
              "load_end": load_end, "runners": rows, "mnist_w4x4": mnist}
    if args.json:
        from fpxint_hw.outputs import write_text
        write_text(args.json, json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
