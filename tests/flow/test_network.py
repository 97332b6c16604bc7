"""Whole networks through the Verilated RTL, layer by layer, against the simulator."""

import json

import numpy as np
import pytest

from fpxint_hw.cli import main
from fpxint_hw.costmodel.cycles import gemm_cycles
from fpxint_hw.flow import network as FN
from fpxint_hw.flow import verilator as FV
from fpxint_hw.flow.network import run_network
from fpxint_hw.flow.verilator import build, run_tiles_verilator_timed, verilator_missing
from fpxint_hw.float_exec import to_nhwc
from fpxint_hw.hw import bits, layouts
from fpxint_hw.hw import passes as HP
from fpxint_hw.hw import program as HPR
from fpxint_hw.intsim import Simulator, layer_tiles, run_tile
from fpxint_hw.models import sample_inputs
from fpxint_hw.quant import for_array
from fpxint_hw.spec import load_array_spec

from nethelpers import tiny_graph

pytestmark = pytest.mark.skipif(verilator_missing() is not None,
                                reason=f"Verilator unusable: {verilator_missing()}")


def _verify(tmp_path, *extra):
    out = tmp_path / "net.json"
    code = main(["verify", "--model", "mnist-resnet", "--spec", "default", "--images", "2",
                 "--json", str(out), *extra])
    return code, json.loads(out.read_text())


def test_mnist_resnet_whole_on_the_rtl(tmp_path, capsys):
    """Every conv/linear layer on the default array's Verilog, fed by the hardware's own
    outputs: 0 mismatches, measured cycles = the cycle model per layer, the final logits equal
    the simulator's bit for bit (its own run on the float inputs)."""
    code, res = _verify(tmp_path, "--plot", str(tmp_path / "plots"))
    assert code == 0
    assert res["mismatches"] == 0 and res["first_mismatch"] is None
    assert res["layers_checked"] == res["gemm_layers"] - len(res["host_layers"])
    assert res["host_layers"] == {}
    assert res["outputs_equal"] and res["top1_hw"] == res["top1_sim"]
    spec = load_array_spec("default")
    for lay in res["layers"]:
        model = gemm_cycles(spec, lay["m"], lay["k"], lay["n"], lay["groups"]).cycles
        assert lay["cycles"] == lay["model_cycles"] == model, lay["node"]
    assert res["cycles"] == res["model_cycles"]
    assert (tmp_path / "plots" / "rtl_utilisation.png").stat().st_size > 0
    assert "0 mismatches" in capsys.readouterr().out


def test_a_dropped_pass_fails_naming_the_layer(tmp_path, monkeypatch, capsys):
    """A driver that drops one K chunk of long reductions: the run stops at the first such
    layer and says which block ran too few passes."""
    original = HPR.plan

    def dropping(spec, tile, name="tile"):
        jobs = original(spec, tile, name)
        return [j for i, j in enumerate(jobs) if not (tile.k > 100 and i == 1)]

    monkeypatch.setattr(HP, "plan", dropping)
    monkeypatch.setattr(FN, "plan", dropping)
    code, res = _verify(tmp_path)
    assert code == 1
    first = res["first_mismatch"]
    assert first["layer"] == "layer1.0.conv1"                # the first layer with K > 100
    assert first["element"] == "acc" and "ran 17 passes" in first["explanation"]
    assert "MISMATCH in layer 'layer1.0.conv1'" in capsys.readouterr().out


def test_a_psum_chain_one_bit_narrow_fails_naming_layer_pass_and_bit(tmp_path, monkeypatch):
    """The partial sums chained between passes lose their top bit: the first layer with a
    chained pass fails, at pass 1 of a block, and the report names the chain's bit."""
    original = HPR.chain_map
    monkeypatch.setattr(FV, "chain_map",
                        lambda spec: [(s, d, w - 1) for s, d, w in original(spec)])
    code, res = _verify(tmp_path)
    assert code == 1
    first = res["first_mismatch"]
    width = original(load_array_spec("default"))[0][2]
    assert first["layer"] == "conv1" and first["chunk"] == 1
    assert f"bit {width - 1} of the psum chain" in first["explanation"]


