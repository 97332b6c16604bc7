"""``fpxint run --model minilm --text ...``: sentence embeddings in float and their cosines.

Prints each sentence's token count, embedding norm and first values, and with two or more
sentences their cosine similarity matrix; ``--json`` writes the same (with the full
embeddings) as JSON.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ..errors import InputError
from ..report import format_table, write_json

__all__ = ["run_text"]


def run_text(args: argparse.Namespace, info) -> int:
    """Run the text model ``info`` (a ModelInfo of task "text", or None) on ``args.text``."""
    from ..models.minilm import load_minilm, tokenize

    if info is None or info.task != "text":
        raise InputError(f"--text applies to text models (minilm), not {args.model!r}")
    if not args.text:
        raise InputError(f"model {info.name!r} reads text: give --text 'a sentence' (once per "
                         f"sentence)")
    for opt, value in (("--input", args.input), ("--input-shape", args.input_shape),
                       ("--limit", args.limit), ("--keep-bn", args.keep_bn or None)):
        if value is not None:
            raise InputError(f"{opt} does not apply to text model {info.name!r}")
    model = load_minilm(args.weights)
    ids = tokenize(args.text)
    t0 = time.perf_counter()
    emb = np.stack([model.encode_ids(i) for i in ids])
    dt = time.perf_counter() - t0
    print(f"model {info.name}: {len(ids)} sentence(s) in {dt:.2f} s; sentence embedding = mean "
          f"over tokens of the last hidden states, L2-normalised ({emb.shape[1]} values)")
    results = []
    for text, i, e in zip(args.text, ids, emb):
        norm = float(np.linalg.norm(e.astype(np.float64)))
        results.append({"text": text, "tokens": int(i.size), "norm": norm,
                        "embedding": [float(v) for v in e]})
        print(f"\n{text!r}: {i.size} tokens, norm {norm:.6f}, first values "
              + " ".join(f"{v:+.5f}" for v in e[:5]))
    report = {"model": args.model, "task": "text", "seconds": dt, "results": results}
    if len(ids) > 1:
        cos = (emb.astype(np.float64) @ emb.T.astype(np.float64))
        report["cosine"] = cos.tolist()
        print("\ncosine similarity")
        rows = [(f"[{k + 1}]", *(f"{c:.4f}" for c in row)) for k, row in enumerate(cos)]
        print(format_table(("", *(f"[{k + 1}]" for k in range(len(ids)))), rows))
    if args.json:
        write_json(args.json, report)
    return 0
