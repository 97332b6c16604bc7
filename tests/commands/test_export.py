"""``fpxint export`` end to end: the program ``fpxint simulate`` ran, written as int-onnx, gives
the integers ``simulate --save-outputs`` saved; ``--check`` compares every layer; bad
requests are refused before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fpxint_hw.cli import main

pytest.importorskip("onnx", reason="fpxint export writes ONNX with the onnx package")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime runs the exported graph")

def test_saved_simulator_outputs_equal_the_exported_graph_in_onnxruntime(tmp_path, capsys):
    # an array spec and ranges calibrated on the first 3 of 8 digits: the same program
    flags = ["--spec", "default", "--calibrate", "3", "--images", "8"]
    saved = tmp_path / "sim.npz"
    assert main(["simulate", "--model", "mnist-resnet", "--no-per-term",
                 "--save-outputs", str(saved), *flags]) == 0
    out, qdq = tmp_path / "mnist.onnx", tmp_path / "mnist_qdq.onnx"
    assert main(["export", "--model", "mnist-resnet", "-o", str(out), *flags]) == 0
    assert main(["export", "--model", "mnist-resnet", "--format", "qdq", "-o", str(qdq),
                 *flags]) == 0
    printed = capsys.readouterr().out
    assert "as int-onnx" in printed and "as qdq" in printed
    with np.load(saved) as z:
        assert sorted(z.files) == ["inputs", "int_output"]
        x, want = z["inputs"], z["int_output"]
    assert x.dtype == np.float32 and x.shape == (5, 1, 28, 28)
    assert want.dtype == np.int64 and want.shape == (5, 10)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["float_input"]
    assert np.array_equal(sess.run(["int_output"], {"float_input": x})[0], want)
    sess = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"])
    real = sess.run(["float_output"], {"float_input": x})[0]
    assert real.argmax(1).tolist() == want.argmax(1).tolist()


def test_check_in_onnx_reference_compares_every_layer_and_writes_json(tmp_path, capsys):
    out, report = tmp_path / "m.onnx", tmp_path / "m.json"
    assert main(["export", "--model", "mnist-resnet", "-o", str(out), "--check", "reference",
                 "--images", "2", "--json", str(report)]) == 0
    text = capsys.readouterr().out
    assert "0 mismatches" in text
    r = json.loads(report.read_text())
    assert r["format"] == "int-onnx" and r["output"] == str(out) and r["bytes"] > 0
    assert r["check"]["runtime"] == "reference" and r["check"]["inputs"] == 2
    assert r["check"]["mismatches"] == 0 and r["check"]["first"] is None
    assert r["check"]["layers_checked"] == 17            # 16 program layers + int_output
    assert r["ops"]["ConvInteger"] + r["ops"]["MatMulInteger"] == 40   # 10 layers x 2 x 2


@pytest.mark.parametrize("argv,words", [
    (["--level", "tensor"], ["--level tensor"]),
    (["--images", "3"], ["--images", "--check"]),
    (["--format", "qdq", "--check", "ort"], ["--check", "int-onnx"]),
    (["--range-sigmas", "3"], ["--range-sigmas", "--range-rule sigma"]),
], ids=["tensor level", "images without check", "check of qdq", "sigmas without sigma"])
def test_requests_that_do_not_apply_are_refused(argv, words, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "--model", "mnist-resnet", "-o", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err
    assert not out.exists()


def test_save_outputs_is_refused_at_tensor_level(tmp_path, capsys):
    saved = tmp_path / "s.npz"
    assert main(["simulate", "--model", "mnist-resnet", "--images", "2", "--level", "tensor",
                 "--save-outputs", str(saved)]) == 2
    assert "--save-outputs" in capsys.readouterr().err
    assert not saved.exists()

