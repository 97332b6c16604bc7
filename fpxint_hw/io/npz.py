"""Reading and writing named arrays as ``.npz`` archives, never through pickle."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..outputs import write_npz

__all__ = ["load_arrays", "save_arrays"]


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` archive, by name, loaded with ``allow_pickle=False``.

    Raises
    ------
    InputError
        The file is missing, is not an ``.npz`` archive, holds a pickled (object) array, an
        entry whose header declares more data than the entry holds (checked before anything
        is allocated), or holds no arrays; the message names the file and the entry.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not an .npz archive (expected a zip of .npy arrays)")
    _check_headers(path)
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for name in archive.files:
                try:
                    arrays[name] = archive[name]
                except ValueError as exc:
                    if "pickle" in str(exc).lower():
                        raise InputError(f"{path}: entry {name!r} is a pickled object array; "
                                         "only plain numeric arrays are loaded") from None
                    raise InputError(f"{path}: entry {name!r} cannot be read ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"{path}: corrupt .npz archive ({exc})") from None
    if not arrays:
        raise InputError(f"{path}: the archive holds no arrays")
    return arrays


def _check_headers(path: Path) -> None:
    """Refuse an entry whose ``.npy`` header declares more bytes than the entry holds: such
    a header (corrupt, or hostile) would make numpy allocate the declared size first."""
    from numpy.lib import format as npy
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as f:
                    version = npy.read_magic(f)
                    read = (npy.read_array_header_1_0 if version == (1, 0)
                            else npy.read_array_header_2_0)
                    shape, _, dtype = read(f, max_header_size=10_000)
                    if dtype.hasobject:
                        continue                  # refused as a pickle when it is read
                    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
                    have = info.file_size - f.tell()
                    if need > have:
                        raise InputError(
                            f"{path}: entry {info.filename[:-4]!r} declares shape "
                            f"{str(shape)[:60]} of {dtype} ({need} bytes) but holds "
                            f"{have} bytes: a corrupt archive")
    except InputError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InputError(f"{path}: corrupt .npz archive ({str(exc)[:200]})") from None


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray], compress: bool = True) -> None:
    """Write named arrays to exactly ``path`` (no suffix added) as ``.npz`` (compressed by
    default) atomically, refusing objects."""
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise InputError(f"{path}: array {name!r} has dtype object; refusing to pickle it")
    write_npz(path, arrays, compress)
