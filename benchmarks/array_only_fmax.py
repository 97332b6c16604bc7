"""Fmax of the PE grid alone (SystolicArray, without the output units) on ECP5.

    python benchmarks/array_only_fmax.py small default

The accelerator's critical path is in its output units (docs/fpga_results.md). To see what
the processing elements themselves allow once the output units are pipelined further, this
exports only :class:`fpxint_hw.hw.array.SystolicArray` of each spec (skew, PEs, column
combine, de-skew), synthesizes it with the same flow and places it out of context.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from amaranth.back import verilog  # noqa: E402

from fpxint_hw.flow.pnr import place_and_route  # noqa: E402
from fpxint_hw.flow.synth import TOP, synthesize  # noqa: E402
from fpxint_hw.hw.array import SystolicArray  # noqa: E402
from fpxint_hw.spec import load_array_spec  # noqa: E402


def main(argv=None) -> int:
    names = (sys.argv[1:] if argv is None else argv) or ["small"]
    for name in names:
        spec = load_array_spec(name)
        t0 = time.perf_counter()
        text = verilog.convert(SystolicArray(spec), name=TOP, emit_src=False)
        s = synthesize(spec, "ecp5", verilog_text=text)
        r = place_and_route(s, freq_mhz=200)
        cp = r.critical_path
        print(f"{name} PE grid only ({spec.rows}x{spec.cols}): {s.luts} LUT4, {s.carries} "
              f"CCU2C, {s.ffs} FF, {s.dsps} DSP; Fmax {r.fmax_mhz:.1f} MHz on {r.device}; "
              f"critical path {cp.delay_ns:.2f} ns ({cp.logic_ns:.2f} logic, "
              f"{cp.routing_ns:.2f} routing, {cp.levels} cells, {cp.carry_cells} carry) "
              f"from {cp.start} to {cp.end} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
