"""A wheel of the repository installs (non-editable) and runs outside the source tree.

The wheel is built from a copy of the package (the checkout gets no ``build/``), installed
offline into a fresh venv whose dependencies come from the running venv through a ``.pth``
file, and its ``fpxint`` console script is run from an empty folder: every file read at run
time must come from the installed package, and every cache must land in the user cache.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "fpxint_hw"


def _run(argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)


def _check(proc: subprocess.CompletedProcess, what: str) -> str:
    assert proc.returncode == 0, (f"{what}: exit {proc.returncode}\n--- stdout\n"
                                  f"{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of pyproject.toml, README.md and fpxint_hw/."""
    if importlib.util.find_spec("setuptools") is None or importlib.util.find_spec("pip") is None:
        pytest.skip("cannot build a wheel here: setuptools or pip is not installed")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(PACKAGE, src / "fpxint_hw",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    out = tmp / "dist"
    _check(_run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                 "--no-build-isolation", "--no-index", "-w", out, src]), "pip wheel")
    (whl,) = out.glob("fpxint_hw-*.whl")
    return whl


@pytest.fixture(scope="module")
def fresh(wheel, tmp_path_factory) -> dict:
    """A new venv holding the installed wheel; its dependencies are the running venv's."""
    tmp = tmp_path_factory.mktemp("fresh")
    venv = tmp / "venv"
    _check(_run([sys.executable, "-m", "venv", "--without-pip", venv]), "venv")
    py = venv / "bin" / "python"
    _check(_run([sys.executable, "-m", "pip", "--python", py, "install", "--quiet",
                 "--no-deps", "--no-index", wheel]), "pip install")
    # Only after the install, so that pip never sees (nor touches) the dev venv's packages.
    site = Path(_check(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()"
                                       "['purelib'])"]), "purelib").strip())
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "_fpxint_test_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    work = tmp / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "FPXINT_BUILD_DIR", "FPXINT_MODELS_DIR", "VIRTUAL_ENV")}
    if "YOWASP_CACHE_DIR" not in env and importlib.util.find_spec("platformdirs"):
        import platformdirs
        # Keep YoWASP's compiled-WebAssembly cache (slow to rebuild) where it already is.
        env["YOWASP_CACHE_DIR"] = platformdirs.user_cache_dir("YoWASP", appauthor=False)
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    return {"venv": venv, "python": py, "site": site, "fpxint": venv / "bin" / "fpxint",
            "cwd": work, "env": env, "cache": tmp / "cache"}


#: The console-script runs checked below, started together (they take tens of seconds each).
COMMANDS = {
    "rtl": ("rtl", "--spec", "default", "-o", "default.v"),
    "simulate": ("simulate", "--model", "mnist-resnet", "--images", "8"),
    "verify": ("verify", "--spec", "tiny", "--random", "2", "--backend", "{backend}"),
}


@pytest.fixture(scope="module")
def runs(fresh) -> dict:
    """``fpxint`` subprocesses of :data:`COMMANDS`, run from an empty folder in parallel."""
    from fpxint_hw.flow.verilator import verilator_missing

    backend = "amaranth" if verilator_missing() else "verilator"
    procs = {}
    for name, args in COMMANDS.items():
        argv = [fresh["fpxint"], *(a.format(backend=backend) for a in args)]
        procs[name] = (argv, subprocess.Popen([str(a) for a in argv], cwd=fresh["cwd"],
                                              env=fresh["env"], stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True))
    yield {"backend": backend, "procs": procs}
    for _, proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _fpxint(runs, name: str, timeout: float = 300) -> str:
    argv, proc = runs["procs"][name]
    out, err = proc.communicate(timeout=timeout)
    return _check(subprocess.CompletedProcess(argv, proc.returncode, out, err),
                  " ".join(str(a) for a in argv[1:]))


