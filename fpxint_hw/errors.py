"""Exception types: one per kind of failure, each message naming what was wrong and where."""

__all__ = ["FpxintError", "FormatError", "WidthError", "InputError"]


class FpxintError(Exception):
    """Base of every error the toolkit raises on purpose."""


class FormatError(FpxintError, ValueError):
    """A format or spec field is out of range or of the wrong type (names field and value)."""


class WidthError(FpxintError, ValueError):
    """A configured integer width could overflow; raised before anything runs."""


class InputError(FpxintError, ValueError):
    """A user-supplied file or tensor cannot be used (names the file, entry and value)."""