def test_one_missing_lane_product_names_the_pe_and_lane(monkeypatch):
    """A hardware whose partial sum misses one lane product (the harness's result beats
    altered after the run) is diagnosed down to the pass, the PE row and the lane."""
    spec = load_array_spec("small")
    prog, x = _tiny_program(spec)
    q = next(q for q in prog.gemm_layers() if q.node == "dw")
    sim = Simulator(prog)
    _, env = sim.run(x, capture=True)
    tiles = layer_tiles(prog, q.name, to_nhwc(env[q.inputs[0]]), sim)
    # a nonzero product of w term 1 x a term 0 in K chunk 0, row r = 2 of the array
    g, m = next((g, int(np.flatnonzero(t.acts[0, :, 2])[0])) for g, t in enumerate(tiles)
                if t.weights[1, 2, 0] != 0 and np.any(t.acts[0, :, 2]))
    tile = tiles[g]
    product = (tile.w_fmt.lane_weights[1] * tile.a_fmt.lane_weights[0]
               * int(tile.weights[1, 2, 0]) * int(tile.acts[0, m, 2]))
    rl = layouts.result(spec)
    real = FV.run_jobs_verilator

    def losing_a_product(model, jobs, **kw):
        beats, passes, cycles, secs = real(model, jobs, **kw)
        vals = bits.unpack(rl, beats[0])
        vals[("acc", 0)][m] -= product
        beats[0] = bits.pack(rl, vals, beats[0].shape[0])
        return beats, passes, cycles, secs

    monkeypatch.setattr(FV, "run_jobs_verilator", losing_a_product)
    expected = run_tile(tile)
    got = run_tile(tile)
    got.acc[m, 0] -= product
    info = FN.diagnose(spec, build(spec), q, tile, expected, got, g, 0,
                       to_nhwc(env[q.inputs[0]]).shape)
    assert info["layer"] == "dw" and info["element"] == "acc" and info["chunk"] == 0
    assert info["pe_row"] == 2 and info["pe_column"] == 0 and info["lane"] == [1, 0]
    assert "missing" in info["explanation"]


def _tiny_program(spec, images=2):
    graph = tiny_graph()
    x = sample_inputs(graph.input_shape, limit=images).x
    return for_array(graph, spec, name="spec"), x


def test_grouped_and_depthwise_layers_as_tiles_equal_the_simulator():
    """layer_tiles cuts a grouped conv into one tile per group and a depthwise conv into one
    single-column tile per channel; their exact results are the simulator's layer outputs."""
    spec = load_array_spec("small")
    prog, x = _tiny_program(spec)
    sim = Simulator(prog)
    _, env = sim.run(x, capture=True)
    for node, groups in (("dw", 8), ("g2", 2), ("c1", 1)):
        q = next(q for q in prog.gemm_layers() if q.node == node)
        xi = to_nhwc(env[q.inputs[0]])
        tiles = layer_tiles(prog, q.name, xi, sim)
        assert len(tiles) == groups
        out = FN._layer_output(q, xi.shape, [run_tile(t).out for t in tiles])
        assert np.array_equal(out, sim.run_layer(q, [xi])), node


def test_grouped_and_depthwise_layers_run_on_the_rtl():
    """The tiny network (grouped, strided dilated depthwise, plain convs, a classifier) on the
    small array: every layer that fits is bit-exact and its cycles are the model's."""
    spec = load_array_spec("small")
    prog, x = _tiny_program(spec)
    run = run_network(prog, x, build(spec))
    assert run.mismatch is None and run.outputs_equal
    nodes = {lay.node: lay for lay in run.layers}
    assert {"dw", "g2"} <= set(nodes)
    assert nodes["dw"].groups == 8 and nodes["dw"].n == 1
    for lay in run.layers:
        assert lay.cycles == lay.model_cycles, lay.name


