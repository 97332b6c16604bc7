"""Formal proof (SymbiYosys, k-induction with z3) that a PE equals its Python specification."""

import pytest

from fpxint_hw.flow.formal import check_pe, sby_missing
from fpxint_hw.spec import ArraySpec, load_array_spec

pytestmark = pytest.mark.skipif(sby_missing() is not None,
                                reason=f"formal tools unusable: {sby_missing()}")

SMALL = {
    "tiny": load_array_spec("tiny"),
    "column": ArraySpec(rows=2, cols=2, w_bits=2, a_bits=2, combine="column"),
    "tree-reg-3x2": ArraySpec(rows=2, cols=2, w_bits=2, a_bits=2, w_terms=3, tree_reg=True,
                              mult_reg=False),
    "tree-reg-signed": ArraySpec(rows=2, cols=2, w_bits=2, a_bits=3, a_signed=True,
                                 tree_reg=True, out_signed=True),
    "free-signed": ArraySpec(rows=2, cols=2, w_bits=2, a_bits=2, a_signed=True, scale="free",
                             w_terms=3, out_signed=True),
}


@pytest.mark.parametrize("name", list(SMALL))
def test_pe_proved_equal_to_reference(name):
    r = check_pe(SMALL[name], timeout=300)
    assert r.passed, f"{r.status}\n{r.log}"


@pytest.mark.slow
@pytest.mark.parametrize("spec", [
    ArraySpec(rows=2, cols=2, w_bits=3, a_bits=3),
    ArraySpec(rows=2, cols=2, w_bits=3, a_bits=3, a_signed=True, scale="free",
              out_signed=True, out_bits=3),
    load_array_spec("column"),
    load_array_spec("default"),
], ids=["3bit", "3bit-free", "column-4bit", "default-4bit"])
def test_pe_proved_equal_to_reference_wider(spec):
    r = check_pe(spec, timeout=1800)
    assert r.passed, f"{r.status}\n{r.log}"


def test_a_wrong_reference_is_refuted(monkeypatch):
    """The harness can fail: a reference that forgets one lane is disproved."""
    import fpxint_hw.flow.formal as formal
    from fpxint_hw.hw import model

    def wrong(spec, w, a, psum, mask):
        return model.pe_reference(spec, w, a, psum, [0] + list(mask[1:]))

    monkeypatch.setattr(formal, "pe_reference", wrong)
    r = check_pe(SMALL["tiny"], timeout=300)
    assert not r.passed and r.status == "FAIL"


@pytest.mark.parametrize("name", ["tiny", "column"])
def test_a_psum_chain_two_bits_narrow_is_refuted(monkeypatch, name):
    """The proof covers the widths: a partial-sum chain two bits narrower than its declared
    range (so that large sums wrap) is disproved, not passed because the sum does not fit."""
    from amaranth.hdl import signed
    from amaranth.lib import data

    from fpxint_hw.hw import layouts
    from fpxint_hw.intops import width_for_interval

    real = layouts.psum_layout

    def narrow(spec):
        ranges = layouts.psum_ranges(spec)
        if spec.combine == "pe":
            return signed(width_for_interval(*ranges[None], signed=True) - 2)
        return data.StructLayout({f: signed(width_for_interval(*r, signed=True) - 2)
                                  for f, r in ranges.items()})

    spec = SMALL[name]
    assert narrow(spec) != real(spec)
    monkeypatch.setattr(layouts, "psum_layout", narrow)
    r = check_pe(spec, timeout=300)
    assert not r.passed and r.status == "FAIL", f"{r.status}\n{r.log}"
