"""``fpxint allocate`` end to end: the override file it writes gives, through ``fpxint
simulate --overrides``, the figure it reported; bad targets are user errors."""

from __future__ import annotations

import json

import pytest

from fpxint_hw.cli import main
from fpxint_hw.quant.overrides import load_overrides


def test_allocate_writes_what_simulate_reproduces(tmp_path, capsys):
    f, j = tmp_path / "alloc.yaml", tmp_path / "alloc.json"
    rc = main(["allocate", "--model", "mnist-resnet", "--target-sqnr", "25", "--images", "50",
               "--max-terms", "3", "--out", str(f), "--json", str(j), "--plot", str(tmp_path)])
    assert rc == 0
    r = json.loads(j.read_text())
    assert r["met"] and r["measured"]["logit_sqnr_db"] >= 25
    assert (tmp_path / "allocation.png").exists()
    layers = load_overrides(f)
    assert "conv1" in layers and "fc" in layers
    s = tmp_path / "s.json"
    assert main(["simulate", "--model", "mnist-resnet", "--images", "50", "--w-terms", "3",
                 "--a-terms", "3", "--overrides", str(f), "--no-per-term",
                 "--json", str(s)]) == 0
    assert json.loads(s.read_text())["logit_sqnr_db"] == pytest.approx(
        r["measured"]["logit_sqnr_db"], rel=1e-5)     # the float reference is batched differently


def test_allocate_refuses_accuracy_target_out_of_range(tmp_path, capsys):
    rc = main(["allocate", "--model", "mnist-resnet", "--target-accuracy", "150",
               "--images", "10", "--out", str(tmp_path / "a.yaml")])
    assert rc == 2
    assert "fraction" in capsys.readouterr().err
