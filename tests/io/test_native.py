"""The native .npz format: weights by name, and self-contained graph files."""

import numpy as np
import pytest

from fpxint_hw.errors import InputError
from fpxint_hw.graph import graphs_equal
from fpxint_hw.io.native import (GRAPH_KEY, load_graph_npz, load_params_npz, save_graph_npz,
                                 save_params_npz)
from fpxint_hw.models import build_model
from test_graph import small_graph


def test_graph_file_round_trip(tmp_path):
    for g in (small_graph(np.random.default_rng(0)), build_model("mnist-resnet", fold_bn=False)):
        save_graph_npz(tmp_path / "g.npz", g)
        back = load_graph_npz(tmp_path / "g.npz")
        assert graphs_equal(g, back) and back.name == g.name


def test_weights_file_round_trip_and_graph_key_is_skipped(tmp_path):
    g = small_graph(np.random.default_rng(1))
    save_params_npz(tmp_path / "w.npz", g.params)
    w = load_params_npz(tmp_path / "w.npz")
    assert set(w) == set(g.params)
    assert all(np.array_equal(w[k], g.params[k]) for k in w)
    save_graph_npz(tmp_path / "g.npz", g)
    assert GRAPH_KEY not in load_params_npz(tmp_path / "g.npz")


def test_bad_native_files(tmp_path):
    save_params_npz(tmp_path / "w.npz", {"a": np.zeros(2)})
    with pytest.raises(InputError, match="w.npz.*no '__graph__' entry"):
        load_graph_npz(tmp_path / "w.npz")
    np.savez(tmp_path / "obj.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(InputError, match="obj.npz.*'a'"):
        load_params_npz(tmp_path / "obj.npz")
    (tmp_path / "t.npz").write_text("hello")
    with pytest.raises(InputError, match="t.npz"):
        load_params_npz(tmp_path / "t.npz")
    np.savez(tmp_path / "j.npz", **{GRAPH_KEY: np.frombuffer(b"{not json", np.uint8)})
    with pytest.raises(InputError, match="j.npz.*not valid JSON"):
        load_graph_npz(tmp_path / "j.npz")
