"""Subcommands of the ``fpxint`` command line, one module each.

Each module defines ``register(subparsers)``, which adds its parser and sets
``func=<callable(args) -> int>`` as the parser default.
"""

import argparse

__all__ = ["add_spec_option", "positive_int"]


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer >= 1 (a count), else a usage error naming it."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text[:40]!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_spec_option(parser) -> None:
    """The ``--spec`` option of the commands that build an accelerator from an ArraySpec."""
    parser.add_argument("--spec", required=True, metavar="SPEC",
                        help="array spec: a YAML file or a shipped spec's name "
                             "(e.g. default, small, tiny)")
