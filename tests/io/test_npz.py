"""``.npz`` reading: an entry's header is checked against the data it holds before numpy
allocates anything; at the edge, an entry that holds exactly its declared bytes loads."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from fpxint_hw.errors import InputError
from fpxint_hw.io.npz import load_arrays


def _archive(path, shape, data: bytes):
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        head, {"descr": "<i2", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("w.npy", head.getvalue() + data)


def test_a_header_is_checked_against_the_data_at_its_edge(tmp_path):
    _archive(tmp_path / "fits.npz", (3, 4), bytes(24))            # 12 int16: just fits
    assert load_arrays(tmp_path / "fits.npz")["w"].shape == (3, 4)
    _archive(tmp_path / "over.npz", (3, 4), bytes(22))            # one element short
    with pytest.raises(InputError, match="over.npz: entry 'w' declares"):
        load_arrays(tmp_path / "over.npz")
    _archive(tmp_path / "huge.npz", (10**9, 10**9), bytes(64))
    with pytest.raises(InputError, match="huge.npz.*2000000000000000000 bytes"):
        load_arrays(tmp_path / "huge.npz")
