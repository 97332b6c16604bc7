"""Toggles per image of a whole network on the Verilated RTL, estimated from sampled column blocks.

Counting every signal bit (Verilator ``--coverage-toggle``, :mod:`fpxint_hw.flow.toggles`)
slows the 8x8 array to about 4 k cycles/s, so ResNet-50's 81.9 M cycles would take about
six hours. Every conv/linear layer is a set of *column blocks* (``cols`` output channels of
one group, with all their K-chunk passes and every vector); a block is the unit the array
runs start to finish. This script runs, per layer, ``--blocks`` blocks drawn at random
(without replacement, seeded) on the counting build, checks their results against the
simulator's tile runner bit for bit, and estimates the layer's toggles as the blocks' mean
times the number of blocks, with its standard error (finite-population corrected; exact
where every block runs). The layers' inputs are the simulator's (equal to the hardware's:
``fpxint verify --model`` checks that on every layer).

    python benchmarks/rtl_toggles.py [--model resnet50] [--spec default] [--images 1]
                                     [--blocks 2] [--seed 0] [--out docs/rtl_toggles.json]

``--blocks 0`` runs every block, the exact count, against which a sampled run of the same
network checks the estimator (the MNIST ResNet is small enough). Results are merged into
``--out`` by run key, so runs can be added one at a time.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def column_block(tile, spec, b: int):
    """Column block ``b`` of ``tile``: its output channels ``b*cols .. (b+1)*cols - 1``."""
    from fpxint_hw.tile import GemmTile
    c0, c1 = b * spec.cols, min((b + 1) * spec.cols, tile.n)
    return GemmTile(tile.w_fmt, tile.a_fmt, tile.weights[:, :, c0:c1], tile.acts,
                    tile.bias[c0:c1], tile.requant.columns(c0, c1), tile.out_fmt,
                    tile.lane_mask)


def estimate(per_block: list[int], population: int) -> tuple[float, float]:
    """Total over ``population`` blocks from a simple random sample's values, and its
    standard error (0 when the sample is the population)."""
    s = len(per_block)
    mean = sum(per_block) / s
    if s == population or s < 2:
        return mean * population, 0.0 if s == population else float("nan")
    sd = float(np.std(per_block, ddof=1))
    return mean * population, population * sd / math.sqrt(s) * math.sqrt(1 - s / population)


def main() -> None:
    from fpxint_hw.flow.toggles import by_block
    from fpxint_hw.flow.verilator import build, run_tiles_verilator_timed
    from fpxint_hw.intsim import Simulator, layer_tiles, run_tile
    from fpxint_hw.float_exec import to_nhwc
    from fpxint_hw.quant import for_array
    from fpxint_hw.quant import program as P
    from fpxint_hw.report import progress, write_json
    from fpxint_hw.spec import load_array_spec
    from fpxint_hw.workflows.network import input_range, load_inputs, load_network

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--spec", default="default")
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--blocks", type=int, default=2,
                    help="column blocks sampled per layer (0: every block, exact)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "docs" / "rtl_toggles.json"))
    args = ap.parse_args()

    spec = load_array_spec(args.spec)
    graph, info = load_network(args.model, None)
    x, _, names = load_inputs(graph, info, args.images, None)
    program = for_array(graph, spec, name=args.spec, input_range=input_range(info))
    model = build(spec, None, toggles=True)
    sim = Simulator(program)
    rng = np.random.default_rng(args.seed)
    env: dict[str, np.ndarray] = {}
    layers, blocks_total = [], Counter()
    t0 = time.perf_counter()
    gemms = [q for q in program.gemm_layers() if q.name not in program.target.misfits]
    with progress(len(gemms), f"toggles {args.model}", "layer") as bar:
        for q in program.layers:
            if isinstance(q, P.Quantize):
                env[q.name] = to_nhwc(program.quantize_input(x))
                continue
            inputs = [env[i] for i in q.inputs]
            env[q.name] = sim.run_layer(q, inputs)
            if not isinstance(q, P.GemmOp) or q.name in program.target.misfits:
                continue
            tiles = layer_tiles(program, q.name, inputs[0], sim)
            population = [(g, b) for g, t in enumerate(tiles)
                          for b in range(-(-t.n // spec.cols))]
            s = len(population) if args.blocks <= 0 else min(args.blocks, len(population))
            chosen = sorted(rng.choice(len(population), size=s, replace=False).tolist())
            per_block, blocks, cycles = [], Counter(), 0
            for i in chosen:
                g, b = population[i]
                sub = column_block(tiles[g], spec, b)
                hw = run_tiles_verilator_timed(spec, [sub], model=model, processes=1)
                want = run_tile(sub)
                got = hw.results[0]
                if not (np.array_equal(want.acc, got.acc) and np.array_equal(want.out, got.out)):
                    raise SystemExit(f"{q.name} block {g}:{b}: the RTL differs from the "
                                     f"simulator; run fpxint verify --model {args.model}")
                per_block.append(sum(hw.toggles.values()))
                blocks.update(by_block(hw.toggles))
                cycles += hw.cycles
            total, stderr = estimate(per_block, len(population))
            scale = len(population) / s
            for blk, n in blocks.items():
                blocks_total[blk] += n * scale
            layers.append({"layer": q.name, "node": q.node, "blocks": len(population),
                           "sampled": s, "toggles_per_block": per_block,
                           "sampled_cycles": cycles, "toggles": total, "stderr": stderr})
            bar.update(1)
    total = sum(r["toggles"] for r in layers)
    stderr = math.sqrt(sum(r["stderr"] ** 2 for r in layers))
    n = len(names) if names else len(x)
    key = f"{args.model}:{args.spec}:{args.images}:blocks={args.blocks}:seed={args.seed}"
    out = Path(args.out)
    done = json.loads(out.read_text()) if out.exists() else {}
    done[key] = {"model": args.model, "spec": args.spec, "images": n, "inputs": names,
                 "blocks_per_layer": args.blocks, "seed": args.seed,
                 "toggles": total, "stderr": stderr, "toggles_per_image": total / n,
                 "toggles_by_block": dict(sorted(blocks_total.items(), key=lambda kv: -kv[1])),
                 "sampled_cycles": sum(r["sampled_cycles"] for r in layers),
                 "seconds": time.perf_counter() - t0, "build_seconds": model.build_seconds,
                 "layers": layers}
    write_json(out, done)
    share = ", ".join(f"{b} {100 * v / total:.0f} %" for b, v in
                      list(done[key]["toggles_by_block"].items())[:5])
    print(f"{key}: {total / n:.4g} toggles per image (standard error {stderr / n:.2g}, "
          f"{100 * stderr / total:.2f} %), {done[key]['sampled_cycles']:,} cycles counted in "
          f"{done[key]['seconds']:.0f} s; {share}")


if __name__ == "__main__":
    main()
