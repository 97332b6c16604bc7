"""The golden check can fail: one integer changed in one layer of the fast simulator is
reported as exactly that layer and element, by the library and by ``fpxint simulate
--check golden`` (exit status 1), and nothing else is reported."""

from __future__ import annotations

import json

import numpy as np

from fpxint_hw.cli import main
from fpxint_hw.intsim import Simulator
from fpxint_hw.intsim.executor import Simulator as SimulatorClass
from fpxint_hw.models import build_model, get_model_info, sample_inputs
from fpxint_hw.quant import expand_graph
from fpxint_hw.spec import SeriesFormat
from fpxint_hw.workflows.network import input_range
from fpxint_hw.workflows.simulate import golden_check

LAYER = "layer1.0.relu1"             # a conv + BatchNorm + ReLU of the MNIST ResNet


def _perturb(monkeypatch, layer=LAYER):
    """Make the simulator add 1 to the first element of ``layer``'s output (NHWC)."""
    real = SimulatorClass.run_layer

    def run_layer(self, q, args, add=None):
        out = real(self, q, args, add)
        if q.name == layer:
            out = out.copy()
            out.flat[0] += 1
        return out
    monkeypatch.setattr(SimulatorClass, "run_layer", run_layer)


def test_one_changed_integer_is_found_where_it_is(monkeypatch):
    g = build_model("mnist-resnet", fold_bn=False)
    x = sample_inputs(g.input_shape, limit=1).x
    prog = expand_graph(g, SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2), "layer",
                        input_range=input_range(get_model_info("mnist-resnet")))
    clean = golden_check(prog, Simulator(prog), x)
    assert clean["mismatches"] == 0 and clean["layers_checked"] > 10
    _perturb(monkeypatch)
    got = golden_check(prog, Simulator(prog), x)
    assert got["mismatches"] == 1 and got["layers_checked"] == clean["layers_checked"]
    assert got["first"] == {"layer": LAYER, "element": [0, 0, 0, 0]}


def test_the_command_fails_on_a_mismatch(monkeypatch, tmp_path, capsys):
    _perturb(monkeypatch)
    rc = main(["simulate", "--model", "mnist-resnet", "--images", "1", "--no-per-term",
               "--check", "golden", "--json", str(tmp_path / "r.json")])
    assert rc == 1
    gc = json.loads((tmp_path / "r.json").read_text())["golden_check"]
    assert gc["mismatches"] == 1 and gc["first"]["layer"] == LAYER
    assert "1 mismatches" in capsys.readouterr().out
    assert np.isfinite(json.loads((tmp_path / "r.json").read_text())["logit_sqnr_db"])
