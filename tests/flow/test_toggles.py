"""Toggle counts: the coverage file parser, and the counts of real Verilator runs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from fpxint_hw.errors import FpxintError
from fpxint_hw.flow import toggles as T
from fpxint_hw.flow.verilator import build, run_tiles_verilator_timed, verilator_missing
from fpxint_hw.golden import reference_tile
from fpxint_hw.hw.vectors import random_tile
from fpxint_hw.spec import load_array_spec


def _point(instance: str, signal: str, page: str = "v_toggle/fpxint_array") -> str:
    fields = {"f": "fpxint_array.v", "l": "10", "n": "9", "t": "toggle", "page": page,
              "o": signal, "h": instance}
    return "C '" + "".join(f"\x01{k}\x02{v}" for k, v in fields.items()) + "'"


def test_read_counts_sums_the_bits_of_a_signal_and_leaves_out_the_clock(tmp_path):
    pe, out = "TOP.fpxint_array.datapath.array.pe_1_0", "TOP.fpxint_array.datapath.out_1"
    lines = ["# SystemC::Coverage-3",
             f"{_point(pe, 'acc[0]:0->1')} 3", f"{_point(pe, 'acc[0]:1->0')} 2",
             f"{_point(pe, 'acc[1]:0->1')} 7",
             f"{_point(pe, 'clk:0->1')} 100", f"{_point(pe, 'clk:1->0')} 100",
             f"{_point(out, 'y[3]:0->1')} 11",
             f"{_point('TOP.fpxint_array', 'state:0->1')} 4",
             f"{_point(pe, 'x', page='v_line/fpxint_array')} 50"]     # not a toggle point
    path = tmp_path / "coverage.dat"
    path.write_text("\n".join(lines) + "\n")
    counts = T.read_counts(path)
    assert counts == {(pe, "acc"): 12, (out, "y"): 11, ("TOP.fpxint_array", "state"): 4}
    assert T.total(counts) == 27
    assert T.by_block(counts) == {"datapath.array.pe": 12, "datapath.out": 11, "top": 4}


def test_block_folds_the_indices_of_pes_and_columns():
    assert T.block("TOP.fpxint_array.datapath.array.pe_3_5") == "datapath.array.pe"
    assert T.block("TOP.fpxint_array.datapath.out_12") == "datapath.out"
    assert T.block("TOP.fpxint_array.fifo") == "fifo"
    assert T.block("TOP.fpxint_array") == "top"


def test_a_missing_coverage_file_is_a_clear_error(tmp_path):
    with pytest.raises(FpxintError, match="cannot read the toggle counts .*nothing.dat"):
        T.read_counts(tmp_path / "nothing.dat")


needs_verilator = pytest.mark.skipif(verilator_missing() is not None,
                                     reason=f"Verilator: {verilator_missing()}")


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    """One counting build of ``tiny`` shared by the tests below (about a minute)."""
    return tmp_path_factory.mktemp("vl")


@needs_verilator
def test_lanes_switched_off_toggle_less_and_results_stay_exact(build_dir):
    """The counting build computes what the plain one does, and switching lanes off by the
    lane mask lowers the PEs' toggles: all four lanes > two > one."""
    spec = load_array_spec("tiny")
    model = build(spec, build_dir, toggles=True)
    tile = random_tile(spec, 48, np.random.default_rng(3), k=2 * spec.rows, ties=False)
    masks = [np.ones((2, 2), bool), np.eye(2, dtype=bool), np.array([[1, 0], [0, 0]], bool)]
    pe_toggles = []
    for mask in masks:
        t = dataclasses.replace(tile, lane_mask=mask)
        run = run_tiles_verilator_timed(spec, [t], model=model)
        ref = reference_tile(t)
        assert np.array_equal(run.results[0].acc, ref.acc)
        assert np.array_equal(run.results[0].out, ref.out)
        pe_toggles.append(T.by_block(run.toggles)["datapath.array.pe"])
    assert pe_toggles[0] > pe_toggles[1] > pe_toggles[2] > 0


@needs_verilator
def test_verify_model_reports_toggles_per_layer_and_per_input(build_dir, tmp_path, capsys):
    from fpxint_hw.cli import main
    out = tmp_path / "v.json"
    code = main(["verify", "--model", "mnist-resnet", "--spec", "tiny", "--images", "2",
                 "--toggles", "--build-dir", str(build_dir), "--json", str(out)])
    assert code == 0
    res = json.loads(out.read_text())
    per_layer = [lay["toggles"] for lay in res["layers"]]
    assert len(per_layer) >= 2 and all(n > 0 for n in per_layer)
    assert res["toggles"] == sum(per_layer) == sum(res["toggles_by_block"].values())
    assert res["toggles_per_input"] == res["toggles"] / 2
    assert "datapath.array.pe" in res["toggles_by_block"]
    assert "toggles" in capsys.readouterr().out


@needs_verilator
def test_harness_processes_side_by_side_count_all_their_toggles(build_dir):
    """Two column blocks in two harness processes count about what one process counts for
    both (each process adds only its own reset and drain cycles)."""
    spec = load_array_spec("tiny")
    model = build(spec, build_dir, toggles=True)
    tile = random_tile(spec, 48, np.random.default_rng(5), k=2 * spec.rows, n=2 * spec.cols,
                       ties=False)
    one, two = (T.total(run_tiles_verilator_timed(spec, [tile], model=model,
                                                  processes=p).toggles) for p in (1, 2))
    assert 0.8 * one < two < 1.25 * one
