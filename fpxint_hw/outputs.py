"""Output files that lose nothing: each is written whole or not at all, and never over an
input.

:func:`atomic_path` gives a writer a temporary file beside the target and renames it over the
target only when the writer finished; a killed or failed writer leaves the previous file as
it was (and no temporary behind, unless the process itself was killed). :func:`check_paths`
refuses, before any work starts, an output that is one of the inputs, two outputs that are
one file, an output file that is a folder and an output below a file or in a folder that is
not writable.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Mapping

from .errors import InputError

__all__ = ["atomic_path", "write_text", "write_bytes", "write_npz", "check_paths"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: The permissions of a file created with open(): 0o666 less the process's umask.
_NEW_FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; when the block ends without an exception
    it replaces ``path`` in one rename (readers see the old file or the new one, never a
    part), otherwise it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private; give it the mode a plain open() would have
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else _NEW_FILE_MODE)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_npz(path: str | Path, arrays, compress: bool = True) -> None:
    """``np.savez(_compressed)`` of ``arrays`` (name -> array) to exactly ``path``,
    atomically: written through a file object, so numpy adds no ``.npz`` suffix."""
    import numpy as np
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        (np.savez_compressed if compress else np.savez)(f, **arrays)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_paths(outputs: Mapping[str, str | Path | None],
                inputs: Mapping[str, str | Path | None],
                folders: tuple[str, ...] = ()) -> None:
    """Refuse outputs that would destroy an input or each other, before the work starts.

    ``outputs`` and ``inputs`` map a flag (``--json``) to a path or None (not given);
    ``folders`` names the output flags that are folders (every other output is a file).

    Raises
    ------
    InputError
        Naming the flags and the path: an output that is an input (the same file, however
        it is spelled, links included), two outputs that are one path, an output file that
        is an existing folder, or an output below a file or in a folder not writable.
    """
    ins = {flag: Path(p) for flag, p in inputs.items() if p is not None and Path(p).exists()}
    seen: dict[Path, str] = {}
    for flag, p in outputs.items():
        if p is None:
            continue
        path = Path(p)
        for in_flag, src in ins.items():
            if flag in folders and src.is_dir():
                continue                    # figures into the folder they are drawn from
            if _same(path, src) or path.resolve() == src.resolve():
                raise InputError(f"{flag} {p}: that is the input given as {in_flag}; writing "
                                 f"there would destroy it. Choose another output path")
        key = path.resolve()
        if key in seen:
            raise InputError(f"{flag} {p}: the same path as {seen[key]}; give each output its "
                             f"own path")
        seen[key] = flag
        if flag in folders:
            if path.exists() and not path.is_dir():
                raise InputError(f"{flag} {p}: exists and is not a folder")
            continue
        if path.is_dir():
            raise InputError(f"{flag} {p}: is a folder; give a file name")
        _check_writable(flag, p, path.parent)


def _check_writable(flag: str, given, folder: Path) -> None:
    """The nearest existing folder above an output must be a writable folder (the writers
    create the missing ones below it)."""
    folder = folder.absolute()
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{flag} {given}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {given}: folder {folder} is not writable")
