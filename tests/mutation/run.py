"""Mutation testing: apply each curated mutation of ``mutants.yaml`` alone and see whether the
default test suite (``make test``) notices.

Every mutant is one exact text replacement in one source file: a bug a careless edit could
make (a bound one bit loose, a rounding tie the wrong way, a zero point dropped). The mutant
is *killed* when ``pytest -m "not slow"`` fails with it, and *survives* when the whole suite
passes. The mutations are applied to a private copy of the working tree (``PYTHONPATH`` points
the tests there), never to the checkout itself.

    python tests/mutation/run.py                 # every mutant, the whole default suite each
    python tests/mutation/run.py --only NAME ... # some of them
    python tests/mutation/run.py --quick         # only each mutant's listed killing tests
    python tests/mutation/run.py --rev HEAD      # the last commit, not the working tree
    python tests/mutation/run.py --json OUT.json # the results as JSON as well

Each mutant lists the tests expected to kill it (``kill``); they run first, with ``-x``, so a
killed mutant costs seconds. A mutant whose text is no longer in its file is reported
``stale`` (the code moved: update ``mutants.yaml``). Exit status 0 when every mutant selected
is killed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MUTANTS = Path(__file__).with_name("mutants.yaml")
FIELDS = {"name", "file", "find", "replace", "kill", "why"}


def load_mutants(path: Path = MUTANTS) -> list[dict]:
    """The curated mutants: ``name``, ``file`` (repository path), ``find`` (exact text, once in
    the file), ``replace``, ``kill`` (test ids run first) and ``why`` (the bug it stands for)."""
    with open(path, encoding="utf-8") as fh:
        mutants = yaml.safe_load(fh)
    names = set()
    for k, m in enumerate(mutants):
        if not isinstance(m, dict) or set(m) != FIELDS:
            raise SystemExit(f"{path}: mutant {k} must have exactly the fields "
                             f"{sorted(FIELDS)}, got {sorted(m) if isinstance(m, dict) else m!r}")
        if m["name"] in names:
            raise SystemExit(f"{path}: mutant name {m['name']!r} is used twice")
        names.add(m["name"])
    return mutants


def copy_tree(dest: Path, rev: str | None = None) -> None:
    """The tracked and untracked-but-not-ignored files of the checkout, as they are now, or
    (``rev``) the tree of that commit."""
    if rev is not None:
        archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, out.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _pytest(tree: Path, tests: list[str], whole: bool, timeout: float):
    """``pytest -x`` of ``tests`` in ``tree``, then (``whole``, if they pass) of the whole
    default suite: ``(outcome, first failing test or output tail, seconds)``."""
    outcome, detail, seconds = _pytest_once(tree, tests, timeout)
    if outcome == "passed" and whole:
        outcome, detail, more = _pytest_once(tree, ["tests", "fpxint_hw"], timeout)
        seconds += more
    return outcome, detail, seconds


def _pytest_once(tree: Path, tests: list[str], timeout: float):
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-m", "not slow", "-p", "no:cacheprovider",
           *tests]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", "", time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    failed = re.findall(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", proc.stdout, re.M)
    return ("passed" if proc.returncode == 0 else "failed"), (failed[0] if failed else
                                                               proc.stdout[-300:]), seconds


def run_mutant(tree: Path, m: dict, whole: bool, timeout: float) -> dict:
    """Apply ``m`` in ``tree``, run the tests, restore the file; the outcome as a dict."""
    path = tree / m["file"]
    text = path.read_text(encoding="utf-8")
    count = text.count(m["find"])
    row = {"name": m["name"], "file": m["file"], "why": m["why"]}
    if count != 1:
        return row | {"status": "stale", "detail": f"the text occurs {count} times"}
    path.write_text(text.replace(m["find"], m["replace"]), encoding="utf-8")
    try:
        status, detail, seconds = _pytest(tree, m["kill"], whole, timeout)
    finally:
        path.write_text(text, encoding="utf-8")
    verdict = {"failed": "killed", "passed": "survived", "timeout": "timeout"}[status]
    return row | {"status": verdict, "killed_by": detail if verdict == "killed" else None,
                  "seconds": round(seconds, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    ap.add_argument("--quick", action="store_true",
                    help="run only each mutant's listed tests, not the whole default suite")
    ap.add_argument("--rev", metavar="COMMIT",
                    help="mutate this commit's tree (default: the working tree as it is)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per mutant")
    ap.add_argument("--json", metavar="OUT", help="write the results here as JSON too")
    args = ap.parse_args(argv)
    mutants = load_mutants()
    if args.only:
        unknown = set(args.only) - {m["name"] for m in mutants}
        if unknown:
            raise SystemExit(f"unknown mutant(s): {', '.join(sorted(unknown))}")
        mutants = [m for m in mutants if m["name"] in args.only]
    rows = []
    with tempfile.TemporaryDirectory(prefix="fpxint-mutate-") as tmp:
        tree = Path(tmp)
        copy_tree(tree, args.rev)
        # the listed tests must pass on the unmutated code, or a "kill" means nothing
        kills = sorted({t for m in mutants for t in m["kill"]})
        status, detail, seconds = _pytest(tree, kills, False, args.timeout)
        if status != "passed":
            print(f"the unmutated code fails its listed tests ({detail}); fix that first")
            return 1
        print(f"baseline: {len(kills)} listed test targets pass ({seconds:.0f} s)")
        for k, m in enumerate(mutants, 1):
            row = run_mutant(tree, m, not args.quick, args.timeout)
            rows.append(row)
            print(f"[{k}/{len(mutants)}] {row['status']:8} {m['name']}"
                  + (f"  <- {row['killed_by']}" if row.get("killed_by") else "")
                  + (f"  ({row['detail']})" if row.get("detail") else "")
                  + (f"  {row['seconds']} s" if "seconds" in row else ""), flush=True)
    killed = sum(r["status"] == "killed" for r in rows)
    print(f"{killed} of {len(rows)} mutants killed"
          + ("" if args.quick else " by the default suite (make test)"))
    if args.json:
        sys.path.insert(0, str(ROOT))
        from fpxint_hw.outputs import write_text
        write_text(args.json, json.dumps({"quick": args.quick, "mutants": rows}, indent=1) + "\n")
    return 0 if killed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
