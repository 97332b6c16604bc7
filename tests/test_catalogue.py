"""The bad-input catalogue, run as a user runs the ``fpxint`` command: nothing is lost.

Each case is a command line that must be refused before any work: exit status 2, no
traceback, a message that names the flag and the path, every input byte for byte as it was
and no output left behind. The cases are the data-loss findings of the trust audit (an
output path equal to an input, two outputs on one path, a sweep resumed under other
settings) and the writers' contracts (exact output names, no stale tiles beside a new
index).
"""

from __future__ import annotations

import hashlib
import json
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
    return tmp_path


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


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


@pytest.mark.parametrize("name,argv,words", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_before_any_work_and_nothing_changes(name, argv, words, files, capsys):
    before = _snapshot(files)
    rc = main([a.format(d=files) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err
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
