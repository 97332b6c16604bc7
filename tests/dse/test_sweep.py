"""Sweeps: configuration errors, the results file, resume after a kill, local and Dask runs."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fpxint_hw.dse import ResultsFile, grid_points, run_sweep
from fpxint_hw.dse import load_sweep_config as load_trusted
from fpxint_hw.dse.point import point_spec
from fpxint_hw.errors import FormatError, InputError
from fpxint_hw.spec import load_array_spec

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

CONFIG = """
name: t
base: tiny
grid:
  bits: [2, 3, 4]
  terms: [1, 2, 3]
  array: [2x2]
  combine: [pe, column]
baselines: {baselines}
accuracy:
  evaluator: "sweep_helpers:evaluate"
  options: {{sleep: {sleep}}}
synthesis: false
throughput:
  clock_mhz: 100
workers: {workers}
"""


def load_sweep_config(path):
    """These files name the test evaluator, code the test trusts."""
    return load_trusted(path, allow_code=True)


def write_config(tmp_path, sleep=0.0, workers=1, text=None, baselines="[]") -> Path:
    p = tmp_path / "sweep.yaml"
    p.write_text(text if text is not None else CONFIG.format(sleep=sleep, workers=workers,
                                                             baselines=baselines))
    return p


@pytest.fixture
def helpers_on_path(monkeypatch):
    """Make tests/dse/sweep_helpers.py importable here and in spawned workers."""
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(HERE), str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                  if p]))


def lines_of(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


# -- configuration ---------------------------------------------------------------------

def test_an_unregistered_evaluator_needs_allow_code(tmp_path):
    """A sweep file is data: naming code to import and call is refused unless trusted; the
    registered name and its spelled-out path are accepted either way."""
    p = write_config(tmp_path)
    with pytest.raises(FormatError, match="sweep_helpers:evaluate.*--allow-code"):
        load_trusted(p)
    assert load_trusted(p, allow_code=True).accuracy["evaluator"] == "sweep_helpers:evaluate"
    for name in ("simulate", "fpxint_hw.dse.accuracy:simulate"):
        p.write_text(f"grid: {{bits: [2], terms: [1]}}\naccuracy: {{evaluator: {name}}}\n")
        assert load_trusted(p).accuracy["evaluator"] == "fpxint_hw.dse.accuracy:simulate"


@pytest.mark.parametrize("text, field", [
    ("grid: {bits: [2, 9], terms: [1]}", "grid.bits[1]"),
    ("grid: {bits: [2], terms: [1], arrays: [4x4]}", "grid.arrays"),
    ("grid: {bits: [2], terms: [1], array: [4by4]}", "grid.array[0]"),
    ("grid: {bits: [2], terms: [1], scale: [pow3]}", "grid.scale[0]"),
    ("grid: {bits: [2], terms: []}", "grid.terms"),
    ("name: x", "grid"),
    ("grid: {bits: [2], terms: [1]}\nsynthesis: {target: xilinx, pnr: true}", "synthesis.pnr"),
    ("grid: {bits: [2], terms: [1]}\nworkers: 0", "workers"),
    ("grid: {bits: [2], terms: [1]}\nthroughput: {network: vgg}", "throughput.network"),
    ("grid: {bits: [2], terms: [1]}\naccuracy: {evaluator: nocolon}", "accuracy.evaluator"),
])
def test_config_errors_name_file_and_field(tmp_path, text, field):
    p = write_config(tmp_path, text=text)
    with pytest.raises(FormatError) as exc:
        load_sweep_config(p)
    assert str(p) in str(exc.value) and field in str(exc.value)


def test_config_not_yaml(tmp_path):
    p = write_config(tmp_path, text="grid: [unclosed")
    with pytest.raises(FormatError, match="not valid YAML"):
        load_sweep_config(p)


def test_grid_points_and_specs(tmp_path):
    cfg = load_sweep_config(write_config(tmp_path))
    pts = grid_points(cfg)
    assert len(pts) == 3 * 3 * 2
    assert len({p.key for p in pts}) == len(pts)
    spec = point_spec(pts[-1], cfg)                    # b4-t3-2x2-pow2-column
    assert (spec.w_bits, spec.a_bits, spec.w_terms, spec.a_terms) == (4, 4, 3, 3)
    assert (spec.rows, spec.cols, spec.combine) == (2, 2, "column")


# -- baselines -------------------------------------------------------------------------

@pytest.mark.parametrize("text, field, words", [
    ("baselines: 8x1", "baselines", "a list"),
    ("baselines: [8x2]", "baselines[0]", "8x1"),
    ("baselines: [4x1, 9x1]", "baselines[1]", "2..8"),
    ("baselines: [1x1]", "baselines[0]", "2..8"),
    ("baselines: [int8]", "baselines[0]", "BITSx1"),
    ("baselines: [true]", "baselines[0]", "BITSx1"),
    ("baselines: [8x1, 8]", "baselines", "twice"),
])
def test_baselines_field_errors_name_file_and_field(tmp_path, text, field, words):
    p = write_config(tmp_path, text="grid: {bits: [2], terms: [1]}\n" + text)
    with pytest.raises(FormatError) as exc:
        load_sweep_config(p)
    msg = str(exc.value)
    assert str(p) in msg and f": {field}:" in msg and words in msg, msg


@pytest.mark.parametrize("text, want", [
    ("", (8, 4)), ("baselines: []", ()), ("baselines: [8x1]", (8,)),
    ("baselines: [6, 2x1]", (6, 2)), ("baselines: [4X1]", (4,)),
])
def test_baselines_field(tmp_path, text, want):
    p = write_config(tmp_path, text="grid: {bits: [2], terms: [1]}\n" + text)
    assert load_sweep_config(p).baselines == want


GRID2 = """
grid: {bits: [2, 4], terms: [1, 2], array: [2x2, 4x4], scale: [pow2, free],
       combine: [pe, column]}
