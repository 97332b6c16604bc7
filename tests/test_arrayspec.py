"""ArraySpec: validation, derived widths against brute force, YAML loading."""

import dataclasses
import itertools

import numpy as np
import pytest

from fpxint_hw.errors import FormatError
from fpxint_hw.golden import reference_tile
from fpxint_hw.spec import ArraySpec, SeriesFormat, load_array_spec
from fpxint_hw.tile import GemmTile, Requant

SHIPPED = ["default", "tiny", "small", "free", "column", "big", "halfup"]


def signed_width(lo, hi):
    """Smallest b with -2^(b-1) <= lo and hi < 2^(b-1), by counting up."""
    b = 1
    while not (-(1 << (b - 1)) <= lo and hi < (1 << (b - 1))):
        b += 1
    return b


def test_default_is_the_reference_array():
    s = load_array_spec("default")
    assert (s.rows, s.cols, s.w_bits, s.w_terms, s.a_bits, s.a_terms, s.scale) == \
        (8, 8, 4, 2, 4, 2, "pow2")
    assert s.macs_per_cycle == 64 and s.lanes == 4 and s.lane_macs_per_cycle == 256


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_specs_load(name):
    s = load_array_spec(name)
    assert s == load_array_spec(f"fpxint_hw/data/arrays/{name}.yaml")
    assert isinstance(s.w_fmt, SeriesFormat) and isinstance(s.a_fmt, SeriesFormat)
    assert s.w_fmt.signed and s.a_fmt.signed == s.a_signed and s.out_fmt.signed == s.out_signed
    assert s.acc_width >= s.acc_needed


def test_lane_weights_are_products_of_term_weights():
    # signed pow2 4-bit: ratio 8; unsigned 4-bit: ratio 16; signed free 4-bit: ratio 14.
    assert ArraySpec().lane_weights == (8 * 16, 8 * 1, 1 * 16, 1 * 1)
    free = ArraySpec(scale="free", a_signed=True)
    assert free.lane_weights == (14 * 14, 14, 14, 1)
    assert free.lane_shifts is None
    assert ArraySpec().lane_shifts == (7, 3, 4, 0)


@pytest.mark.parametrize("spec", [
    ArraySpec(rows=2, cols=2, w_bits=2, a_bits=2),
    ArraySpec(rows=3, cols=1, w_bits=3, w_terms=1, a_bits=2, a_terms=3, a_signed=True,
              scale="free", bias_bits=5),
    ArraySpec(rows=2, cols=2, w_bits=2, w_terms=3, a_bits=3, a_terms=1, depth=5),
])
def test_acc_width_is_the_brute_force_extreme(spec):
    """Enumerate every digit combination of one PE, then scale by depth and add the bias."""
    wf, af = spec.w_fmt, spec.a_fmt
    wvals = [sum(m * q for m, q in zip(wf.lane_weights, d))
             for d in itertools.product(range(wf.qmin, wf.qmax + 1), repeat=wf.terms)]
    avals = [sum(m * q for m, q in zip(af.lane_weights, d))
             for d in itertools.product(range(af.qmin, af.qmax + 1), repeat=af.terms)]
    prods = [w * a for w in wvals for a in avals]
    bias_lo, bias_hi = spec.bias_range
    lo = spec.reduction_depth * min(prods) + bias_lo
    hi = spec.reduction_depth * max(prods) + bias_hi
    assert spec.acc_range == (lo, hi)
    assert spec.acc_needed == signed_width(lo, hi)


def test_extreme_tile_needs_every_accumulator_bit():
    """A tile of all-extreme digits and bias reaches the derived accumulator range."""
    spec = ArraySpec(rows=4, cols=1, w_bits=3, a_bits=3)
    wf, af = spec.w_fmt, spec.a_fmt
    w = np.full((wf.terms, spec.rows, 1), wf.qmin)
    a = np.full((af.terms, 1, spec.rows), af.qmax)
    bias = np.array([spec.bias_range[0]])
    tile = GemmTile(wf, af, w, a, bias, Requant(np.array([1]), 0, 0, 0), None)
    acc = int(reference_tile(tile).acc[0, 0])
    assert acc == spec.acc_range[0]
    assert signed_width(acc, 0) == spec.acc_width


