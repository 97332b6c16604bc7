"""Series expansion speed: fpxint_hw.expand vs a plain numpy quantize-per-term loop.

Expands a ResNet-50-sized set of float32 weight tensors (25.6 M values: every conv and the
classifier, torchvision v1.5 shapes) with 4-bit x 3-term per-channel pow2 series, and in the
same run the obvious numpy loop over terms. Prints both times (best of --repeat) and the ratio
numpy / fpxint (>= 1 means the toolkit is at least as fast). Usage:

    python benchmarks/bench_expand.py [--repeat 5] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numba
import numpy as np

from fpxint_hw import SeriesFormat, expand


def resnet50_weight_shapes() -> list[tuple[int, ...]]:
    """Conv and fc weight shapes of ResNet-50 (v1.5): 25.5 M weights."""
    shapes = [(64, 3, 7, 7)]
    cin = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            shapes += [(width, cin, 1, 1), (width, width, 3, 3), (4 * width, width, 1, 1)]
            if b == 0:
                shapes.append((4 * width, cin, 1, 1))          # downsample
            cin = 4 * width
    shapes.append((1000, 2048))
    return shapes


def numpy_loop(w: np.ndarray, fmt: SeriesFormat) -> np.ndarray:
    """The obvious numpy expansion: quantize, subtract, repeat, one term at a time."""
    flat = w.reshape(w.shape[0], -1)
    step = (np.abs(flat).max(axis=1, keepdims=True) / fmt.qmax).astype(np.float32)
    step[step == 0] = 1
    r = flat.copy()
    digits = np.empty((fmt.terms,) + flat.shape, dtype=np.int8)
    for k in range(fmt.terms):
        q = np.clip(np.rint(r / step), fmt.qmin, fmt.qmax)
        digits[k] = q
        r -= q * step
        step = step / fmt.radix
    return digits


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="write the figures as JSON")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    tensors = [(rng.standard_normal(s) * np.sqrt(2.0 / np.prod(s[1:]))).astype(np.float32)
               for s in resnet50_weight_shapes()]
    values = sum(t.size for t in tensors)
    fmt = SeriesFormat(bits=4, terms=3, per_channel=True)
    expand(tensors[0], fmt)                                   # compile / load the kernels
    ours = best_of(lambda: [expand(t, fmt) for t in tensors], args.repeat)
    peer = best_of(lambda: [numpy_loop(t, fmt) for t in tensors], args.repeat)
    result = {"values": values, "tensors": len(tensors), "format": fmt.to_dict(),
              "threads": numba.get_num_threads(), "fpxint_s": ours, "numpy_loop_s": peer,
              "ratio_numpy_over_fpxint": peer / ours}
    print(f"{len(tensors)} tensors, {values / 1e6:.1f} M values, W{fmt.bits}x{fmt.terms} "
          f"per-channel, {numba.get_num_threads()} threads, best of {args.repeat}")
    print(f"  fpxint expand     {ours:7.3f} s  ({values / ours / 1e6:6.0f} M values/s)")
    print(f"  numpy term loop   {peer:7.3f} s  ({values / peer / 1e6:6.0f} M values/s)")
    print(f"  ratio numpy/fpxint {peer / ours:.2f}x (target >= 1.0, and fpxint < 1 s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