"""


def test_baselines_join_the_grid_once_per_array_and_scale(tmp_path):
    cfg = load_sweep_config(write_config(tmp_path, text=GRID2 + "baselines: [8x1, 4x1]"))
    pts = grid_points(cfg)
    keys = [p.key for p in pts]
    assert len(keys) == len(set(keys)) == 2 * 2 * 2 * 2 * 2 + 4     # + W8x1 per array, scale
    arrays_scales = [(a, s) for a in ("2x2", "4x4") for s in ("pow2", "free")]
    want = {f"b{b}-t1-{a}-{s}-pe" for b in (8, 4) for a, s in arrays_scales}
    assert {p.key for p in pts if p.baseline} == want
    assert keys[-4:] == [f"b8-t1-{a}-{s}-pe" for a, s in arrays_scales]
    assert not any(p.baseline for p in pts if p.combine == "column" or p.terms > 1)
    spec = point_spec(pts[-1], cfg)                             # b8-t1-4x4-free-pe
    assert (spec.w_bits, spec.a_bits, spec.out_bits, spec.lanes) == (8, 8, 8, 1)
    assert (spec.rows, spec.combine, spec.scale) == (4, "pe", "free")
    off = grid_points(load_sweep_config(write_config(tmp_path, text=GRID2 + "baselines: []")))
    assert [p.key for p in off] == keys[:-4] and not any(p.baseline for p in off)


def test_baselines_follow_swept_m0_bits_and_rounding(tmp_path):
    text = ("grid: {bits: [3], terms: [2], m0_bits: [8, 16], rounding: [rne]}\n"
            "baselines: [4x1]")
    pts = grid_points(load_sweep_config(write_config(tmp_path, text=text)))
    assert [p.key for p in pts if p.baseline] == ["b4-t1-8x8-pow2-pe-m8-rne",
                                                  "b4-t1-8x8-pow2-pe-m16-rne"]


def test_recorded_grid_point_becomes_a_baseline_without_recomputing(tmp_path, helpers_on_path,
                                                                    monkeypatch):
    log = tmp_path / "evals.log"
    monkeypatch.setenv("FPXINT_TEST_EVAL_LOG", str(log))
    out = tmp_path / "out"
    s1 = run_sweep(load_sweep_config(write_config(tmp_path)), out, stream=None)
    assert (s1["total"], s1["ran"], s1["marked"]) == (18, 18, 0)
    before = ResultsFile(out / "results.jsonl").load()
    assert len(log.read_text().splitlines()) == 9
    cfg = load_sweep_config(write_config(tmp_path, baselines="[8x1, 4x1]"))
    s2 = run_sweep(cfg, out, stream=None)
    # W8x1 is new (one evaluation); W4x1 in the PE was a grid point: marked, not rerun
    assert (s2["total"], s2["skipped"], s2["ran"], s2["marked"]) == (19, 18, 1, 1)
    assert log.read_text().splitlines()[9:] == ["8 1 pow2"]
    after = ResultsFile(out / "results.jsonl").load()
    assert {k for k, r in after.items() if r["point"]["baseline"]} == \
        {"b8-t1-2x2-pow2-pe", "b4-t1-2x2-pow2-pe"}
    old, new = before["b4-t1-2x2-pow2-pe"], after["b4-t1-2x2-pow2-pe"]
    assert {**old, "point": {**old["point"], "baseline": True}} == new
    assert after["b8-t1-2x2-pow2-pe"]["spec"]["w_bits"] == 8
    s3 = run_sweep(cfg, out, stream=None)
    assert (s3["ran"], s3["marked"]) == (0, 0)
    assert len(lines_of(out / "results.jsonl")) == 20


def test_shipped_sweep_files_load():
    for p in sorted((REPO / "fpxint_hw" / "data" / "sweeps").glob("*.yaml")):
        cfg = load_sweep_config(p)
        assert grid_points(cfg)


# -- results file ----------------------------------------------------------------------

def test_results_file_repairs_partial_line(tmp_path):
    rf = ResultsFile(tmp_path / "r.jsonl")
    rf.append({"key": "a", "v": 1})
    rf.append({"key": "b", "v": 2})
    with open(rf.path, "ab") as f:
        f.write(b'{"key": "c", "v"')                  # a writer killed mid-line
    assert list(rf.load()) == ["a", "b"]
    rf.append({"key": "c", "v": 3})
    assert [r["key"] for r in lines_of(rf.path)] == ["a", "b", "c"]


def test_results_file_rejects_corrupt_complete_line(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"key": "a"}\nnot json\n')
    with pytest.raises(InputError, match=r"r\.jsonl:2"):
        ResultsFile(p).load()


def test_results_file_nonfinite_becomes_null(tmp_path):
    rf = ResultsFile(tmp_path / "r.jsonl")
    rf.append({"key": "a", "sqnr": float("inf")})
    assert rf.load()["a"]["sqnr"] is None


# -- running ---------------------------------------------------------------------------

def test_sweep_runs_then_skips_everything(tmp_path, helpers_on_path, monkeypatch):
    log = tmp_path / "evals.log"
    monkeypatch.setenv("FPXINT_TEST_EVAL_LOG", str(log))
    cfg = load_sweep_config(write_config(tmp_path))
    out = tmp_path / "out"
    s1 = run_sweep(cfg, out, stream=None)
    assert (s1["total"], s1["ran"], s1["skipped"], s1["errors"]) == (18, 18, 0, 0)
    recs = lines_of(out / "results.jsonl")
    assert sorted(r["key"] for r in recs) == sorted(p.key for p in grid_points(cfg))
    # accuracy depends on the formats only: 9 evaluations for 18 points
    assert len(log.read_text().splitlines()) == 9
    for r in recs:
        assert r["status"] == "ok"
        assert r["throughput"]["clock_mhz"] == 100 and r["throughput"]["cycles"] > 0
    s2 = run_sweep(cfg, out, stream=None)
    assert (s2["ran"], s2["skipped"]) == (0, 18)
    assert len(lines_of(out / "results.jsonl")) == 18


def test_failed_point_is_recorded_not_raised(tmp_path, helpers_on_path):
    text = CONFIG.format(sleep=0, workers=1, baselines="[]").replace("sweep_helpers:evaluate",
                                                     "sweep_helpers:nonexistent")
    cfg = load_sweep_config(write_config(tmp_path, text=text))
    s = run_sweep(cfg, tmp_path / "out", stream=None, limit=2)
    assert (s["ran"], s["errors"]) == (2, 2)
    recs = lines_of(tmp_path / "out" / "results.jsonl")
    assert all(r["status"] == "error" and "nonexistent" in r["errors"]["accuracy"]
               for r in recs)
    s2 = run_sweep(cfg, tmp_path / "out", stream=None, limit=2, retry_errors=True)
    assert s2["ran"] == 2                               # the same two points, retried


def test_killed_sweep_resumes_without_loss_or_duplicates(tmp_path, helpers_on_path):
    """Kill a 2-process sweep half-way (SIGKILL to its process group), resume it, and check
    that every point is recorded exactly once and the records from before the kill stand."""
    cfg_path = write_config(tmp_path, sleep=0.4, workers=2)
    out = tmp_path / "out"
    res = out / "results.jsonl"
    cmd = [sys.executable, "-m", "fpxint_hw.cli", "sweep", "--config", str(cfg_path),
           "--out", str(out), "--allow-code"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if res.exists() and len(res.read_bytes().splitlines()) >= 6:
                break
            if proc.poll() is not None:
                pytest.fail(f"sweep ended before it was killed: {proc.stderr.read()[-2000:]}")
            time.sleep(0.05)
        else:
            pytest.fail("sweep recorded too few points in 240 s")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    before = res.read_bytes()
    first = lines_of(res)
    assert 6 <= len(first) < 18, "the kill must come half-way"
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(first)} already in" in done.stderr
    after = res.read_bytes()
    kept = before[:before.rfind(b"\n") + 1]
    assert after.startswith(kept)                       # nothing recorded was rewritten
    keys = [r["key"] for r in lines_of(res)]
    assert len(keys) == len(set(keys)) == 18
    assert set(keys) == {p.key for p in grid_points(load_sweep_config(cfg_path))}
    second = [r["key"] for r in lines_of(res)][len(first):]
    assert not set(second) & {r["key"] for r in first}  # no finished point ran again


def test_dask_local_cluster(tmp_path, helpers_on_path):
    pytest.importorskip("dask.distributed", reason="dask is an optional extra "
                                                   "(pip install 'fpxint-hw[dask]')")
    cfg = load_sweep_config(write_config(tmp_path, workers=2))
    out = tmp_path / "out"
    s = run_sweep(cfg, out, executor="dask", workers=2, stream=None, limit=6)
    assert (s["ran"], s["errors"]) == (6, 0)
    s2 = run_sweep(cfg, out, stream=None)
    assert (s2["skipped"], s2["ran"]) == (6, 12)
    keys = [r["key"] for r in lines_of(out / "results.jsonl")]
    assert len(keys) == len(set(keys)) == 18


def test_progress_on_stderr(tmp_path, helpers_on_path, capsys):
    cfg = load_sweep_config(write_config(tmp_path))
    run_sweep(cfg, tmp_path / "out", limit=2)
    err = capsys.readouterr().err
    assert "18 points, 0 already in" in err
    assert "[ 1/18]" in err and "[ 2/18]" in err and "img/s" in err


def test_simulate_evaluator_on_mnist():
    """The default evaluator on the real MNIST ResNet and 100 held-out digits."""
    from fpxint_hw.dse.accuracy import simulate
    from fpxint_hw.models import default_weights
    try:
        default_weights("mnist-resnet")
    except InputError as exc:
        pytest.skip(f"MNIST ResNet weights not present: {exc}")
    base = load_array_spec("default")
    hi = simulate(dataclasses.replace(base, w_bits=4, w_terms=2, a_bits=4, a_terms=2, out_bits=4, out_terms=2), {"model": "mnist-resnet",
                                                             "images": 100})
    lo = simulate(dataclasses.replace(base, w_bits=2, w_terms=1, a_bits=2, a_terms=1, out_bits=2, out_terms=1), {"model": "mnist-resnet",
                                                             "images": 100})
    assert hi["images"] == 100 and hi["model"] == "mnist-resnet"
    assert 0.0 <= lo["accuracy"] <= 1.0 and 0.0 <= hi["accuracy"] <= 1.0
    # 4-bit x 2 terms is within a few dB of 8-bit-class precision: it follows the float model
    assert hi["top1_agreement"] >= 0.9
    assert hi["weight_sqnr_db"] > lo["weight_sqnr_db"] + 20
    assert hi["logit_sqnr_db"] > lo["logit_sqnr_db"]
    # an 8-bit-class accumulator leaves the full 31-bit multipliers (the default m0_bits)
    assert hi["m0_bits_median"] == 31 and hi["m0_bits_min"] <= 31


def test_simulate_evaluator_reports_multipliers_starved_by_wide_accumulators():
    """W8x3/A8x3: 24-bit signed weights times 24-bit unsigned activations make at least
    47-bit accumulators (plus the sign), so ``acc x M0`` in int64 leaves every multiplier at
    most 63 - 48 = 15 significant bits."""
    from fpxint_hw.dse.accuracy import simulate
    base = load_array_spec("default")
    wide = simulate(dataclasses.replace(base, w_bits=8, w_terms=3, a_bits=8, a_terms=3,
                                        out_bits=8, out_terms=3),
                    {"model": "mnist-resnet", "images": 20})
    assert 2 <= wide["m0_bits_min"] <= wide["m0_bits_median"] <= 15


def test_sweep_accuracy_uses_each_points_m0_bits_and_rounding(tmp_path):
    """A grid over m0_bits and rounding: each point's accuracy is that machine's, equal to an
    expansion with the same multiplier width and rounding done directly."""
    import yaml
    from fpxint_hw.quant import expand_graph
    from fpxint_hw.intsim import Simulator
    from fpxint_hw.workflows.network import input_range, load_inputs, load_network
    from fpxint_hw.workflows.simulate import fidelity
    cfg_path = tmp_path / "grid.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "name": "m0-rounding", "base": "default",
        "grid": {"bits": [4], "terms": [2], "array": ["2x2"], "m0_bits": [3, 31],
                 "rounding": ["rne", "half_up"]},
        "baselines": [],
        "accuracy": {"model": "mnist-resnet", "images": 40}, "synthesis": False,
        "throughput": {"clock_mhz": 100}}))
    cfg = load_sweep_config(cfg_path)
    s = run_sweep(cfg, tmp_path / "out", stream=None)
    assert (s["total"], s["errors"]) == (4, 0)
    recs = {(r["point"]["m0_bits"], r["point"]["rounding"]): r
            for r in lines_of(tmp_path / "out" / "results.jsonl")}
    graph, info = load_network("mnist-resnet")
    x, labels, _ = load_inputs(graph, info, 40, None)
    from fpxint_hw.float_exec import FloatExecutor
    ref = FloatExecutor(graph)(x)
    spec = load_array_spec("default")
    for (m0, rounding), r in recs.items():
        assert r["spec"]["m0_bits"] == m0 and r["spec"]["rounding"] == rounding
        opts = r["accuracy"]["program_options"]
        assert (opts["m0_bits"], opts["rounding"]) == (m0, rounding)
        prog = expand_graph(graph, dataclasses.replace(spec.w_fmt, per_channel=True),
                            spec.a_fmt, mode=rounding, multiplier_bits=m0,
                            host_multiplier_bits=31, input_range=input_range(info),
                            zero_points=opts["zero_points"])
        want = fidelity(ref, Simulator(prog).logits(x), labels)
        assert r["accuracy"]["logit_sqnr_db"] == pytest.approx(want["logit_sqnr_db"], abs=1e-9)
        assert r["accuracy"]["accuracy"] == want["accuracy"]
    assert recs[(3, "rne")]["accuracy"]["logit_sqnr_db"] < \
        recs[(31, "rne")]["accuracy"]["logit_sqnr_db"] - 3
    assert recs[(3, "rne")]["accuracy"]["logit_sqnr_db"] != \
        recs[(3, "half_up")]["accuracy"]["logit_sqnr_db"]
