"""int-onnx export: export time, onnxruntime and onnx.reference run times vs the simulator.

For each case (network, formats, inputs) compiles the program, exports it
(:func:`fpxint_hw.io.int_onnx.int_onnx_model`, serialized), and times, warm and best of
``--repeat``: the export, onnxruntime on the exported graph (2 intra-op threads, session
created beforehand) and the fast simulator (JIT warmed); with ``--reference`` also
``onnx.reference`` once on one input. Every run's ``int_output`` is checked equal to the
simulator's. Usage:

    python benchmarks/bench_export.py [--repeat 3] [--reference] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from fpxint_hw.intsim import Simulator
from fpxint_hw.io.int_onnx import OUTPUT_NAME, int_onnx_model, run_int_onnx
from fpxint_hw.spec import SeriesFormat
from fpxint_hw.workflows.network import input_range, load_inputs, load_network
from fpxint_hw.workflows.simulate import compile_terms

CASES = [("mnist-resnet", 4, 2, 100), ("mnist-resnet", 4, 3, 100), ("resnet18", 4, 2, 4),
         ("resnet18", 4, 3, 4), ("efficientnet-lite0", 4, 2, 4)]


def _best(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reference", action="store_true",
                    help="also time onnx.reference on one input (slow on ImageNet networks)")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args()
    import onnxruntime as ort
    rows = []
    for model, bits, terms, n in CASES:
        g, info = load_network(model)
        x, _, _ = load_inputs(g, info, n, None)
        prog, _, _ = compile_terms(g, w_fmt=SeriesFormat(bits, terms, per_channel=True),
                                   a_fmt=SeriesFormat(bits, terms), in_range=input_range(info))
        export_s, (onnx_model, data) = _best(
            lambda: (lambda m: (m, m.SerializeToString()))(int_onnx_model(prog)), args.repeat)
        sim = Simulator(prog)
        sim(x[:1])                                       # JIT
        sim_s, want = _best(lambda: sim(x), args.repeat)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        ort_s, got = _best(lambda: sess.run([OUTPUT_NAME], {"float_input": x})[0], args.repeat)
        assert np.array_equal(got, want), model
        row = {"model": model, "formats": f"W{bits}x{terms}/A{bits}x{terms}", "inputs": n,
               "nodes": len(onnx_model.graph.node), "megabytes": len(data) / 1e6,
               "export_s": export_s, "ort_s": ort_s, "simulator_s": sim_s,
               "reference_1_input_s": None}
        if args.reference:
            t = time.perf_counter()
            ref = run_int_onnx(onnx_model, x[:1], "reference")[OUTPUT_NAME]
            row["reference_1_input_s"] = time.perf_counter() - t
            assert np.array_equal(ref, want[:1]), model
        rows.append(row)
        print(f"{model:18} {row['formats']:10} {n:4} inputs  {row['nodes']:5} nodes "
              f"{row['megabytes']:6.1f} MB  export {export_s:5.2f} s  onnxruntime "
              f"{ort_s:6.2f} s  simulator {sim_s:6.2f} s  ratio {ort_s / sim_s:5.1f}"
              + (f"  onnx.reference (1 input) {row['reference_1_input_s']:.1f} s"
                 if args.reference else ""), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
