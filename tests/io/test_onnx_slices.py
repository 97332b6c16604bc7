"""ONNX import and export of Slice of activations: channel slices of a feature map and token
slices of a sequence (``x[:, :k]``, the CLS token ``x[:, 0]``), against onnxruntime, and the
integer program (a slice copies integers on their grid) in golden and the simulator."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fpxint_hw import golden  # noqa: E402
from fpxint_hw.errors import InputError  # noqa: E402
from fpxint_hw.float_exec import run_float  # noqa: E402
from fpxint_hw.intsim import Simulator  # noqa: E402
from fpxint_hw.io.int_onnx import int_onnx_model, run_int_onnx  # noqa: E402
from fpxint_hw.io.onnx_export import graph_to_onnx  # noqa: E402
from fpxint_hw.io.onnx_import import onnx_to_graph  # noqa: E402
from fpxint_hw.quant import expand_graph  # noqa: E402
from fpxint_hw.spec import SeriesFormat  # noqa: E402


class ChannelSlices(torch.nn.Module):
    """Two channel slices of a conv map (an offset one and the head), joined again."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.head = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return self.head(torch.cat([y[:, 3:7], y[:, :4]], dim=1)).flatten(1)


class TokenSlices(torch.nn.Module):
    """A sequence model reading the first ``k`` tokens and the CLS token."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(6, 6)
        self.out = torch.nn.Linear(6, 5)

    def forward(self, h):
        y = self.proj(h)[:, 1:4]
        return self.out(y[:, 0] + y[:, 2])


def _export(module, x, tmp_path, name):
    torch.manual_seed(0)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(module.eval(), (torch.from_numpy(x),), str(path), dynamo=False,
                      opset_version=17, input_names=["x"], output_names=["y"])
    return onnx.load(str(path))


def _ort(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _rel(y, ref):
    return float(np.abs(y - ref).max() / np.abs(ref).max())


CASES = {"channels": (ChannelSlices, (1, 3, 6, 6)), "tokens": (TokenSlices, (1, 5, 6))}


@pytest.fixture(params=sorted(CASES))
def exported(request, tmp_path):
    torch.manual_seed(0)
    cls, shape = CASES[request.param]
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    return _export(cls(), x, tmp_path, request.param), x


def test_torch_slices_import_agree_with_onnxruntime_and_round_trip(exported):
    model, x = exported
    g = onnx_to_graph(model)
    assert any(n.op == "slice" for n in g.nodes)
    assert _rel(run_float(g, x), _ort(model, x)) <= 1e-4
    back = onnx_to_graph(graph_to_onnx(g))
    assert back.nodes == g.nodes
    assert set(back.params) == set(g.params)
    assert all(np.array_equal(back.params[k], g.params[k]) for k in g.params)
    assert _rel(run_float(back, x), _ort(graph_to_onnx(g), x)) <= 1e-4


@pytest.mark.parametrize("zero_points", [False, True], ids=["signed", "zero-points"])
def test_sliced_programs_agree_bit_exactly_in_golden_and_the_simulator(exported, zero_points):
    model, x = exported
    g = onnx_to_graph(model)
    xs = np.concatenate([x, -x, 0.5 * x])
    prog = expand_graph(g, SeriesFormat(8, 2, per_channel=True), SeriesFormat(8, 2),
                        zero_points=zero_points)
    gold, acts = golden.run_program(prog, xs, capture=True)
    assert np.array_equal(Simulator(prog)(xs), gold)
    # a slice copies its input's integers: same grid, the selected entries
    tensors = prog.tensors()
    slices = [q for q in prog.layers if q.kind == "slice"]
    assert slices
    for q in slices:
        src = acts[q.inputs[0]]
        want = src[:, q.start] if q.squeeze else src[:, q.start:q.stop]
        assert np.array_equal(acts[q.name], want)
        assert tensors[q.name] == tensors[q.inputs[0]]
    # and the integer ONNX export slices the same integers
    out = run_int_onnx(int_onnx_model(prog), xs, layers=True)
    assert np.array_equal(out["int_output"], gold)
    assert all(np.array_equal(out[q.name], acts[q.name]) for q in slices)


def _slice_model(shape, starts, ends, axes, steps=None):
    """x -> Slice(x) -> Relu for an input of ``shape``."""
    inits = [numpy_helper.from_array(np.array(v, np.int64), k)
             for k, v in (("starts", starts), ("ends", ends), ("axes", axes))]
    ins = ["x", "starts", "ends", "axes"]
    if steps is not None:
        inits.append(numpy_helper.from_array(np.array(steps, np.int64), "steps"))
        ins.append("steps")
    nodes = [helper.make_node("Slice", ins, ["s"], name="cut"),
             helper.make_node("Relu", ["s"], ["y"], name="act")]
    g = helper.make_graph(nodes, "sliced",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_negative_and_open_ends_are_normalised():
    big = np.iinfo(np.int64).max
    g = onnx_to_graph(_slice_model([1, 8, 4, 4], [-3, 0], [big, big], [1, 0]))
    cut = g.node("cut")
    assert (cut.start, cut.stop, cut.shape) == (5, 8, (3, 4, 4))
    x = np.random.default_rng(0).standard_normal((1, 8, 4, 4)).astype(np.float32)
    assert np.array_equal(run_float(g, x), np.maximum(x[:, 5:], 0))


@pytest.mark.parametrize("shape,args,words", [
    ([1, 8, 4, 4], ([0], [8], [1], [2]), "step 2"),
    ([1, 8, 4, 4], ([1], [3], [2]), "only the channel axis"),
    ([1, 5, 6], ([0], [3], [2]), "only the channel axis"),
    ([1, 8, 4, 4], ([6], [2], [1]), "is empty"),
])
def test_unsupported_slices_are_refused_naming_node_and_file(shape, args, words):
    with pytest.raises(InputError) as err:
        onnx_to_graph(_slice_model(shape, *args), source="m.onnx")
    msg = str(err.value)
    assert msg.startswith("m.onnx: node 'cut' (Slice)") and words in msg and "\n" not in msg


def test_a_gather_of_an_activation_other_than_one_token_is_refused():
    idx = numpy_helper.from_array(np.array([0, 2], np.int64), "idx")
    nodes = [helper.make_node("Gather", ["x", "idx"], ["y"], name="pick", axis=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [1, 5, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [idx])
    with pytest.raises(InputError, match=r"^m\.onnx: node 'pick' \(Gather\): only a Gather"):
        onnx_to_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
                      source="m.onnx")


def test_a_token_id_input_read_by_an_embedding_gather_becomes_the_hosts_embedding():
    """The Gather of a constant table by integer ids is the Input's host-side embedding
    (tests/io/test_onnx_tokens.py has whole BERT exports); an integer input that indexes
    no table is refused naming it."""
    words = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["words", "ids"], ["e"], name="embed", axis=0),
             helper.make_node("Relu", ["e"], ["y"], name="act")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64,
                                                                     [1, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(words, "words")])
    graph = onnx_to_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
                          source="m.onnx")
    assert graph.input.embedding == "words" and graph.input_shape == (5, 4)
    ids = np.array([[0, 9, 3, 3, 1]])
    np.testing.assert_array_equal(run_float(graph, graph.embed(ids)),
                                  np.maximum(words[ids], 0))
    nodes = [helper.make_node("Cast", ["mask"], ["y"], name="cast", to=TensorProto.FLOAT)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("mask", TensorProto.INT64,
                                                                     [1, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    with pytest.raises(InputError, match=r"^m\.onnx: integer input\(s\) \['mask'\] with no "
                                         r"embedding"):
        onnx_to_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
                      source="m.onnx")
