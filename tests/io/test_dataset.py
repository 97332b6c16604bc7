"""Listing a user's dataset: image folders (ImageFolder order), labels files, class lists,
bad files refused by name (or left out with skip_bad), batches decoded one at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fpxint_hw.errors import InputError
from fpxint_hw.io.dataset import (list_dataset, list_image_folder, load_batch,
                                  read_class_list, read_labels_file)


def _png(path: Path, value: int = 0, size=(4, 4)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    """Three classes named so that sorting matters, a nested folder, hidden files, a README
    at the top."""
    root = tmp_path / "data"
    for rel in ("b/2.png", "b/1.PNG", "a/x.jpg", "c/deep/er/z.png", "c/y.bmp"):
        _png(root / rel)
    (root / "a" / "x.jpg").unlink()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "a" / "x.jpg")
    (root / ".hidden").mkdir()
    _png(root / ".hidden" / "h.png")
    _png(root / "b" / ".DS_Store.png")
    (root / "README.txt").write_text("my dataset")
    return root


def test_image_folder_sorts_classes_and_files_by_name(folder):
    lst = list_image_folder(folder, 3)
    assert lst.class_names == ("a", "b", "c")
    assert lst.paths == ("a/x.jpg", "b/1.PNG", "b/2.png", "c/deep/er/z.png", "c/y.bmp")
    assert lst.labels.tolist() == [0, 1, 1, 2, 2]
    assert lst.sizes.tolist() == [(folder / p).stat().st_size for p in lst.paths]
    assert Path(lst.file(3)) == folder / "c" / "deep" / "er" / "z.png"
    assert lst.root.is_absolute()


def test_folder_count_must_equal_the_outputs(folder):
    with pytest.raises(InputError, match=r"3 class folders, the model has 10 outputs.*labels "
                                         r"file"):
        list_image_folder(folder, 10)


def test_a_few_imagenet_synsets_need_the_synset_list(tmp_path):
    for s in ("n01440764", "n01443537"):
        _png(tmp_path / s / "a.png")
    with pytest.raises(InputError, match=r"2 class folders.*1000 outputs.*--synsets FILE"):
        list_image_folder(tmp_path, 1000)
    synsets = [f"n{i:08d}" for i in range(998)] + ["n01443537", "n01440764"]
    lst = list_dataset(tmp_path, 1000, class_list=synsets)
    assert lst.paths == ("n01440764/a.png", "n01443537/a.png")
    assert lst.labels.tolist() == [999, 998]            # by name, not by rank


def test_a_folder_not_in_the_class_list_is_named(folder):
    with pytest.raises(InputError, match=r"folder name 'c' is not in the class list"):
        list_image_folder(folder, 3, class_list=["a", "b", "d"])


def test_non_image_file_refused_by_name_or_left_out(folder):
    (folder / "b" / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match=r"notes.txt: not an image file.*--skip-bad"):
        list_image_folder(folder, 3)
    lst = list_image_folder(folder, 3, skip_bad=True)
    assert "b/notes.txt" not in lst.paths and len(lst) == 5
    assert [p for p, _ in lst.skipped] == ["b/notes.txt"]


def test_empty_folder_and_empty_class_refused(tmp_path):
    with pytest.raises(InputError, match="no class folders"):
        list_image_folder(tmp_path, 3)
    (tmp_path / "a").mkdir()
    _png(tmp_path / "b" / "1.png")
    with pytest.raises(InputError, match=r"a: a class folder without images"):
        list_image_folder(tmp_path, 2)


def test_labels_file_forms(tmp_path):
    for rel in ("img/a.png", "img/b c.png", "img/d.png"):
        _png(tmp_path / rel)
    (tmp_path / "labels.txt").write_text("# path label\n\nimg/a.png 3\n  img/b c.png\t0\n"
                                         "img/d.png,9\n")
    lst = read_labels_file(tmp_path / "labels.txt", 10)
    assert lst.paths == ("img/a.png", "img/b c.png", "img/d.png")
    assert lst.labels.tolist() == [3, 0, 9]
    assert lst.class_names is None and lst.root == tmp_path.absolute()
    (tmp_path / "labels.csv").write_text("file,class\nimg/a.png,n2\nimg/d.png,7\n")
    lst = list_dataset(tmp_path / "labels.csv", 10, class_list=[f"n{i}" for i in range(10)])
    assert lst.paths == ("img/a.png", "img/d.png") and lst.labels.tolist() == [2, 7]


@pytest.mark.parametrize("text,words", [
    ("img/a.png 10\n", ["line 1", "'10'", "0..9"]),
    ("img/a.png 1\nimg/a.png 2\n", ["line 2", "listed again", "line 1"]),
    ("img/a.png\n", ["line 1", "'img/a.png'"]),
    ("img/a.png 1\nimg/missing.png 2\n", ["line 2", "missing.png", "no such file"]),
    ("img/a.png -1\n", ["'-1'"]),
    ("file,label\nimg/a.png,1\n", ["line 1", "'label'"]),       # a header only in a .csv
])
def test_labels_file_errors_name_line_and_value(tmp_path, text, words):
    _png(tmp_path / "img" / "a.png")
    (tmp_path / "labels.txt").write_text(text)
    with pytest.raises(InputError) as e:
        read_labels_file(tmp_path / "labels.txt", 10)
    for w in words:
        assert w in str(e.value)
    assert "labels.txt" in str(e.value)


def test_a_csv_header_is_a_word_not_a_number(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "l.csv").write_text("a.png,12\n")               # out of range, not a header
    with pytest.raises(InputError, match="'12'"):
        read_labels_file(tmp_path / "l.csv", 10)


def test_labels_file_missing_files_left_out_with_skip_bad(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "l.txt").write_text("a.png 1\ngone.png 2\n")
    lst = read_labels_file(tmp_path / "l.txt", 10, skip_bad=True)
    assert lst.paths == ("a.png",)
    assert lst.skipped[0][0] == "gone.png" and "line 2" in lst.skipped[0][1]
    (tmp_path / "l.txt").write_text("gone.png 2\n")
    with pytest.raises(InputError, match="lists no images"):
        read_labels_file(tmp_path / "l.txt", 10, skip_bad=True)


def test_binary_labels_file_refused(tmp_path):
    (tmp_path / "l.txt").write_bytes(bytes(range(128, 256)))
    with pytest.raises(InputError, match="not a UTF-8 text labels file"):
        read_labels_file(tmp_path / "l.txt", 10)
    with pytest.raises(InputError, match="no such folder or labels file"):
        list_dataset(tmp_path / "nothing", 10)


def test_class_list_first_words_count_and_duplicates(tmp_path):
    f = tmp_path / "synsets.txt"
    f.write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish\n\nn01484850 shark\n")
    assert read_class_list(f, 3) == ("n01440764", "n01443537", "n01484850")
    with pytest.raises(InputError, match=r"lists 3 classes, the model has 1000 outputs"):
        read_class_list(f, 1000)
    f.write_text("n1\nn2\nn1\n")
    with pytest.raises(InputError, match=r"line 3: class 'n1' is listed again"):
        read_class_list(f, 3)


def test_stratified_order_and_entries_key(folder, tmp_path):
    lst = list_image_folder(folder, 3)
    order = lst.order()
    assert sorted(lst.labels[order[:3]].tolist()) == [0, 1, 2]   # every class first
    assert sorted(order.tolist()) == list(range(len(lst)))
    key = lst.entries_key([0, 1])
    assert key != lst.entries_key([1, 0])
    moved = tmp_path / "moved"
    folder.rename(moved)
    assert list_image_folder(moved, 3).entries_key([0, 1]) == key   # same images elsewhere
    _png(moved / "a" / "x.jpg", size=(40, 40))                      # a changed file
    assert list_image_folder(moved, 3).entries_key([0, 1]) != key


def test_load_batch_refuses_or_skips_an_unreadable_image(tmp_path):
    good = _png(tmp_path / "good.png", 255)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    from fpxint_hw.io.images import load_image

    def load(f):
        return load_image(f, "L").astype(np.float32)[None]

    with pytest.raises(InputError, match=r"bad.png: not a readable image.*--skip-bad"):
        load_batch([str(good), str(bad)], load)
    x, kept, why = load_batch([str(bad), str(good)], load, skip_bad=True)
    assert kept == [1] and x.shape == (1, 1, 4, 4) and np.all(x == 255)
    assert why[0][0] == 0 and "bad.png" in why[0][1]
    x, kept, why = load_batch([str(bad)], load, skip_bad=True)
    assert x is None and kept == []
