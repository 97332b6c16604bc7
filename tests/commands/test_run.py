"""``fpxint run`` and ``fpxint convert`` as a user runs them, good input and bad."""

import json
import subprocess
import sys

import numpy as np
import pytest

from fpxint_hw.cli import main
from fpxint_hw.models import build_model
from nethelpers import need_efficientnet_weights


def _error(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert "\n" not in err and "Traceback" not in err
    return err


def test_run_mnist_reports_heldout_accuracy(tmp_path, capsys):
    out_json = tmp_path / "r.json"
    assert main(["run", "--model", "mnist-resnet", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "held-out accuracy" in text and "recorded when trained" in text
    rep = json.loads(out_json.read_text())
    assert rep["inputs"] == "digits" and len(rep["results"]) == 1000
    assert rep["accuracy"] >= 0.97
    assert rep["accuracy"] == pytest.approx(rep["recorded_accuracy"], abs=0.002)
    hits = sum(r["top"][0]["class"] == r["label"] for r in rep["results"])
    assert hits / 1000 == pytest.approx(rep["accuracy"])


def test_run_efficientnet_names_the_photos(tmp_path, capsys):
    need_efficientnet_weights()
    out_json = tmp_path / "r.json"
    assert main(["run", "--model", "efficientnet-lite0", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "espresso" in text and "chelsea" in text
    rep = json.loads(out_json.read_text())
    assert rep["inputs"] == "photos"
    assert all(len(r["top"]) == 5 for r in rep["results"])
    by_name = {r["input"]: r for r in rep["results"]}
    assert by_name["coffee"]["top"][0]["name"] == "espresso"
    assert by_name["chelsea"]["top1_ok"] and by_name["rocket"]["top1_ok"]


def test_run_on_image_files_and_gray_digits(tmp_path, capsys):
    from PIL import Image

    from fpxint_hw.models.samples import load_sample_photo, mnist_heldout
    Image.fromarray(load_sample_photo("coffee")).save(tmp_path / "cup.jpg")
    assert main(["run", "--model", "resnet18", "--input", str(tmp_path / "cup.jpg")]) == 0
    text = capsys.readouterr().out
    assert "cup.jpg" in text and "class name" in text
    images, labels = mnist_heldout()
    paths = []
    for i in range(3):     # as a person would scan them: dark ink on white paper, 3x size
        im = Image.fromarray(255 - images[i]).resize((84, 84))
        paths.append(tmp_path / f"d{i}.png")
        im.save(paths[-1])
    out_json = tmp_path / "d.json"
    assert main(["run", "--model", "mnist-resnet", "--input", *map(str, paths),
                 "--json", str(out_json)]) == 0
    rep = json.loads(out_json.read_text())
    assert [r["top"][0]["class"] for r in rep["results"]] == [int(v) for v in labels[:3]]


def test_run_resnet50_synthetic_on_one_photo(capsys):
    assert main(["run", "--model", "resnet50", "--limit", "1"]) == 0
    assert "chelsea" in capsys.readouterr().out


def test_errors_are_one_line_and_name_the_culprit(tmp_path, capsys):
    onnx = pytest.importorskip("onnx", reason="ONNX files")
    from onnx import TensorProto, helper

    from fpxint_hw.io.onnx_export import save_onnx

    fake = tmp_path / "photo.png"
    fake.write_text("not an image")
    assert "photo.png" in _error(["run", "--model", "mnist-resnet", "--input", str(fake)],
                                 capsys)
    good = tmp_path / "m.onnx"
    save_onnx(build_model("mnist-resnet"), good)
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good.read_bytes()[:5000])
    assert "cut.onnx" in _error(["run", "--model", str(cut)], capsys)
    txt = tmp_path / "readme.onnx"
    txt.write_text("hello\n")
    assert "readme.onnx" in _error(["run", "--model", str(txt)], capsys)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 8])
    m = helper.make_model(helper.make_graph(
        [helper.make_node("Softplus", ["x"], ["y"], name="smooth")], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "sp.onnx")
    err = _error(["run", "--model", str(tmp_path / "sp.onnx")], capsys)
    assert "sp.onnx" in err and "'smooth'" in err and "'Softplus'" in err
    w = {k: np.array(v) for k, v in build_model("mnist-resnet", fold_bn=False).params.items()}
    bad = dict(w, **{"layer1.0.conv2.weight": np.zeros((16, 16, 1, 1), np.float32)})
    np.savez(tmp_path / "bad.npz", **bad)
    err = _error(["run", "--model", "mnist-resnet", "--weights", str(tmp_path / "bad.npz")],
                 capsys)
    assert "bad.npz" in err and "'layer1.0.conv2.weight'" in err and "(16, 16, 1, 1)" in err
    del w["layer3.0.bn2.running_var"]
    np.savez(tmp_path / "miss.npz", **w)
    err = _error(["run", "--model", "mnist-resnet", "--weights", str(tmp_path / "miss.npz")],
                 capsys)
    assert "miss.npz" in err and "'layer3.0.bn2.running_var'" in err
    assert "'resnet7'" in _error(["run", "--model", "resnet7"], capsys)
    assert "no such file" in _error(["run", "--model", str(tmp_path / "none.onnx")], capsys)


def test_real_command_line_has_no_traceback(tmp_path):
    fake = tmp_path / "x.jpg"
    fake.write_bytes(b"\xff\xd8 broken jpeg")
    r = subprocess.run([sys.executable, "-m", "fpxint_hw.cli", "run", "--model",
                        "mnist-resnet", "--input", str(fake)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("fpxint run: error:") and "x.jpg" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_convert_to_onnx_then_run_it(tmp_path, capsys):
    pytest.importorskip("onnx", reason="ONNX export")
    out = tmp_path / "mn.onnx"
    assert main(["convert", "--model", "mnist-resnet", "--out", str(out), "--batch", "1"]) == 0
    assert main(["run", "--model", str(out), "--limit", "200"]) == 0
    assert "held-out accuracy" in capsys.readouterr().out


def test_converted_efficientnet_loads_without_torch(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch", reason="conversion reads the .pth with torch")
    need_efficientnet_weights()
    from fpxint_hw.graph import graphs_equal

    out = tmp_path / "efficientnet_lite0.npz"
    assert main(["convert", "--model", "efficientnet-lite0", "--out", str(out)]) == 0
    ref = build_model("efficientnet-lite0")
    monkeypatch.setenv("FPXINT_MODELS_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "torch", None)          # import torch now fails
    from fpxint_hw.models import default_weights
    assert default_weights("efficientnet-lite0") == out
    assert graphs_equal(build_model("efficientnet-lite0"), ref)
    err = _error(["run", "--model", "resnet18", "--weights", str(tmp_path / "w.pth")], capsys)
    assert "w.pth" in err and "needs torch" in err


def test_run_a_native_graph_file_with_synthetic_inputs(tmp_path, capsys):
    from fpxint_hw.io.native import save_graph_npz
    from test_graph import small_graph

    save_graph_npz(tmp_path / "net.npz", small_graph(np.random.default_rng(0)))
    out_json = tmp_path / "r.json"
    assert main(["run", "--model", str(tmp_path / "net.npz"), "--json", str(out_json)]) == 0
    rep = json.loads(out_json.read_text())
    assert rep["inputs"] == "synthetic" and len(rep["results"]) == 4
    assert all(len(r["top"]) == 5 for r in rep["results"])
    err = _error(["run", "--model", str(tmp_path / "net.npz"), "--weights", "x.npz"], capsys)
    assert "--weights x.npz" in err
