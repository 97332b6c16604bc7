"""The bad-input catalogue, run as a user runs the ``fpxint`` command: nothing is lost and
nothing is silently wrong.

Each case is a command line that must be refused before any work: exit status 2, no
traceback, a message that names the flag, file or value at fault, every input byte for byte
as it was and no output left behind. The cases are the findings of the trust audit: outputs
over inputs, two outputs on one path, a sweep resumed under other settings; YAML that means
something else than it says (empty, duplicate keys, YAML 1.1 scalars, aliases), files that
are not files (a FIFO, a folder, binary); counts out of range; images with no fixed pixel
range or too many pixels; flags that would be ignored. Also the writers' contracts (exact
output names, no stale tiles beside a new index).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from fpxint_hw.cli import main

DATA = Path(__file__).resolve().parents[1] / "fpxint_hw" / "data"


@pytest.fixture
def files(tmp_path):
    """Inputs a user has on disk: arrays, weights, a spec, an image."""
    np.savez(tmp_path / "in.npz", w=np.linspace(-1, 1, 64).reshape(8, 8).astype(np.float32))
    shutil.copy(DATA / "weights" / "mnist_resnet.npz", tmp_path / "weights.npz")
    shutil.copy(DATA / "arrays" / "tiny.yaml", tmp_path / "spec.yaml")
    shutil.copy(DATA / "images" / "coffee.png", tmp_path / "photo.png")
    spec = (DATA / "arrays" / "tiny.yaml").read_text()
    for name, text in {
        "empty": "", "dup": spec + "rows: 4\n", "hex": spec.replace("rows: 2", "rows: 0x2"),
        "octal": spec.replace("rows: 2", "rows: 010"),
        "yes": spec.replace("a_signed: false", "a_signed: yes"),
        "base60": spec.replace("rows: 2", "rows: 1:30"),
        "under": spec.replace("rows: 2", "rows: 1_0"),
        "alias": "a: &a [1, 2]\nb: [*a, *a]\n", "word": spec.replace("rows: 2", "rows: two"),
        "unknown": spec + "colour: blue\n",
        "code": "grid: {bits: [2], terms: [1]}\naccuracy: {evaluator: 'os:system'}\n",
    }.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    assert "rows: 2" in spec and "a_signed: false" in spec
    (tmp_path / "binary.yaml").write_bytes(bytes(range(128, 256)))
    (tmp_path / "huge.yaml").write_text("# padding\n" * 120_000)
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "folder.yaml").mkdir()
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "corrupt.npz").write_text("not an archive")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    os.replace(tmp_path / "objects.npy", tmp_path / "objects.npz")
    import io
    import zipfile
    head = io.BytesIO()                  # a header declaring 8 TB over 64 bytes of data
    np.lib.format.write_array_header_1_0(
        head, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as z:
        z.writestr("w.npy", head.getvalue() + bytes(64))
    from PIL import Image
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)).save(
        tmp_path / "float.tiff")
    Image.new("1", (12_000, 12_000)).save(tmp_path / "bomb.png")   # 144 Mpixel, 2 kB
    with np.load(tmp_path / "weights.npz") as z:
        w = {k: z[k] for k in z.files}
    w["conv1.weight"] = w["conv1.weight"].astype(np.int64)          # fractions lost
    np.savez(tmp_path / "intweights.npz", **w)
    import onnx
    from onnx import TensorProto, helper
    v = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2]) for n in "xy"]
    old = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                              [v[0]], [v[1]]),
                            opset_imports=[helper.make_opsetid("", 9)])
    old.ir_version = 8
    onnx.save_model(old, str(tmp_path / "opset9.onnx"))
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 3, 3], [0.1] * 54)
    for name, shape, pads in (("hugepads", [1, 3, 8, 8], [100_000] * 4),
                              ("hugeinput", [1, 3, 100_000, 100_000], [1] * 4)):
        conv = helper.make_graph(
            [helper.make_node("Conv", ["x", "w"], ["y"], pads=pads)], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, None, None])], [w])
        model = helper.make_model(conv, opset_imports=[helper.make_opsetid("", 13)])
        onnx.save_model(model, str(tmp_path / f"{name}.onnx"))
    return tmp_path


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()} | {
        str(p.relative_to(folder)): "folder" for p in folder.rglob("*") if p.is_dir()}


# (name, argv with {d} for the folder, words the message must contain)
REFUSED = [
    ("expand -o over its input", ["expand", "{d}/in.npz", "-o", "{d}/in.npz"],
     ["--output", "in.npz", "input"]),
    ("expand --json over its input", ["expand", "{d}/in.npz", "-o", "{d}/out.npz", "--json",
                                      "{d}/in.npz"], ["--json", "in.npz", "input"]),
    ("expand -o and --json on one path", ["expand", "{d}/in.npz", "-o", "{d}/x", "--json",
                                          "{d}/x"], ["--json", "same path as --output"]),
    ("expand -o over a folder", ["expand", "{d}/in.npz", "-o", "{d}"], ["--output",
                                                                         "is a folder"]),
    ("expand -o below a file", ["expand", "{d}/in.npz", "-o", "{d}/in.npz/out.npz"],
     ["--output", "is a file, not a folder"]),
    ("rtl -o over its spec", ["rtl", "--spec", "{d}/spec.yaml", "-o", "{d}/spec.yaml"],
     ["--output", "spec.yaml", "--spec"]),
    ("simulate --json over its weights", ["simulate", "--model", "mnist-resnet", "--weights",
                                          "{d}/weights.npz", "--images", "1", "--json",
                                          "{d}/weights.npz"], ["--json", "--weights"]),
    ("run --json over its image", ["run", "--model", "efficientnet-lite0", "--input",
                                   "{d}/photo.png", "--json", "{d}/photo.png"],
     ["--json", "photo.png", "--input"]),
    ("allocate --json over its --out", ["allocate", "--model", "mnist-resnet",
                                        "--target-sqnr", "30", "--out", "{d}/a.yaml",
                                        "--json", "{d}/a.yaml"], ["same path as --out"]),
    ("verify --json over its spec", ["verify", "--spec", "{d}/spec.yaml", "--random", "1",
                                     "--json", "{d}/spec.yaml"], ["--json", "--spec"]),
    ("convert --out over its weights", ["convert", "--model", "mnist-resnet", "--weights",
                                        "{d}/weights.npz", "--out", "{d}/weights.npz"],
     ["weights.npz"]),
]

# array specs, each given to ``fpxint rtl --spec FILE -o x.v``: (file, words)
SPECS = [
    ("empty", ["empty.yaml", "empty"]), ("dup", ["dup.yaml", "line", "duplicate key 'rows'"]),
    ("hex", ["'0x2'", "YAML 1.1"]), ("octal", ["'010'", "YAML 1.1"]),
    ("yes", ["'yes'", "true or false"]), ("base60", ["'1:30'"]), ("under", ["'1_0'"]),
    ("alias", ["anchors"]), ("word", ["rows", "two"]), ("unknown", ["colour"]),
    ("binary", ["binary.yaml", "UTF-8"]), ("huge", ["huge.yaml", "bytes"]),
    ("fifo", ["fifo.yaml", "not a regular file"]), ("folder", ["folder.yaml", "regular"]),
]
REFUSED += [(f"spec {name}", ["rtl", "--spec", f"{{d}}/{name}.yaml", "-o", "{d}/x.v"], words)
            for name, words in SPECS]
REFUSED += [
    ("sweep config with yes", ["sweep", "--config", "{d}/yes.yaml", "--out", "{d}/sw"],
     ["'yes'"]),
    ("sweep config empty", ["sweep", "--config", "{d}/empty.yaml", "--out", "{d}/sw"],
     ["empty"]),
    ("sweep config that calls os:system", ["sweep", "--config", "{d}/code.yaml", "--out",
                                           "{d}/sw"], ["'os:system'", "--allow-code"]),
    ("override file with aliases", ["simulate", "--model", "mnist-resnet", "--images", "1",
                                    "--overrides", "{d}/alias.yaml"], ["alias.yaml",
                                                                       "anchors"]),
    ("simulate --images 0", ["simulate", "--model", "mnist-resnet", "--images", "0"],
     ["--images", "at least 1"]),
    ("simulate --images -1", ["simulate", "--model", "mnist-resnet", "--images", "-1"],
     ["--images", "-1"]),
    ("simulate --images beyond the digits", ["simulate", "--model", "mnist-resnet",
                                             "--images", "1000000000"],
     ["1000000000", "1..1000"]),
    ("simulate --batch 0", ["simulate", "--model", "mnist-resnet", "--batch", "0"],
     ["--batch"]),
    ("simulate --threads 0", ["simulate", "--model", "mnist-resnet", "--threads", "0"],
     ["--threads"]),
    ("simulate --max-tiles 0", ["simulate", "--model", "mnist-resnet", "--max-tiles", "0"],
     ["--max-tiles"]),
    ("simulate --images abc", ["simulate", "--model", "mnist-resnet", "--images", "abc"],
     ["--images", "'abc'"]),
    ("run --limit 0", ["run", "--model", "mnist-resnet", "--limit", "0"], ["--limit"]),
    ("run --limit beyond the photos", ["run", "--model", "efficientnet-lite0", "--limit",
                                       "6"], ["6", "1..5"]),
    ("allocate --images 0", ["allocate", "--model", "mnist-resnet", "--target-sqnr", "30",
                             "--out", "{d}/a.yaml", "--images", "0"], ["--images"]),
    ("verify --random 0", ["verify", "--spec", "tiny", "--random", "0"], ["--random"]),
    ("verify --m 0", ["verify", "--spec", "tiny", "--random", "1", "--m", "0"], ["--m"]),
    ("verify --ready 2", ["verify", "--spec", "tiny", "--random", "1", "--ready", "2"],
     ["--ready", "2"]),
    ("verify --images 0", ["verify", "--spec", "tiny", "--model", "mnist-resnet",
                           "--images", "0"], ["--images"]),
    ("sweep --workers 0", ["sweep", "--config", "tiny", "--out", "{d}/sw", "--workers", "0"],
     ["--workers"]),
    ("convert --batch 0", ["convert", "--model", "mnist-resnet", "--out", "{d}/m.onnx",
                           "--batch", "0"], ["--batch"]),
    ("expand --axis without --per-channel", ["expand", "{d}/in.npz", "-o", "{d}/o.npz",
                                             "--axis", "1"], ["--axis", "--per-channel"]),
    ("simulate --range-sigmas with the mse rule", ["simulate", "--model", "mnist-resnet",
                                                   "--range-sigmas", "3"],
     ["--range-sigmas", "--range-rule sigma"]),
    ("simulate --tile-rows without --dump-tiles", ["simulate", "--model", "mnist-resnet",
                                                   "--tile-rows", "4"],
     ["--tile-rows", "--dump-tiles"]),
    ("synth --seed without --pnr", ["synth", "--spec", "tiny", "--seed", "2"],
     ["--seed", "--pnr"]),
    ("sweep --scheduler without dask", ["sweep", "--config", "tiny", "--out", "{d}/sw",
                                        "--scheduler", "tcp://x:1"],
     ["--scheduler", "--executor dask"]),
    ("expand --bits 99", ["expand", "{d}/in.npz", "-o", "{d}/o.npz", "--bits", "99"],
     ["bits", "99"]),
    ("expand a missing file", ["expand", "{d}/none.npz", "-o", "{d}/o.npz"], ["none.npz"]),
    ("expand a corrupt archive", ["expand", "{d}/corrupt.npz", "-o", "{d}/o.npz"],
     ["corrupt.npz"]),
    ("expand a header declaring 8 TB", ["expand", "{d}/huge.npz", "-o", "{d}/o.npz"],
     ["huge.npz", "'w'", "8000000000000 bytes"]),
    ("expand pickled objects", ["expand", "{d}/objects.npz", "-o", "{d}/o.npz"],
     ["objects.npz"]),
    ("run a float image", ["run", "--model", "efficientnet-lite0", "--input",
                           "{d}/float.tiff"], ["float.tiff", "float pixels"]),
    ("run a decompression bomb", ["run", "--model", "efficientnet-lite0", "--input",
                                  "{d}/bomb.png"], ["bomb.png", "too many pixels"]),
    ("run text as an image", ["run", "--model", "efficientnet-lite0", "--input",
                              "{d}/text.png"], ["text.png", "not a readable image"]),
    ("run a missing image", ["run", "--model", "efficientnet-lite0", "--input",
                             "{d}/none.png"], ["none.png"]),
    ("simulate integer weights", ["simulate", "--model", "mnist-resnet", "--weights",
                                  "{d}/intweights.npz"], ["intweights.npz", "conv1.weight",
                                                          "int64"]),
    ("simulate an ONNX of huge paddings", ["simulate", "--model", "{d}/hugepads.onnx"],
     ["hugepads.onnx", "'y'", "200008", "paddings"]),
    ("simulate an ONNX of a huge input", ["simulate", "--model", "{d}/hugeinput.onnx"],
     ["hugeinput.onnx", "'x'", "100000", "input shape"]),
    ("simulate an ONNX opset too old", ["simulate", "--model", "{d}/opset9.onnx"],
     ["opset9.onnx", "opset 9"]),
    ("rtl an unknown spec name", ["rtl", "--spec", "nosuchspec", "-o", "{d}/x.v"],
     ["nosuchspec", "shipped"]),
    ("simulate an unknown model", ["simulate", "--model", "nosuchmodel"], ["nosuchmodel"]),
    ("simulate a model file that is not a network", ["simulate", "--model",
                                                     "{d}/corrupt.npz"], ["corrupt.npz"]),
    ("simulate overrides with a duplicate key", ["simulate", "--model", "mnist-resnet",
                                                 "--images", "1", "--overrides",
                                                 "{d}/dup.yaml"], ["duplicate key"]),
    ("synth an empty spec", ["synth", "--spec", "{d}/empty.yaml"], ["empty.yaml", "empty"]),
    ("plot a missing folder", ["plot", "{d}/nosweep"], ["nosweep"]),
    ("verify missing tiles", ["verify", "--spec", "tiny", "--tiles", "{d}/notiles"],
     ["notiles"]),
    ("verify --layers naming no layer", ["verify", "--spec", "tiny", "--model",
                                         "mnist-resnet", "--layers", "nosuchlayer"],
     ["nosuchlayer"]),
    ("export -o over its --model", ["export", "--model", "{d}/opset9.onnx", "-o",
                                    "{d}/opset9.onnx"], ["--output", "opset9.onnx", "--model"]),
    ("export an unknown --format", ["export", "--model", "mnist-resnet", "--format", "tflite",
                                    "-o", "{d}/m.onnx"], ["--format", "tflite"]),
    ("export -o that is no .onnx", ["export", "--model", "mnist-resnet", "-o", "{d}/m.npz"],
     ["--output", "m.npz", ".onnx"]),
    ("simulate --save-outputs over its weights", ["simulate", "--model", "mnist-resnet",
                                                  "--weights", "{d}/weights.npz", "--images",
                                                  "1", "--save-outputs", "{d}/weights.npz"],
     ["--save-outputs", "--weights"]),
]


@pytest.mark.parametrize("name,argv,words", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_before_any_work_and_nothing_changes(name, argv, words, files, capsys):
    before = _snapshot(files)
    try:
        rc = main([a.format(d=files) for a in argv])
    except SystemExit as exc:                   # argparse's usage errors: exit 2 as well
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err
    assert _snapshot(files) == before


def test_export_without_the_onnx_package_says_how_to_install_it(files, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)     # import onnx fails
    before = _snapshot(files)
    assert main(["export", "--model", "mnist-resnet", "-o", str(files / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "pip install onnx" in err and "export" in err
    assert _snapshot(files) == before


def test_an_output_name_is_kept_exactly(files, capsys):
    assert main(["expand", str(files / "in.npz"), "-o", str(files / "t.bin")]) == 0
    assert "t.bin" in capsys.readouterr().out
    assert (files / "t.bin").exists() and not (files / "t.bin.npz").exists()


def _sweep_folder(files: Path, accuracy: dict) -> Path:
    out = files / "sweep"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps(
        {"name": "tiny", "base": "tiny", "grid": {}, "accuracy": accuracy,
         "synthesis": {"target": "ecp5", "pnr": False}, "throughput": {"clock_mhz": 50}}))
    (out / "results.jsonl").write_text('{"key": "b2-t1-2x2-pow2-pe", "status": "ok"}\n')
    return out


def test_a_sweep_does_not_resume_under_other_settings(files, capsys):
    out = _sweep_folder(files, {"model": "mnist-resnet", "images": 50})
    before = _snapshot(files)
    rc = main(["sweep", "--config", "tiny", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "accuracy" in err and '"images": 50' in err and "new --out" in err
    assert _snapshot(files) == before


def test_a_second_tile_dump_leaves_no_stale_tiles(files, capsys):
    dump = files / "tiles"
    (dump).mkdir()
    (dump / "notes.txt").write_text("mine")                   # not ours: left alone
    for n in ("3", "1"):
        assert main(["simulate", "--model", "mnist-resnet", "--images", "1", "--dump-tiles",
                     str(dump), "--max-tiles", n, "--tile-layers", "relu"]) == 0
    index = json.loads((dump / "index.json").read_text())
    assert len(index) == 1
    assert sorted(p.name for p in dump.iterdir()) == sorted(
        [e["file"] for e in index] + ["index.json", "notes.txt"])


# -- simulate --dataset: a user's own images ---------------------------------------------------

@pytest.fixture
def datasets(files):
    """Image folders and labels files as users have them, beside the other inputs: one real
    digit per class, and the same with a text file, with a text file named .png, empty, of
    three classes; labels files naming a missing file and a label out of range."""
    from PIL import Image

    from fpxint_hw.models.samples import mnist_heldout
    images, labels = mnist_heldout()
    good = files / "digits"
    for c in range(10):
        (good / str(c)).mkdir(parents=True)
        Image.fromarray(images[np.flatnonzero(labels == c)[0]]).save(good / str(c) / "a.png")
    shutil.copytree(good, files / "with_text")
    (files / "with_text" / "4" / "notes.txt").write_text("not an image")
    shutil.copytree(good, files / "with_fake")
    shutil.copy(files / "text.png", files / "with_fake" / "4" / "0.png")   # in the first batch
    (files / "empty").mkdir()
    for c in range(3):
        shutil.copytree(good / str(c), files / "three" / str(c))
    (files / "missing.txt").write_text("digits/0/a.png 0\ndigits/1/gone.png 1\n")
    (files / "range.txt").write_text("digits/0/a.png 12\n")
    (files / "synsets.txt").write_text("zero\none\n")
    return files


SIM = ["simulate", "--model", "mnist-resnet"]
DATASET_REFUSED = [
    ("dataset: an empty folder", SIM + ["--dataset", "{d}/empty"], ["empty", "no class folders"]),
    ("dataset: a missing path", SIM + ["--dataset", "{d}/nodata"],
     ["nodata", "no such folder or labels file"]),
    ("dataset: a text file among the images", SIM + ["--dataset", "{d}/with_text"],
     ["notes.txt", "not an image file", "--skip-bad"]),
    ("dataset: text named .png", SIM + ["--dataset", "{d}/with_fake", "--json", "{d}/r.json"],
     ["0.png", "not a readable image", "--skip-bad"]),
    ("dataset: 3 classes for 10 outputs", SIM + ["--dataset", "{d}/three"],
     ["3 class folders", "10 outputs", "labels file"]),
    ("dataset: labels naming a missing file", SIM + ["--dataset", "{d}/missing.txt"],
     ["missing.txt", "line 2", "gone.png", "no such file"]),
    ("dataset: a label out of range", SIM + ["--dataset", "{d}/range.txt"],
     ["range.txt", "line 1", "'12'", "0..9"]),
    ("dataset: synsets of the wrong count", SIM + ["--dataset", "{d}/digits", "--synsets",
                                                   "{d}/synsets.txt"],
     ["synsets.txt", "lists 2 classes", "10 outputs"]),
    ("dataset: --images beyond it", SIM + ["--dataset", "{d}/digits", "--images", "11"],
     ["--images 11", "1..10"]),
    ("dataset: --state inside it", SIM + ["--dataset", "{d}/digits", "--state",
                                          "{d}/digits/state"],
     ["--state", "inside the dataset folder"]),
    ("dataset: --json over the labels file", SIM + ["--dataset", "{d}/range.txt", "--json",
                                                    "{d}/range.txt"], ["--json", "--dataset"]),
    ("dataset: with --input", SIM + ["--dataset", "{d}/digits", "--input", "{d}/photo.png"],
     ["--input", "does not apply with --dataset"]),
    ("dataset: with --calibrate", SIM + ["--dataset", "{d}/digits", "--calibrate", "4"],
     ["--calibrate", "does not apply with --dataset"]),
    ("dataset: with --check", SIM + ["--dataset", "{d}/digits", "--check", "golden"],
     ["--check", "--input"]),
    ("dataset: --synsets without it", SIM + ["--synsets", "{d}/synsets.txt"],
     ["--synsets", "applies only with --dataset"]),
    ("dataset: --skip-bad without it", SIM + ["--skip-bad"], ["--skip-bad", "--dataset"]),
    ("dataset: --scheduler without dask", SIM + ["--dataset", "{d}/digits", "--scheduler",
                                                 "tcp://x:1"],
     ["--scheduler", "--executor dask"]),
]


@pytest.mark.parametrize("name,argv,words", DATASET_REFUSED, ids=[c[0] for c in DATASET_REFUSED])
def test_dataset_refused_before_any_work(name, argv, words, datasets, capsys):
    test_refused_before_any_work_and_nothing_changes(name, argv, words, datasets, capsys)


def test_a_dataset_state_does_not_resume_under_other_settings(datasets, capsys):
    run = SIM + ["--dataset", str(datasets / "digits"), "--state", str(datasets / "st")]
    assert main(run + ["--no-per-term"]) == 0
    before = _snapshot(datasets)
    rc = main(run + ["--no-per-term", "--w-terms", "3"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "program.w_fmt.terms = 2" in err and "another --state" in err
    assert _snapshot(datasets) == before