def test_harness_processes_join_into_one_timeline():
    """A layer's column blocks split over 1, 2 or 3 harness processes give the same results,
    the same total cycles and the same pass marks as one array running them all."""
    spec = load_array_spec("small")
    prog, x = _tiny_program(spec)
    sim = Simulator(prog)
    _, env = sim.run(x, capture=True)
    q = next(q for q in prog.gemm_layers() if q.node == "g2")
    tiles = layer_tiles(prog, q.name, to_nhwc(env[q.inputs[0]]), sim)
    model = build(spec)
    runs = [run_tiles_verilator_timed(spec, tiles, model=model, processes=p) for p in (1, 2, 3)]
    for r in runs[1:]:
        assert r.cycles == runs[0].cycles
        assert r.passes == runs[0].passes
        for a, b in zip(r.results, runs[0].results):
            assert np.array_equal(a.acc, b.acc) and np.array_equal(a.out, b.out)


def test_unknown_layer_is_a_clear_error(tmp_path, capsys):
    code = main(["verify", "--model", "mnist-resnet", "--spec", "default", "--layers",
                 "conv1,nope"])
    err = capsys.readouterr().err
    assert code == 2 and "nope" in err and "layer1.0.conv1" in err and "Traceback" not in err


def test_an_onnx_file_with_symbolic_size_runs_whole_on_the_rtl(tmp_path, capsys):
    """A torch export with a symbolic batch, height and width (conv, HardSwish, an SE gate,
    a classifier): refused without --input-shape, whole on the small array with it."""
    torch = pytest.importorskip("torch", reason="torch writes the ONNX file")
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.fc1, self.fc2 = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)
            self.head = nn.Linear(8, 5)

        def forward(self, x):
            y = nn.functional.hardswish(self.conv(x))
            g = nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(y.mean((2, 3), True)))))
            return self.head((y * g).mean((2, 3)))

    torch.manual_seed(0)
    path = tmp_path / "se.onnx"
    torch.onnx.export(Net().eval(), (torch.zeros(1, 3, 12, 10),), str(path), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    base = ["verify", "--model", str(path), "--spec", "small"]
    assert main(base) == 2
    assert "--input-shape" in capsys.readouterr().err
    out = tmp_path / "net.json"
    assert main(base + ["--input-shape", "1x3x12x10", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["mismatches"] == 0 and res["outputs_equal"]
    assert res["layers_checked"] == res["gemm_layers"] == 4 and not res["host_layers"]


def test_a_transformer_encoders_projections_run_on_the_rtl():
    """The tiny encoder (Q/K/V/output projections and the MLP, per token) on the small
    array: every linear layer on the RTL, its tokens as GEMM rows, bit-exact, the cycles
    the model's; attention's activation x activation products stay on the host."""
    from transformer_helpers import tiny_encoder, tiny_inputs
    spec = load_array_spec("small")
    prog = for_array(tiny_encoder(2), spec)
    assert not prog.target.misfits
    run = run_network(prog, tiny_inputs(2, seed=3), build(spec))
    assert run.mismatch is None and run.outputs_equal
    assert {lay.node for lay in run.layers} == {q.node for q in prog.gemm_layers()}
    assert len(run.layers) >= 6
    for lay in run.layers:
        assert lay.cycles == lay.model_cycles, lay.name


@pytest.mark.slow
def test_minilm_projections_run_on_the_rtl():
    """MiniLM-L6's 36 linear layers with its real weights, one sentence, on the default
    array: bit-exact, cycles the model's (about a minute)."""
    from fpxint_hw.models.minilm import embed_tokens, load_minilm, tokenize
    m = load_minilm()
    ids = tokenize(["A man is playing a guitar."])[0]
    x = embed_tokens(ids, m.weights)[None].astype(np.float32)
    spec = load_array_spec("default")
    prog = for_array(m.graph(len(ids)), spec)
    run = run_network(prog, x, build(spec))
    assert run.mismatch is None and run.outputs_equal and len(run.layers) == 36
    for lay in run.layers:
        assert lay.cycles == lay.model_cycles, lay.name
