"""MiniLM-L6 sentence embeddings as integer programs: fidelity against float per term count.

For 4-bit and 8-bit terms (weights per channel, activations per tensor, pow2 lanes,
calibration-free ``mse`` ranges) and T = 1..4 terms of both, at layer level (every tensor an
integer: the program golden and the simulator run bit for bit) and tensor level (series
weights, float activations), over the fixed sentences of
``fpxint_hw.workflows.simulate.MINILM_SENTENCES`` (8 sentences, 28 pairs):

* mean (and least) cosine of each integer embedding with the float embedding;
* Spearman rank correlation of the 28 pair similarities with float's.

Prints a markdown table (the one in docs/results.md) and the cheapest format reaching mean
cosine >= 0.99; ``--json F`` writes the rows.

    python benchmarks/minilm_fidelity.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

from fpxint_hw.models.minilm import load_minilm
from fpxint_hw.spec import SeriesFormat
from fpxint_hw.workflows.simulate import MINILM_SENTENCES, minilm_fidelity


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--levels", default="layer,tensor")
    ap.add_argument("--max-terms", type=int, default=4)
    args = ap.parse_args()
    model = load_minilm()
    rows = []
    t0 = time.perf_counter()
    for level in args.levels.split(","):
        for bits in (4, 8):
            res = minilm_fidelity(MINILM_SENTENCES,
                                  SeriesFormat(bits, args.max_terms, per_channel=True),
                                  SeriesFormat(bits, args.max_terms), level, model=model)
            for r in res["rows"]:
                rows.append({"level": level, "bits": bits, **r})
                print(f"# {level} {bits}-bit x{r['w_terms']}: "
                      + (f"refused: {r['error']}" if r["error"] else
                         f"cos {r['mean_cosine']:.4f} min {r['min_cosine']:.4f} "
                         f"spearman {r['spearman']:.3f}")
                      + f" ({r['seconds']:.0f} s)", flush=True)
    print(f"\n{len(MINILM_SENTENCES)} sentences, {time.perf_counter() - t0:.0f} s\n")
    print("| level | term bits | T (W and A) | mean cosine | min cosine | pair Spearman |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r["error"]:
            cells = "refused | - | -"
        else:
            cells = f"{r['mean_cosine']:.4f} | {r['min_cosine']:.4f} | {r['spearman']:.3f}"
        print(f"| {r['level']} | {r['bits']} | {r['w_terms']} | {cells} |")
    ok = [r for r in rows if r["level"] == "layer" and not r["error"]
          and r["mean_cosine"] >= 0.99]
    if ok:
        best = min(ok, key=lambda r: (r["bits"] * r["w_terms"], r["bits"]))
        print(f"\ncheapest integer (layer-level) format with mean cosine >= 0.99: "
              f"W{best['bits']}x{best['w_terms']} / A{best['bits']}x{best['a_terms']} "
              f"(mean cosine {best['mean_cosine']:.4f})")
    for r in rows:
        if r["error"]:
            print(f"refused {r['level']} {r['bits']}-bit x{r['w_terms']}: {r['error']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
