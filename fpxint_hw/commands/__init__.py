"""Subcommands of the ``fpxint`` command line, one module each.

Each module defines ``register(subparsers)``, which adds its parser and sets
``func=<callable(args) -> int>`` as the parser default.
"""

__all__ = ["add_spec_option"]


def add_spec_option(parser) -> None:
    """The ``--spec`` option of the commands that build an accelerator from an ArraySpec."""
    parser.add_argument("--spec", required=True, metavar="SPEC",
                        help="array spec: a YAML file or a shipped spec's name "
                             "(e.g. default, small, tiny)")
