"""SeriesFormat validation and derived figures."""

import itertools

import pytest

from fpxint_hw import FormatError, SeriesFormat


@pytest.mark.parametrize("field,value,message", [
    ("bits", 1, r"SeriesFormat\.bits must be in 2\.\.8, got 1"),
    ("bits", 9, r"SeriesFormat\.bits must be in 2\.\.8, got 9"),
    ("bits", 4.0, r"SeriesFormat\.bits must be an integer 2\.\.8, got 4\.0 \(float\)"),
    ("bits", True, r"SeriesFormat\.bits must be an integer .* got True \(bool\)"),
    ("terms", 0, r"SeriesFormat\.terms must be in 1\.\.8, got 0"),
    ("terms", "2", r"SeriesFormat\.terms must be an integer .* got '2' \(str\)"),
    ("scale", "log", r"SeriesFormat\.scale must be one of pow2, free, got 'log'"),
    ("per_channel", 1, r"SeriesFormat\.per_channel must be true or false, got 1 \(int\)"),
    ("signed", "yes", r"SeriesFormat\.signed must be true or false, got 'yes'"),
])
def test_bad_fields_name_field_and_value(field, value, message):
    with pytest.raises(FormatError, match=message):
        SeriesFormat(**{field: value})


def test_from_dict_names_source_and_key():
    assert SeriesFormat.from_dict({"bits": 3, "terms": 2}, "a.yaml") == SeriesFormat(bits=3, terms=2)
    with pytest.raises(FormatError, match=r"a\.yaml: unknown SeriesFormat field 'bit'"):
        SeriesFormat.from_dict({"bit": 3}, "a.yaml")
    with pytest.raises(FormatError, match=r"a\.yaml: SeriesFormat\.bits must be in 2\.\.8, got 12"):
        SeriesFormat.from_dict({"bits": 12}, "a.yaml")
    with pytest.raises(FormatError, match=r"a\.yaml: expected a mapping"):
        SeriesFormat.from_dict([1, 2], "a.yaml")


def test_frozen():
    with pytest.raises(Exception):
        SeriesFormat().bits = 5


@pytest.mark.parametrize("bits,terms,scale,signed", list(itertools.product(
    range(2, 9), range(1, 5), ("pow2", "free"), (True, False))))
def test_derived_figures(bits, terms, scale, signed):
    f = SeriesFormat(bits=bits, terms=terms, scale=scale, signed=signed)
    if signed:
        assert (f.qmin, f.qmax) == (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1)
        # the residual of a rounded term, |r| <= s_k/2, must fit the next term's range
        assert f.qmax * 2 >= f.radix
        assert f.radix == (2 ** (bits - 1) if scale == "pow2" else 2 ** bits - 2)
    else:
        assert (f.qmin, f.qmax, f.radix) == (0, 2 ** bits - 1, 2 ** bits)
    assert f.lane_weights == tuple(f.radix ** (terms - k) for k in range(1, terms + 1))
    lo, hi = f.combined_range
    assert hi == f.qmax * sum(f.lane_weights)
    assert hi < 2 ** (f.combined_width - (1 if signed else 0))
    assert f.shift is None or 2 ** f.shift == f.radix
