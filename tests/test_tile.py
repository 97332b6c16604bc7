"""The GEMM tile contract and its golden reference."""

from fractions import Fraction

import numpy as np
import pytest

from fpxint_hw import FormatError, InputError, SeriesFormat
from fpxint_hw.golden import reference_tile
from fpxint_hw.series import split_integer
from fpxint_hw.tile import GemmTile, Requant, load_tile, save_tile


def random_tile(rng, w_fmt, a_fmt, out_fmt, m=5, k=8, n=6, mode="rne", mask=None):
    lo, hi = out_fmt.combined_range
    return GemmTile(
        w_fmt, a_fmt,
        rng.integers(w_fmt.qmin, w_fmt.qmax + 1, (w_fmt.terms, k, n)),
        rng.integers(a_fmt.qmin, a_fmt.qmax + 1, (a_fmt.terms, m, k)),
        rng.integers(-500, 500, n),
        Requant(rng.integers(0, 1 << 15, n), 12, lo, hi, 0, mode), out_fmt, mask)


def combined(digits, fmt):
    return sum(int(w) * digits[i].astype(object) for i, w in enumerate(fmt.lane_weights))


@pytest.mark.parametrize("mode", ["rne", "half_up"])
@pytest.mark.parametrize("w_terms,a_terms", [(1, 1), (2, 2), (3, 1), (2, 3)])
def test_reference_tile_equals_the_product_of_combined_integers(mode, w_terms, a_terms):
    rng = np.random.default_rng(w_terms * 10 + a_terms)
    wf = SeriesFormat(bits=4, terms=w_terms)
    af = SeriesFormat(bits=4, terms=a_terms, signed=False)
    tile = random_tile(rng, wf, af, af, mode=mode)
    res = reference_tile(tile)
    # the same tile computed the other way round: combine first, one product, exact rationals
    acc = combined(tile.acts, af).dot(combined(tile.weights, wf)) + tile.bias.astype(object)
    np.testing.assert_array_equal(res.acc, acc.astype(np.int64))
    rq = tile.requant
    out = np.empty_like(acc)
    for idx, v in np.ndenumerate(acc):
        f = Fraction(int(v) * int(rq.multiplier[idx[1]]), 1 << rq.shift)
        r = round(f) if mode == "rne" else int(np.floor(f + Fraction(1, 2)))
        out[idx] = min(max(r, rq.lo), rq.hi)
    np.testing.assert_array_equal(res.out, out.astype(np.int64))
    np.testing.assert_array_equal(res.out_digits, split_integer(res.out, af))


def test_lane_mask_drops_exactly_the_masked_lanes():
    rng = np.random.default_rng(1)
    wf, af = SeriesFormat(bits=3, terms=2), SeriesFormat(bits=3, terms=2, signed=False)
    mask = np.array([[True, False], [False, True]])
    res = reference_tile(random_tile(rng, wf, af, af, mask=mask))
    rng = np.random.default_rng(1)
    full = random_tile(rng, wf, af, af)
    lanes = sum(int(wf.lane_weights[k] * af.lane_weights[j])
                * full.acts[j].astype(object).dot(full.weights[k].astype(object))
                for k in range(2) for j in range(2) if mask[k, j])
    np.testing.assert_array_equal(res.acc, (lanes + full.bias.astype(object)).astype(np.int64))


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    f = SeriesFormat(bits=2, terms=3, scale="free")
    tile = random_tile(rng, f, f, f, mask=np.array([[True, False, True]] * 3))
    res = reference_tile(tile)
    save_tile(tmp_path / "t.npz", tile, res)
    t2, r2 = load_tile(tmp_path / "t.npz")
    assert (t2.w_fmt, t2.a_fmt, t2.out_fmt) == (tile.w_fmt, tile.a_fmt, tile.out_fmt)
    for name in ("weights", "acts", "bias", "lane_mask"):
        np.testing.assert_array_equal(getattr(t2, name), getattr(tile, name))
    np.testing.assert_array_equal(r2.out_digits, res.out_digits)
    np.testing.assert_array_equal(reference_tile(t2).out, res.out)


def test_tile_validation_names_the_field(tmp_path):
    f = SeriesFormat(bits=2, terms=1)
    ok = dict(w_fmt=f, a_fmt=f, weights=np.zeros((1, 3, 2), int), acts=np.zeros((1, 4, 3), int),
              bias=np.zeros(2, int), requant=Requant(np.ones(2, int), 0, -1, 1))
    GemmTile(**ok)
    with pytest.raises(FormatError, match=r"GemmTile\.weights: digits in \[-1, 2\]"):
        GemmTile(**{**ok, "weights": np.array([[[2, -1], [0, 0], [0, 0]]])})
    with pytest.raises(FormatError, match=r"GemmTile\.acts must be"):
        GemmTile(**{**ok, "acts": np.zeros((1, 4, 2), int)})
    with pytest.raises(FormatError, match=r"Requant\.shift must be an integer in 0\.\.62"):
        Requant(np.ones(2, int), 63, 0, 1)
    with pytest.raises(FormatError, match="leaves the output format's range"):
        GemmTile(**ok, out_fmt=SeriesFormat(bits=2, terms=1, signed=False))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.npz: not a tile"):
        load_tile(tmp_path / "bad.npz")
    np.savez(tmp_path / "partial.npz", weights=np.zeros(3))
    with pytest.raises(InputError, match="missing entry 'meta'"):
        load_tile(tmp_path / "partial.npz")


def test_saved_tile_keeps_its_pre_shift(tmp_path):
    f = SeriesFormat(4, 2)
    t = GemmTile(f, f, np.zeros((2, 3, 2), np.int64), np.zeros((2, 4, 3), np.int64),
                 np.zeros(2, np.int64),
                 Requant(np.ones(2, np.int64), 3, -7, 7, 0, "rne", np.array([5, 0])))
    save_tile(tmp_path / "t.npz", t)
    assert load_tile(tmp_path / "t.npz")[0].requant.pre_shift.tolist() == [5, 0]