def test_wheel_holds_every_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    data = [p.relative_to(REPO).as_posix() for p in (PACKAGE / "data").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    read_at_run_time = {"fpxint_hw/data/arrays/default.yaml", "fpxint_hw/data/sweeps/tiny.yaml",
                        "fpxint_hw/data/weights/mnist_resnet.npz",
                        "fpxint_hw/data/weights/mnist_resnet.json",
                        "fpxint_hw/data/sim/harness.cpp", "fpxint_hw/data/imagenet_classes.txt"}
    assert read_at_run_time <= set(data)
    assert [n for n in data if n not in names] == []


def test_installed_package_is_the_wheel_not_the_checkout(fresh):
    out = _check(_run([fresh["python"], "-c",
                       "import fpxint_hw, fpxint_hw.data as d; print(d.source_root()); "
                       "print(fpxint_hw.__file__); print(d.resource('arrays', 'default.yaml'))"],
                      cwd=fresh["cwd"], env=fresh["env"]), "import")
    root, *paths = out.split()
    assert root == "None"                                    # not a source checkout
    for line in paths:
        assert Path(line).resolve().is_relative_to(fresh["site"].resolve()), line
    assert fresh["fpxint"].is_file()


def test_installed_rtl(fresh, runs):
    _fpxint(runs, "rtl")
    assert "module fpxint_array" in (fresh["cwd"] / "default.v").read_text()


def test_installed_simulate(runs):
    assert "mnist-resnet" in _fpxint(runs, "simulate")


def test_installed_verify_builds_in_the_user_cache(fresh, runs):
    assert "0 tiles with mismatches" in _fpxint(runs, "verify")
    if runs["backend"] == "verilator":
        assert any((fresh["cache"] / "fpxint-hw" / "verilator").iterdir())
    assert not (fresh["site"] / "rtl").exists() and not (fresh["site"].parent / "rtl").exists()


def test_importing_errors_does_not_start_numba():
    code = ("import fpxint_hw.errors, sys; assert 'numba' not in sys.modules, 'numba'; "
            "from fpxint_hw import SeriesFormat, expand, FormatError; "
            "import os; assert os.environ['OMP_WAIT_POLICY']")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    _check(_run([sys.executable, "-c", code], cwd=REPO, env=env), "import fpxint_hw.errors")


def test_writable_folders_leave_an_installed_package_alone(monkeypatch, tmp_path):
    import fpxint_hw.data as data
    from fpxint_hw.flow import tools, verilator
    from fpxint_hw import models
    from fpxint_hw.models import models_dir

    monkeypatch.delenv("FPXINT_BUILD_DIR", raising=False)
    monkeypatch.delenv("FPXINT_MODELS_DIR", raising=False)
    assert data.source_root() == REPO
    assert tools.cache_root() == REPO / "rtl" / "build" / "cache"
    assert models_dir() == REPO / "models"
    for module in (data, models):                                   # as when installed
        monkeypatch.setattr(module, "source_root", lambda: None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert tools.cache_root() == tmp_path / "fpxint-hw" / "cache"
    assert verilator._build_root() == tmp_path / "fpxint-hw" / "verilator"
    assert models_dir() == tmp_path / "fpxint-hw" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.user_cache_dir() == Path.home() / ".cache" / "fpxint-hw"
    monkeypatch.setenv("FPXINT_BUILD_DIR", str(tmp_path / "b"))
    assert tools.cache_root() == tmp_path / "b" / "cache"


def test_shipped_names_and_unknown_names():
    from fpxint_hw.data import find_shipped, resource, resource_names
    from fpxint_hw.errors import FormatError

    assert {"default", "small", "tiny"} <= set(resource_names("arrays"))
    assert {"tiny", "mnist"} <= set(resource_names("sweeps"))
    assert find_shipped("sweeps", "tiny.yaml", "sweep") == resource("sweeps", "tiny.yaml")
    assert find_shipped("arrays", "small", "array spec") == resource("arrays", "small.yaml")
    with pytest.raises(FormatError, match=r"nope: no such sweep file, and no shipped "
                                          r"sweeps/nope\.yaml; shipped: .*mnist.*tiny"):
        find_shipped("sweeps", "nope", "sweep")
