"""Scoring a dataset on disk: the same numbers as the in-memory run of the same digits, a
killed run resumed without recomputing a finished batch, other settings refused, Dask giving
the local run's numbers, unreadable images refused or left out."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import fpxint_hw.workflows.dataset as wd
from fpxint_hw.cli import main
from fpxint_hw.errors import InputError, ToolMissingError
from fpxint_hw.io.dataset import list_dataset
from fpxint_hw.models.samples import mnist_heldout
from fpxint_hw.spec import SeriesFormat
from fpxint_hw.workflows.dataset import DatasetConfig, evaluate_dataset

PER_CLASS = 2
BATCH = 4
W4X2 = dict(w_fmt=SeriesFormat(4, 2, per_channel=True), a_fmt=SeriesFormat(4, 2))


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """An image folder of real held-out MNIST digits, ``PER_CLASS`` per class (folders 0..9),
    and for each file the index of its digit in the shipped set."""
    images, labels = mnist_heldout()
    root = tmp_path_factory.mktemp("digits") / "mnist"
    index = {}
    for c in range(10):
        (root / str(c)).mkdir(parents=True)
        for j in np.flatnonzero(labels == c)[:PER_CLASS]:
            Image.fromarray(images[j]).save(root / str(c) / f"{j:04d}.png")
            index[f"{c}/{j:04d}.png"] = int(j)
    return root, index


def _config(**kw) -> DatasetConfig:
    return DatasetConfig("mnist-resnet", **{"batch": BATCH, **W4X2, **kw})


def _same(a, b) -> None:
    assert a.rows == b.rows                         # exact, SQNR included
    assert a.float_accuracy == b.float_accuracy and a.names == b.names
    for f in ("labels", "ref_top", "top", "output_digest"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


def _digest(row: np.ndarray) -> int:
    return int.from_bytes(hashlib.blake2b(np.ascontiguousarray(row, np.int64).tobytes(),
                                          digest_size=8).digest(), "little")


@pytest.mark.parametrize("program", [W4X2, {"spec": "tiny"}], ids=["W4x2/A4x2", "spec tiny"])
def test_folder_run_equals_the_in_memory_run_of_the_same_digits(digits, program):
    from fpxint_hw.models import build_model
    from fpxint_hw.spec import load_array_spec
    from fpxint_hw.workflows.simulate import run_simulation
    root, index = digits
    if "spec" in program:
        program = {"spec": load_array_spec("tiny"), "spec_name": "tiny"}
    cfg = DatasetConfig("mnist-resnet", batch=BATCH, **program)
    res = evaluate_dataset(cfg, list_dataset(root, 10))
    assert res.images == 10 * PER_CLASS and res.complete and res.ran == res.batches == 5
    # the same digits straight from the shipped array, in the run's order: the existing path
    images, labels = mnist_heldout()
    pick = [index[n] for n in res.names]
    x = images[pick, None].astype(np.float32) / np.float32(255.0)
    rows, (_, sim, _), _ = run_simulation(build_model("mnist-resnet", fold_bn=False), x,
                                          program.get("w_fmt"), program.get("a_fmt"),
                                          spec=program.get("spec"), spec_name="tiny",
                                          labels=labels[pick], batch=BATCH, in_range=(0., 1.))
    np.testing.assert_array_equal(res.labels, labels[pick])
    assert [r["accuracy"] for r in res.rows] == [r["accuracy"] for r in rows]
    assert [r["top1_agreement"] for r in res.rows] == [r["top1_agreement"] for r in rows]
    assert [r["logit_sqnr_db"] for r in res.rows] == pytest.approx(
        [r["logit_sqnr_db"] for r in rows], rel=1e-9)
    ints = sim(x)                                   # the full term counts' integer outputs
    assert res.output_digest[-1].tolist() == [_digest(r) for r in ints.reshape(len(x), -1)]
    np.testing.assert_array_equal(res.top[-1][:, 0], sim.logits(x).argmax(1))


def test_a_labels_file_scores_the_same_images_as_the_folder(digits, tmp_path):
    root, index = digits
    folder = evaluate_dataset(_config(), list_dataset(root, 10))
    lines = [f"mnist/{n} {n.split('/')[0]}" for n in sorted(index)]
    (root.parent / "labels.txt").write_text("\n".join(lines) + "\n")
    listed = evaluate_dataset(_config(), list_dataset(root.parent / "labels.txt", 10))
    assert listed.rows == folder.rows
    assert listed.names == tuple(f"mnist/{n}" for n in folder.names)
    np.testing.assert_array_equal(listed.output_digest, folder.output_digest)


def test_a_killed_run_resumes_without_recomputing_finished_batches(digits, tmp_path,
                                                                    monkeypatch):
    root, _ = digits
    listing = list_dataset(root, 10)
    whole = evaluate_dataset(_config(), listing)
    state = tmp_path / "state"

    def kill(index, figures):                       # the process dies after two batches
        if len(list(state.glob("batch-*.npz"))) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate_dataset(_config(), listing, state=state, on_batch=kill)
    kept = {p.name: p.stat().st_mtime_ns for p in state.glob("batch-*.npz")}
    assert sorted(kept) == ["batch-000000.npz", "batch-000001.npz"]
    calls = []
    real = wd.evaluate_batch
    monkeypatch.setattr(wd, "evaluate_batch",
                        lambda config, i, *a, **k: calls.append(i) or real(config, i, *a, **k))
    res = evaluate_dataset(_config(), list_dataset(root, 10), state=state)
    assert calls == [2, 3, 4] and (res.reused, res.ran) == (2, 3)
    assert {p: (state / p).stat().st_mtime_ns for p in kept} == kept
    _same(res, whole)
    calls.clear()
    again = evaluate_dataset(_config(), list_dataset(root, 10), state=state)
    assert calls == [] and again.reused == 5
    _same(again, whole)


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_state_folder_refuses_other_settings_and_other_images(digits, tmp_path):
    root, _ = digits
    data = tmp_path / "mnist"
    shutil.copytree(root, data)
    state = tmp_path / "state"
    evaluate_dataset(_config(), list_dataset(data, 10), state=state)
    before = _files(state)
    for cfg, words in ((_config(w_fmt=SeriesFormat(4, 3, per_channel=True)),
                        ["program.w_fmt.terms = 2", "= 3", "another --state"]),
                       (_config(batch=5), ["batch = 4", "= 5"]),
                       (_config(range_rule="sigma"), ["ranges.rule", '"mse"', '"sigma"'])):
        with pytest.raises(InputError) as e:
            evaluate_dataset(cfg, list_dataset(data, 10), state=state)
        for w in words:
            assert w in str(e.value)
    # one digit replaced by another: its batch was computed on other images
    first = sorted((data / "7").iterdir())[0]
    Image.fromarray(mnist_heldout()[0][0]).save(first)
    with pytest.raises(InputError, match=r"batch-00000\d.npz: computed on other images"):
        evaluate_dataset(_config(), list_dataset(data, 10), state=state)
    assert _files(state) == before
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match=r"holds 1 other file.*notes.txt"):
        evaluate_dataset(_config(), list_dataset(data, 10), state=other)
    killed = tmp_path / "killed"                    # killed while writing its first file
    killed.mkdir()
    (killed / ".state.json.x1y2.part").write_text("{")
    assert evaluate_dataset(_config(), list_dataset(data, 10), state=killed).ran == 5


def test_an_unreadable_batch_file_is_computed_again(digits, tmp_path):
    root, _ = digits
    state = tmp_path / "state"
    whole = evaluate_dataset(_config(), list_dataset(root, 10), state=state)
    (state / "batch-000003.npz").write_text("truncated")
    res = evaluate_dataset(_config(), list_dataset(root, 10), state=state)
    assert res.recomputed == ["batch-000003.npz"] and (res.reused, res.ran) == (4, 1)
    _same(res, whole)


def test_dask_cluster_gives_the_local_numbers(digits, tmp_path):
    pytest.importorskip("dask.distributed", reason="dask.distributed is not installed")
    from dask.distributed import LocalCluster
    root, _ = digits
    listing = list_dataset(root, 10)
    local = evaluate_dataset(_config(), listing)
    wd._CACHE.clear()                               # the worker compiles its own program
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        res = evaluate_dataset(_config(), listing, executor="dask", state=tmp_path / "s",
                               scheduler=cluster.scheduler_address)
    assert res.ran == 5 and len(list((tmp_path / "s").glob("batch-*.npz"))) == 5
    _same(res, local)


@pytest.mark.slow
def test_dask_local_cluster_of_processes_gives_the_local_numbers(digits):
    pytest.importorskip("dask.distributed", reason="dask.distributed is not installed")
    root, _ = digits
    listing = list_dataset(root, 10)
    _same(evaluate_dataset(_config(), listing, executor="dask", workers=1),
          evaluate_dataset(_config(), listing))


def test_dask_missing_says_what_to_install(digits, monkeypatch):
    import fpxint_hw.dse.runner as runner
    monkeypatch.setattr(runner, "dask_missing", lambda: "no dask")
    with pytest.raises(ToolMissingError, match=r"--executor dask.*pip install 'fpxint-hw\[dask\]'"):
        evaluate_dataset(_config(), list_dataset(digits[0], 10), executor="dask")


def test_an_unreadable_image_stops_the_run_or_is_left_out(digits, tmp_path):
    root, _ = digits
    data = tmp_path / "mnist"
    shutil.copytree(root, data)
    (data / "3" / "zz.png").write_text("not an image")
    with pytest.raises(InputError, match=r"zz.png: not a readable image.*--skip-bad"):
        evaluate_dataset(_config(), list_dataset(data, 10))
    res = evaluate_dataset(_config(), list_dataset(data, 10), skip_bad=True)
    assert res.images == 10 * PER_CLASS and res.selected == 10 * PER_CLASS + 1
    assert [p for p, _ in res.bad] == ["3/zz.png"] and "3/zz.png" not in res.names


def test_images_takes_a_stratified_prefix_whose_batches_a_full_run_reuses(digits, tmp_path):
    root, _ = digits
    state = tmp_path / "s"
    part = evaluate_dataset(_config(), list_dataset(root, 10), state=state, images=8)
    assert part.images == 8 and sorted(part.labels.tolist()) == list(range(8))
    full = evaluate_dataset(_config(), list_dataset(root, 10), state=state)
    assert (full.reused, full.ran) == (2, 3)
    with pytest.raises(InputError, match=r"--images 21.*1\.\.20"):
        evaluate_dataset(_config(), list_dataset(root, 10), images=21)


def test_command_line_dataset_run_resumes_and_writes_json(digits, tmp_path, capsys):
    root, _ = digits
    out = tmp_path / "r.json"
    argv = ["simulate", "--model", "mnist-resnet", "--dataset", str(root), "--batch",
            str(BATCH), "--json", str(out)]
    assert main(argv) == 0
    r = json.loads(out.read_text())
    assert r["images"] == 20 and r["batches_run"] == 5 and r["complete"]
    assert r["state"] == str(tmp_path / "r.state") and (tmp_path / "r.state").is_dir()
    assert [p["w_terms"] for p in r["per_term"]] == [1, 2]
    assert r["accuracy"] == r["per_term"][-1]["accuracy"] and r["images_per_s"] > 0
    assert main(argv) == 0
    again = json.loads(out.read_text())
    assert again["batches_reused"] == 5 and again["per_term"] == r["per_term"]
    text = capsys.readouterr().out
    assert "top-1 agree" in text and "5 loaded from" in text


def test_command_line_dask_with_a_scheduler(digits, tmp_path):
    pytest.importorskip("dask.distributed", reason="dask.distributed is not installed")
    from dask.distributed import LocalCluster
    root, _ = digits
    local, spread = tmp_path / "l.json", tmp_path / "d.json"
    base = ["simulate", "--model", "mnist-resnet", "--dataset", str(root), "--batch",
            str(BATCH), "--no-per-term"]
    assert main(base + ["--json", str(local)]) == 0
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        assert main(base + ["--json", str(spread), "--executor", "dask", "--scheduler",
                            cluster.scheduler_address]) == 0
    a, b = json.loads(local.read_text()), json.loads(spread.read_text())
    assert a["per_term"] == b["per_term"] and b["dataset"]["executor"] == "dask"
