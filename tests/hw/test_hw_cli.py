# amaranth: UnusedElaboratable=no
"""The ``fpxint rtl`` and ``fpxint verify`` commands, and the Verilog port list."""

import re

import numpy as np
import pytest

from fpxint_hw.cli import main
from fpxint_hw.flow.verilator import verilator_missing
from fpxint_hw.flow.verilog import TOP_NAME, convert, ports
from fpxint_hw.golden import reference_tile
from fpxint_hw.hw import timing
from fpxint_hw.hw.vectors import random_tile
from fpxint_hw.spec import ArraySpec, load_array_spec
from fpxint_hw.tile import TileResult, save_tile

needs_verilator = pytest.mark.skipif(verilator_missing() is not None,
                                     reason=f"Verilator unusable: {verilator_missing()}")


def test_rtl_command_writes_the_documented_ports(tmp_path, capsys):
    out = tmp_path / "tiny.v"
    assert main(["rtl", "--spec", "tiny", "-o", str(out)]) == 0
    text = out.read_text()
    assert re.search(rf"^module {TOP_NAME}\(", text, re.M)
    spec = load_array_spec("tiny")
    for p in ports(spec):
        decl = f"{p.direction} {p.name};" if p.width == 1 else \
            f"{p.direction} [{p.width - 1}:0] {p.name};"
        assert decl in text, decl
    assert f"latency {timing.latency(spec)} cycles" in capsys.readouterr().out


@pytest.mark.parametrize("spec", [load_array_spec("tiny"), ArraySpec(rows=3, cols=2,
                                                                      combine="column")])
def test_ports_agree_with_amaranth_component_metadata(spec):
    """ports() lists what amaranth's own ComponentMetadata says the top's interface is
    (name, direction, width, in order), after the clk and rst the backend adds."""
    from fpxint_hw.hw.top import Accelerator

    def leaves(member):
        if isinstance(member, list):
            for m in member:
                yield from leaves(m)
        elif member["type"] == "port":
            yield member["name"], {"in": "input", "out": "output"}[member["dir"]], \
                member["width"]
        else:
            for m in member["members"].values():
                yield from leaves(m)

    meta = Accelerator(spec).metadata.as_json()["interface"]["members"]
    want = [("clk", "input", 1), ("rst", "input", 1)]
    want += [leaf for m in meta.values() for leaf in leaves(m)]
    assert [(p.name, p.direction, p.width) for p in ports(spec)] == want


def test_verilog_header_names_the_spec():
    spec = ArraySpec(rows=2, cols=3, combine="column")
    text = convert(spec)
    assert "//   combine: column" in text and f"latency = {timing.latency(spec)}" in text


def test_verify_command_amaranth_backend(capsys):
    assert main(["verify", "--spec", "tiny", "--random", "2", "--m", "5",
                 "--backend", "amaranth"]) == 0
    assert "0 tiles with mismatches" in capsys.readouterr().out


def _tile_dir(tmp_path, spec, count=4):
    rng = np.random.default_rng(3)
    for i in range(count):
        t = random_tile(spec, 8, rng, k=int(rng.integers(1, 2 * spec.rows + 1)),
                        n=int(rng.integers(1, 2 * spec.cols + 1)))
        save_tile(tmp_path / f"t{i}.npz", t, reference_tile(t))
    return tmp_path


@needs_verilator
def test_verify_command_tile_files(tmp_path, capsys):
    spec = load_array_spec("small")
    d = _tile_dir(tmp_path, spec)
    assert main(["verify", "--spec", "small", "--tiles", str(d), "--ready", "0.5"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok    t") == 4 and "4 tiles" in out


@needs_verilator
def test_verify_names_tile_row_column_and_element(tmp_path, capsys):
    spec = load_array_spec("small")
    t = random_tile(spec, 6, np.random.default_rng(1), n=6)
    ref = reference_tile(t)
    wrong = ref.out.copy()
    wrong[4, 5] += 1
    save_tile(tmp_path / "bad.npz", t, TileResult(ref.acc, wrong, ref.out_digits))
    assert main(["verify", "--spec", "small", "--tiles", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "bad.npz: out at row m=4, column n=5 (array column 1, block 1)" in out


@needs_verilator
def test_verify_reports_tiles_of_another_format(tmp_path, capsys):
    other = ArraySpec(rows=4, cols=4, a_signed=True)
    t = random_tile(other, 3, np.random.default_rng(2))
    save_tile(tmp_path / "signed.npz", t)
    assert main(["verify", "--spec", "small", "--tiles", str(tmp_path)]) == 2
    assert "ERROR signed.npz: signed.npz: activations are 4-bit x 2 signed" in capsys.readouterr().out
