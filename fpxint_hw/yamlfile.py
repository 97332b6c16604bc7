"""Configuration files in strict YAML: what a reader writes is what the program gets.

:func:`read_yaml` parses with ``yaml.SafeLoader`` (no code, no Python objects) and refuses,
with the file, line and what to write instead, everything that would silently mean
something else or cost without bound: a file that is not a regular file (a FIFO would block
forever) or is larger than :data:`MAX_BYTES`, text that is not UTF-8, an empty document, a
duplicate key (YAML keeps the last), anchors and aliases (``&a`` / ``*a``: an alias bomb
expands a few lines into billions of nodes), and YAML 1.1's implicit scalars that YAML 1.2
and most readers do not share: ``yes``/``no``/``on``/``off`` as booleans, ``0x10``, ``010``
(octal), ``1_000`` and ``1:30`` (base 60) as numbers. ``1e-3`` is read as YAML 1.2 reads it,
a number (YAML 1.1 makes it a string).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from .errors import FormatError

__all__ = ["read_yaml", "MAX_BYTES"]

#: The largest configuration file read, bytes.
MAX_BYTES = 1 << 20

_BOOL = re.compile(r"true|false|True|False|TRUE|FALSE")
_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")


@functools.lru_cache(maxsize=1)
def _loader():
    import yaml
    from yaml.constructor import ConstructorError

    class StrictLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                raise ConstructorError(None, None, "aliases (*name) are not allowed; write "
                                       "the value out", self.peek_event().start_mark)
            event = self.peek_event()
            if getattr(event, "anchor", None) is not None:
                raise ConstructorError(None, None, "anchors (&name) are not allowed",
                                       event.start_mark)
            return super().compose_node(parent, index)

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise ConstructorError(None, None, f"duplicate key {key!r} (YAML would "
                                           f"keep the last one silently)", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    def strict(pattern, kind, base, hint):
        def construct(loader, node):
            if node.style is None and not pattern.fullmatch(node.value):
                raise ConstructorError(None, None, f"{node.value!r} is a YAML 1.1 {kind}; "
                                       f"{hint}", node.start_mark)
            return base(loader, node)
        return construct

    SafeLoader = yaml.SafeLoader
    # YAML 1.2 reads 1e-3 as a number, YAML 1.1 (PyYAML) as the string '1e-3': read the number
    StrictLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float", re.compile(r"[-+]?[0-9]+[eE][-+]?[0-9]+\Z"),
        list("-+0123456789"))
    StrictLoader.add_constructor("tag:yaml.org,2002:bool", strict(
        _BOOL, "boolean", SafeLoader.construct_yaml_bool, "write true or false, or quote it"))
    StrictLoader.add_constructor("tag:yaml.org,2002:int", strict(
        _INT, "number", SafeLoader.construct_yaml_int, "write a plain decimal, or quote it"))
    StrictLoader.add_constructor("tag:yaml.org,2002:float", strict(
        _FLOAT, "number", SafeLoader.construct_yaml_float,
        "write a plain decimal, or quote it"))
    return StrictLoader


def read_yaml(path, what: str) -> Any:
    """The data of the strict YAML file ``path`` (see the module docstring).

    Raises
    ------
    FormatError
        Naming the file, ``what`` it should hold, and the line and reason where the text is
        at fault.
    """
    import yaml

    path = Path(path)
    try:
        if not path.exists():
            raise FormatError(f"{path}: cannot read {what}: no such file")
        if not path.is_file():
            raise FormatError(f"{path}: not a regular file; {what} must be a YAML file")
        if path.stat().st_size > MAX_BYTES:
            raise FormatError(f"{path}: {path.stat().st_size} bytes; {what} must be at most "
                              f"{MAX_BYTES} bytes")
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise FormatError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not UTF-8 text (byte {exc.start}); {what} must be a "
                          f"YAML file") from None
    try:
        data = yaml.load(text, Loader=_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        if not isinstance(exc, yaml.constructor.ConstructorError):
            reason = f"not valid YAML ({reason})"
        raise FormatError(f"{path}:{where} {reason}") from None
    if data is None:
        raise FormatError(f"{path}: the file is empty; it must hold {what}")
    return data
