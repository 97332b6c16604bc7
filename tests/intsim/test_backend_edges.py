"""Each GEMM backend's exactness condition at its edge: the case that just fits is given
that backend, one over is refused by it (and "auto" moves on), and the float edges are
tight: just inside, float BLAS is exact; one over, it rounds."""

from __future__ import annotations

import numpy as np
import pytest

from fpxint_hw.errors import WidthError
from fpxint_hw.intsim.gemm import choose_backend, have_ort


def _col(total: int, k: int = 1) -> list[np.ndarray]:
    """One weight column of ``k`` rows whose absolute sum is ``total``."""
    w = np.zeros((k, 1), dtype=np.int64)
    w[0, 0] = total
    return [w]


@pytest.mark.parametrize("name,limit", [("f32", 2 ** 24), ("f64", 2 ** 53),
                                        ("int", 2 ** 63)])
def test_float_and_int_backends_at_their_bound(name, limit):
    # bound = column abs-sum x largest |activation|; activations in [0, 2]
    fits, over = _col(limit // 2 - 1), _col(limit // 2)          # bounds limit-2, limit
    assert choose_backend(name, [(0, 2)], fits, 1) == name
    with pytest.raises(WidthError, match=f"--backend {name}: not proved exact"):
        choose_backend(name, [(0, 2)], over, 1)


def test_auto_moves_past_a_backend_one_over_its_bound():
    assert choose_backend("auto", [(0, 1)], _col(2 ** 24 - 1), 1) in ("ort", "f32")
    assert choose_backend("auto", [(0, 1)], _col(2 ** 24), 1) in ("ort", "f64")
    assert choose_backend("auto", [(0, 1)], _col(2 ** 53), 1) == "int"
    with pytest.raises(WidthError, match="no exact GEMM backend"):
        choose_backend("auto", [(0, 2)], _col(2 ** 62), 1)


def test_the_float32_bound_is_tight():
    """A K = 2 dot product of integers: its partial sums up to 2^24 are exact in float32;
    2^24 + 1 is not representable, so the bound cannot be one higher."""
    a = np.array([[1.0, 1.0]], dtype=np.float32)
    inside = np.array([[2.0 ** 23], [2.0 ** 23 - 1]], dtype=np.float32)   # sum 2^24 - 1
    over = np.array([[2.0 ** 24], [1.0]], dtype=np.float32)              # sum 2^24 + 1
    assert int((a @ inside)[0, 0]) == 2 ** 24 - 1
    assert int((a @ over)[0, 0]) != 2 ** 24 + 1


@pytest.mark.skipif(not have_ort(), reason="onnxruntime is not installed (the ort backend)")
def test_ort_at_each_of_its_conditions():
    k_max = (2 ** 31 - 1) // (255 * 64)                 # K * 255 * 64 < 2^31
    ok = [(0, 255)], [np.full((k_max, 1), 64, np.int64)], k_max
    assert choose_backend("ort", *ok) == "ort"
    for a_ranges, w, k in (
            ([(0, 255)], [np.full((k_max + 1, 1), 64, np.int64)], k_max + 1),  # K one over
            ([(0, 255)], [np.full((4, 1), 65, np.int64)], 4),                   # |w| = 65
            ([(0, 256)], [np.ones((4, 1), np.int64)], 4),                       # not uint8
            ([(-129, 127)], [np.ones((4, 1), np.int64)], 4)):                   # not int8
        with pytest.raises(WidthError, match="--backend ort"):
            choose_backend("ort", a_ranges, w, k)
    assert choose_backend("ort", [(-128, 127)], [np.ones((4, 1), np.int64)], 4) == "ort"
