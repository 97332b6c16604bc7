"""MiniLM-L6 sentence embeddings as integer programs: fidelity against float per format.

Weights per channel, activations per tensor, pow2 lanes, calibration-free ``mse`` ranges,
over the fixed sentences of ``fpxint_hw.workflows.simulate.MINILM_SENTENCES`` (8 sentences,
28 pairs):

* the same term bits for weights and activations (4 and 8), T = 1..4 terms of both, at layer
  level (every tensor an integer: the program golden and the simulator run bit for bit) and
  tensor level (series weights, float activations);
* mixed formats at layer level (``--mixed``), e.g. the target W4x3/A8x2: 4-bit weight terms
  against 8-bit activation terms.

Per format: the mean (and least) cosine of each integer embedding with the float embedding,
and the Spearman rank correlation of the 28 pair similarities with float's. Prints the
markdown tables of docs/results.md and the cheapest layer-level format reaching mean cosine
>= 0.99, cost measured in lane-product bits (``w_bits * w_terms * a_bits * a_terms``: the
multiplier bits of every lane product a MAC needs); ``--json F`` writes the rows.

    python benchmarks/minilm_fidelity.py [--json out.json] [--mixed 4x3/8x2,4x2/8x2]
"""

from __future__ import annotations

import argparse
import json
import time

from fpxint_hw.models.minilm import load_minilm
from fpxint_hw.spec import SeriesFormat
from fpxint_hw.workflows.simulate import MINILM_SENTENCES, minilm_fidelity

#: Mixed layer-level formats (W bits x terms / A bits x terms): the target, then cheaper ones.
MIXED = ("4x3/8x2,4x2/8x2,4x2/7x2,4x2/6x2,4x2/5x3,4x2/4x3,3x3/8x2,3x2/8x2,2x3/8x2,4x1/8x2,"
         "8x1/8x2,8x1/7x2,6x1/8x2,6x1/7x2,6x1/6x2,6x1/5x3,5x1/8x2")


def _parse_mixed(text: str) -> list[tuple[int, int, int, int]]:
    out = []
    for item in filter(None, text.split(",")):
        try:
            w, a = item.split("/")
            (wb, wt), (ab, at) = (map(int, w.split("x")), map(int, a.split("x")))
        except ValueError:
            raise SystemExit(f"--mixed: {item!r} is not WBxWT/ABxAT (e.g. 4x3/8x2)") from None
        out.append((wb, wt, ab, at))
    return out


def _row(level, wb, ab, r) -> dict:
    return {"level": level, "w_bits": wb, "a_bits": ab, **r,
            "product_bits": wb * r["w_terms"] * ab * r["a_terms"]}


def _name(r) -> str:
    return f"W{r['w_bits']}x{r['w_terms']}/A{r['a_bits']}x{r['a_terms']}"


def _cells(r) -> str:
    if r["error"]:
        return "refused | - | -"
    return f"{r['mean_cosine']:.4f} | {r['min_cosine']:.4f} | {r['spearman']:.3f}"


def _progress(r) -> None:
    print(f"# {r['level']} {_name(r)}: "
          + (f"refused: {r['error']}" if r["error"] else
             f"cos {r['mean_cosine']:.4f} min {r['min_cosine']:.4f} "
             f"spearman {r['spearman']:.3f}")
          + f" ({r['seconds']:.0f} s)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--levels", default="layer,tensor")
    ap.add_argument("--max-terms", type=int, default=4)
    ap.add_argument("--mixed", default=MIXED, metavar="WBxWT/ABxAT,...",
                    help="mixed layer-level formats ('' for none; default: %(default)s)")
    args = ap.parse_args()
    model = load_minilm()
    rows, mixed = [], []
    t0 = time.perf_counter()
    for level in filter(None, args.levels.split(",")):
        for bits in (4, 8):
            res = minilm_fidelity(MINILM_SENTENCES,
                                  SeriesFormat(bits, args.max_terms, per_channel=True),
                                  SeriesFormat(bits, args.max_terms), level, model=model)
            for r in res["rows"]:
                rows.append(_row(level, bits, bits, r))
                _progress(rows[-1])
    for wb, wt, ab, at in _parse_mixed(args.mixed):
        res = minilm_fidelity(MINILM_SENTENCES, SeriesFormat(wb, wt, per_channel=True),
                              SeriesFormat(ab, at), "layer", model=model,
                              terms=[max(wt, at)])
        mixed.append(_row("layer", wb, ab, res["rows"][-1]))
        _progress(mixed[-1])
    print(f"\n{len(MINILM_SENTENCES)} sentences, {time.perf_counter() - t0:.0f} s\n")
    if rows:
        print("| level | term bits | T (W and A) | mean cosine | min cosine | pair Spearman |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['level']} | {r['w_bits']} | {r['w_terms']} | {_cells(r)} |")
    if mixed:
        print("\n| layer-level format | lane products | lane-product bits | mean cosine "
              "| min cosine | pair Spearman |")
        print("|---|---|---|---|---|---|")
        for r in sorted(mixed, key=lambda r: -r["product_bits"]):
            print(f"| {_name(r)} | {r['w_terms'] * r['a_terms']} | {r['product_bits']} "
                  f"| {_cells(r)} |")
    ok = [r for r in rows + mixed if r["level"] == "layer" and not r["error"]
          and r["mean_cosine"] >= 0.99]
    if ok:
        best = min(ok, key=lambda r: (r["product_bits"], r["w_terms"] * r["a_terms"]))
        print(f"\ncheapest integer (layer-level) format with mean cosine >= 0.99: {_name(best)} "
              f"({best['product_bits']} lane-product bits, mean cosine "
              f"{best['mean_cosine']:.4f})")
    for r in rows + mixed:
        if r["error"]:
            print(f"refused {r['level']} {_name(r)}: {r['error']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"same_bits": rows, "mixed": mixed}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
