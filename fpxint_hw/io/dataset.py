"""A user's labelled images on disk: list them, label them, and read them a batch at a time.

Two layouts, as a user already has them:

* **an image folder** (torchvision's ``ImageFolder``): one subfolder per class, searched
  recursively; class ``i`` is the ``i``-th subfolder in sorted name order, so the folder
  names must sort into the model's class order (``0`` .. ``9`` for MNIST; the 1000 WordNet
  synset ids ``n01440764`` .. ``n15075141`` for ImageNet, whose class index is the synset's
  rank in sorted order). With a class list (:func:`read_class_list`, e.g. ImageNet's synset
  list) each folder is instead looked up by name, so a few classes of ImageNet also work.
* **a labels file**: text lines ``relative/path label`` (or ``relative/path,label``), paths
  relative to the file's folder, the label a class index or, with a class list, a class name;
  blank lines and ``#`` comments are skipped, and a ``.csv`` file may start with a header.

Hidden files and folders (names starting with ``.``) are never listed; files at the top of
an image folder (a README, a labels file) are not images of any class. Every other file must
be an image by its suffix (:data:`IMAGE_SUFFIXES`): anything else is refused by name, or with
``skip_bad`` left out and reported, so that the count of scored images never changes
silently. Decoding happens only in :func:`load_batch`, one batch at a time.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError

__all__ = ["IMAGE_SUFFIXES", "Listing", "list_dataset", "list_image_folder",
           "read_labels_file", "read_class_list", "load_batch"]

#: File suffixes read as images (torchvision's ``IMG_EXTENSIONS``), compared in lower case.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

#: A WordNet synset id as ImageNet names its classes.
_SYNSET = re.compile(r"n\d{8}")

#: How many offending files an error message names before it counts the rest.
_SHOWN = 3


@dataclass(frozen=True)
class Listing:
    """The labelled images of a dataset, in listing order (class folders by name, files by
    name; or the labels file's order).

    Members
    -------
    root : Path
        The folder the relative paths start from (the image folder, or the labels file's),
        absolute.
    paths : tuple of str
        Each image's path relative to ``root``, ``/``-separated.
    labels : int64 array (N,)
        Each image's class index, ``0 <= label < classes``.
    sizes : int64 array (N,)
        Each file's size in bytes when listed (a changed file changes the listing's keys).
    source : str
        The folder or labels file given.
    class_names : tuple of str or None
        The class folders by class index (image-folder layout), else None.
    skipped : tuple of (str, str)
        Files left out while listing (``skip_bad``): path and why.
    """

    root: Path
    paths: tuple[str, ...]
    labels: np.ndarray
    sizes: np.ndarray
    source: str
    class_names: tuple[str, ...] | None = None
    skipped: tuple[tuple[str, str], ...] = ()

    def __len__(self) -> int:
        return len(self.paths)

    def file(self, i: int) -> str:
        """The path of image ``i`` as the file system takes it."""
        return os.path.join(self.root, *self.paths[i].split("/"))

    def order(self) -> np.ndarray:
        """Image indices taking the classes in turn (the first image of every class, then the
        second, ...): any prefix is a stratified subset, and every batch mixes classes."""
        from ..models import stratified_order
        return stratified_order(self.labels)

    def entries_key(self, indices: Sequence[int]) -> str:
        """A digest (hex) of the path, label and size of the images ``indices``, in that
        order: the same images give the same key wherever the folder lives."""
        h = hashlib.sha256()
        for i in indices:
            h.update(f"{self.paths[i]}\t{int(self.labels[i])}\t{int(self.sizes[i])}\n"
                     .encode("utf-8", "surrogateescape"))
        return h.hexdigest()


def read_class_list(path, classes: int) -> tuple[str, ...]:
    """The class names of a class list file, by class index: the first word of each
    non-blank line (so ImageNet's ``LOC_synset_mapping.txt``, ``n01440764 tench, ...``, and
    a plain list of synset ids both work); exactly ``classes`` distinct names.

    Raises InputError naming the file and the line for an unreadable file, a duplicate name
    or a count other than ``classes``.
    """
    text = _read_text(path, "class list")
    names, lines = [], {}
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] in lines:
            raise InputError(f"{path} line {n}: class {words[0]!r} is listed again (first on "
                             f"line {lines[words[0]]}); each class must appear once")
        lines[words[0]] = n
        names.append(words[0])
    if len(names) != classes:
        raise InputError(f"{path}: lists {len(names)} classes, the model has {classes} outputs;"
                         f" give the list of all {classes} classes in the model's output order")
    return tuple(names)


def list_dataset(path, classes: int, *, class_list: Sequence[str] | None = None,
                 skip_bad: bool = False) -> Listing:
    """An image folder (a directory) or a labels file (any other file) at ``path``, for a
    model of ``classes`` outputs: :func:`list_image_folder` or :func:`read_labels_file`."""
    p = Path(path)
    if p.is_dir():
        return list_image_folder(p, classes, class_list=class_list, skip_bad=skip_bad)
    if not p.exists():
        raise InputError(f"{path}: no such folder or labels file")
    return read_labels_file(p, classes, class_list=class_list, skip_bad=skip_bad)


def list_image_folder(root, classes: int, *, class_list: Sequence[str] | None = None,
                      skip_bad: bool = False) -> Listing:
    """The images of an image folder (module docstring) for a model of ``classes`` outputs.

    Without ``class_list`` there must be exactly ``classes`` class folders; with it, each
    class folder must be one of its names and takes that name's index.

    Raises InputError naming the folder or file: no class folders, a class folder without
    images, too few or too many class folders, a folder not in ``class_list``, a file that
    is not an image by its suffix or not a regular file (unless ``skip_bad``).
    """
    root = Path(root)
    folders = sorted(e.name for e in _scan(root) if e.is_dir() and not _hidden(e.name))
    if not folders:
        raise InputError(f"{root}: no class folders; expected one subfolder of images per "
                         f"class (as torchvision's ImageFolder) or a labels file of "
                         f"'relative/path label' lines")
    index = _class_indices(root, folders, classes, class_list)
    paths, labels, sizes, bad = [], [], [], []
    for name in folders:
        found = 0
        for rel, size, why in _walk(root, name):
            if why is not None:
                bad.append((rel, why))
                continue
            paths.append(rel)
            labels.append(index[name])
            sizes.append(size)
            found += 1
        if not found and not any(b[0].startswith(name + "/") for b in bad):
            raise InputError(f"{root / name}: a class folder without images (suffixes "
                             f"{', '.join(IMAGE_SUFFIXES)}); put its images in or remove it"
                             + ("" if class_list else ": without a class list every folder "
                                "counts in the class order"))
    _refuse_bad(root, bad, skip_bad)
    return _listing(root, paths, labels, sizes, str(root), tuple(folders), bad)


def read_labels_file(path, classes: int, *, class_list: Sequence[str] | None = None,
                     skip_bad: bool = False) -> Listing:
    """The images named by a labels file (module docstring), for a model of ``classes``
    outputs; paths are relative to the file's folder.

    Raises InputError naming the file and line: a line without a label, a label that is not a
    class index ``0 .. classes-1`` (nor a name of ``class_list``), a path listed twice, files
    that are missing, not regular files or not images by their suffix (unless ``skip_bad``:
    then they are left out and reported), or no images at all.
    """
    path = Path(path)
    text = _read_text(path, "labels file")
    root = path.parent
    by_name = {n: i for i, n in enumerate(class_list)} if class_list is not None else {}
    paths, labels, sizes, bad, seen = [], [], [], [], {}
    first = True
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "," in line:
            rel, _, label = line.rpartition(",")
        else:
            parts = line.rsplit(None, 1)
            rel, label = parts if len(parts) == 2 else ("", parts[0])
        rel, label = rel.strip(), label.strip()
        value = _label_value(label, classes, by_name)
        if first and value is None and not label.isdigit() and path.suffix.lower() == ".csv":
            first = False
            continue                                    # a CSV header: a word as label
        first = False
        if not rel:
            raise InputError(f"{path} line {n}: {line[:80]!r} has no label; expected "
                             f"'relative/path label' or 'relative/path,label'")
        if value is None:
            known = (f"a class index 0..{classes - 1}" if not by_name
                     else f"a class index 0..{classes - 1} or a name of the class list")
            raise InputError(f"{path} line {n}: label {label[:40]!r} is not {known}")
        rel = rel.replace(os.sep, "/")
        if rel in seen:
            raise InputError(f"{path} line {n}: {rel} is listed again (first on line "
                             f"{seen[rel]}); each image must be scored once")
        seen[rel] = n
        size, why = _check_file(os.path.join(root, rel))
        if why is not None:
            bad.append((rel, f"line {n}: {why}"))
            continue
        paths.append(rel)
        labels.append(value)
        sizes.append(size)
    _refuse_bad(path, bad, skip_bad)
    if not paths:
        raise InputError(f"{path}: lists no images" + (f" ({len(bad)} left out as bad)"
                                                       if bad else ""))
    return _listing(root, paths, labels, sizes, str(path), None, bad)


def load_batch(files: Sequence[str], load: Callable[[str], np.ndarray], *,
               skip_bad: bool = False):
    """Decode and preprocess one batch: ``(x, kept, bad)``.

    ``load(file)`` returns one preprocessed input (float32, the model's per-sample shape);
    ``x`` stacks those of the ``kept`` positions of ``files`` (indices into ``files``) and
    ``bad`` lists ``(position, why)`` of the files that could not be read. Without
    ``skip_bad`` the first unreadable file raises its InputError (which names it).
    """
    xs, kept, bad = [], [], []
    for pos, f in enumerate(files):
        try:
            xs.append(load(f))
        except InputError as exc:
            if not skip_bad:
                raise InputError(f"{exc}; replace or remove it (the batches before it are "
                                 f"kept), or give --skip-bad to leave unreadable images out"
                                 ) from None
            bad.append((pos, str(exc)))
            continue
        kept.append(pos)
    x = np.stack(xs).astype(np.float32, copy=False) if xs else None
    return x, kept, bad


# -- helpers -----------------------------------------------------------------------------

def _hidden(name: str) -> bool:
    return name.startswith(".")


def _scan(folder: Path):
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError as exc:
        raise InputError(f"{folder}: cannot be read ({exc.strerror or exc})") from None


def _check_file(path: str) -> tuple[int, str | None]:
    """``(size, None)`` for a regular file with an image suffix, else ``(0, why)``."""
    try:
        st = os.stat(path)
    except OSError:
        return 0, f"{path}: no such file"
    if not stat.S_ISREG(st.st_mode):
        return 0, f"{path}: not a regular file"
    if os.path.splitext(path)[1].lower() not in IMAGE_SUFFIXES:
        return 0, f"{path}: not an image file (suffix not one of {', '.join(IMAGE_SUFFIXES)})"
    return st.st_size, None


def _walk(root: Path, folder: str):
    """``(relative path, size, why or None)`` of every non-hidden file below
    ``root/folder``, sorted by path, following links to folders as ImageFolder does."""
    out = []
    for top, dirs, names in os.walk(root / folder, followlinks=True,
                                    onerror=lambda e: _raise_walk(e)):
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        rel_top = os.path.relpath(top, root).replace(os.sep, "/")
        for name in sorted(names):
            if _hidden(name):
                continue
            size, why = _check_file(os.path.join(top, name))
            out.append((f"{rel_top}/{name}", size, why))
    return sorted(out)


def _raise_walk(exc: OSError):
    raise InputError(f"{exc.filename}: cannot be read ({exc.strerror or exc})")


def _class_indices(root: Path, folders: list[str], classes: int,
                   class_list: Sequence[str] | None) -> dict[str, int]:
    if class_list is not None:
        by_name = {n: i for i, n in enumerate(class_list)}
        unknown = [f for f in folders if f not in by_name]
        if unknown:
            raise InputError(f"{root / unknown[0]}: folder name {unknown[0]!r} is not in the "
                             f"class list ({len(unknown)} of {len(folders)} folders are not); "
                             f"name each class folder as the list names its class")
        return {f: by_name[f] for f in folders}
    if len(folders) != classes:
        synsets = all(_SYNSET.fullmatch(f) for f in folders)
        hint = ("give the list of ImageNet's 1000 synset ids in class order with --synsets "
                "FILE (e.g. LOC_synset_mapping.txt of the ImageNet download), which maps each "
                "folder by name" if synsets else
                "give a labels file of 'relative/path label' lines, or --synsets FILE with "
                f"the {classes} class folder names in the model's output order")
        raise InputError(f"{root}: {len(folders)} class folders, the model has {classes} "
                         f"outputs; class i is the i-th folder by name only when every class "
                         f"has its folder. {hint[0].upper()}{hint[1:]}")
    return {f: i for i, f in enumerate(folders)}


def _refuse_bad(where, bad: list[tuple[str, str]], skip_bad: bool) -> None:
    if bad and not skip_bad:
        more = f" (and {len(bad) - _SHOWN} more)" if len(bad) > _SHOWN else ""
        raise InputError(f"{where}: {len(bad)} file(s) cannot be scored: "
                         + "; ".join(why for _, why in bad[:_SHOWN]) + more
                         + ". Remove them, or give --skip-bad to leave them out and count them")


def _label_value(text: str, classes: int, by_name: dict[str, int]) -> int | None:
    if text in by_name:
        return by_name[text]
    if text.isdigit() and text.isascii():
        value = int(text)
        return value if value < classes else None
    return None


def _read_text(path, what: str) -> str:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such {what}" if not path.exists()
                         else f"{path}: not a regular file (expected a {what})")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a UTF-8 text {what} (byte {exc.start}); expected "
                         f"text lines") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _listing(root, paths, labels, sizes, source, class_names, bad) -> Listing:
    return Listing(Path(root).absolute(), tuple(paths), np.asarray(labels, dtype=np.int64),
                   np.asarray(sizes, dtype=np.int64), source, class_names, tuple(bad))
