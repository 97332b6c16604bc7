"""Subcommands of the ``fpxint`` command line, one module each.

Each module defines ``register(subparsers)``, which adds its parser and sets
``func=<callable(args) -> int>`` as the parser default.
"""

import argparse

__all__ = ["add_model_option", "add_spec_option", "add_weights_option",
           "add_input_shape_option", "add_input_option", "positive_int", "only_with",
           "DefaultsHelp"]


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each option's default, except where there is none to show (None: the
    help text says what happens; an on/off flag or a repeatable option that starts empty)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


def only_with(args: argparse.Namespace, rules, defaults) -> None:
    """Refuse a flag given where it does not apply, then fill in the defaults.

    ``rules``: ``(dest, flag, applies, needs)``; a flag counts as given when its value is not
    None (its parser default), ``applies`` says whether it does here, ``needs`` what would
    make it. ``defaults``: dest -> the value a flag that was not given takes.
    """
    from ..errors import InputError
    for dest, flag, applies, needs in rules:
        if getattr(args, dest) is not None and not applies:
            raise InputError(f"{flag} applies only with {needs}; add {needs} or drop {flag}")
    for dest, value in defaults.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)


def add_weights_option(parser) -> None:
    """The ``--weights`` option of the commands that load a zoo model."""
    parser.add_argument("--weights", metavar="FILE",
                        help="weights for a zoo model: .npz or a PyTorch .pth state_dict")


def add_model_option(parser) -> None:
    """The required ``--model`` option: a zoo model by name or an .onnx file."""
    from ..models import model_names
    parser.add_argument("--model", required=True, metavar="NAME|FILE.onnx",
                        help=f"zoo model name ({', '.join(model_names())}) or an .onnx file")


def add_input_shape_option(parser) -> None:
    """The ``--input-shape`` option of the commands that load an .onnx file."""
    parser.add_argument("--input-shape", metavar="NxCxHxW",
                        help="input size for an .onnx file whose H/W (or C, or tokens T) "
                             "are symbolic, e.g. 1x3x224x224, or 1x12x384 (NxTxF) for a "
                             "sequence of 12 tokens (the batch N is not used)")


def add_input_option(parser) -> None:
    """The ``--input`` option of the commands that run a network on images."""
    parser.add_argument("--input", nargs="+", metavar="IMG",
                        help="image files (default: the model's built-in sample inputs)")


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