def test_explicit_acc_bits():
    need = ArraySpec().acc_needed
    assert ArraySpec(acc_bits=need + 3).acc_width == need + 3
    with pytest.raises(FormatError, match=rf"acc_bits = {need - 1} .*needs {need} bits"):
        ArraySpec(acc_bits=need - 1)


@pytest.mark.parametrize("field,value,match", [
    ("rows", 0, r"ArraySpec\.rows .*got 0"),
    ("cols", 65, r"ArraySpec\.cols .*got 65"),
    ("w_bits", 9, r"ArraySpec\.w_bits .*got 9"),
    ("a_signed", 1, r"ArraySpec\.a_signed must be true or false, got 1"),
    ("scale", "log", r"ArraySpec\.scale .*got 'log'"),
    ("combine", "row", r"ArraySpec\.combine .*got 'row'"),
    ("rounding", "floor", r"ArraySpec\.rounding .*got 'floor'"),
    ("m0_bits", 32, r"ArraySpec\.m0_bits .*got 32"),
    ("depth", 4, r"ArraySpec\.depth .*got 4"),
])
def test_bad_fields_are_named(field, value, match):
    with pytest.raises(FormatError, match=match):
        ArraySpec(**{field: value})


def test_tree_reg_needs_pe_combine():
    with pytest.raises(FormatError, match="tree_reg"):
        ArraySpec(combine="column", tree_reg=True)


def test_output_width_limit():
    with pytest.raises(FormatError, match="output format"):
        ArraySpec(out_bits=8, out_terms=5)


def test_yaml_errors_name_file_and_field(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("rows: 4\ncolumns: 4\n")
    with pytest.raises(FormatError, match=r"a\.yaml: unknown ArraySpec field 'columns'"):
        ArraySpec.from_yaml(p)
    p.write_text("rows: 4\nw_bits: 12\n")
    with pytest.raises(FormatError, match=r"a\.yaml: ArraySpec\.w_bits .*got 12"):
        ArraySpec.from_yaml(p)
    p.write_text("rows: [4\n")
    with pytest.raises(FormatError, match=r"a\.yaml: line 2: not valid YAML"):
        ArraySpec.from_yaml(p)
    with pytest.raises(FormatError, match="no such array spec.*shipped: .*default"):
        load_array_spec("no_such_array")


def test_yaml_round_trip(tmp_path):
    import yaml
    s = ArraySpec(rows=3, cols=5, combine="column", rounding="half_up", depth=40)
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(s.to_dict()))
    assert ArraySpec.from_yaml(p) == s


def test_activation_slices_and_weight_multiples():
    """The PE's slicing is a property of the formats (the stage counts built on it are in
    fpxint_hw.hw.timing, tested in tests/hw/test_timing.py)."""
    s = ArraySpec(rows=5, cols=3)
    assert s.act_slices == [(0, 4, False)] and s.weight_multiples == []
    slower = dataclasses.replace(s, tree_reg=True)
    assert slower.act_slices == [(0, 2, False), (2, 2, False)]
    odd = dataclasses.replace(s, a_bits=3, a_signed=True, tree_reg=True)
    assert odd.act_slices == [(0, 2, False), (2, 1, True)]
    assert odd.weight_multiples == [-1, 3] and slower.weight_multiples == [3]
    assert dataclasses.replace(s, combine="column").weight_multiples == []


def test_spec_imports_nothing_from_hw():
    """spec.py sits below hw/: no import of fpxint_hw.hw, not even inside a function."""
    import ast
    import pathlib

    import fpxint_hw.spec as mod
    tree = ast.parse(pathlib.Path(mod.__file__).read_text())
    names = [f"{n.module or ''}.{a.name}".lstrip(".") for n in ast.walk(tree)
             if isinstance(n, ast.ImportFrom) for a in n.names]
    names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [n for n in names if n == "hw" or n.startswith(("hw.", "fpxint_hw.hw"))], names
    assert not any(hasattr(ArraySpec, f) for f in ("latency", "pe_stages", "tile_cycles"))
    assert "latency" not in ArraySpec().summary()
