"""Errors a user can act on. The CLI prints them as one line and exits with code 2.

    >>> from eigenscope.errors import ArgumentError, EigenscopeError
    >>> issubclass(ArgumentError, EigenscopeError) and issubclass(ArgumentError, ValueError)
    True
"""


class EigenscopeError(Exception):
    """A user-facing error: bad input, a missing file or package. Its message is one line."""


class SourceError(EigenscopeError):
    """A model source cannot be opened or read (names the file or tensor)."""


class ArgumentError(EigenscopeError, ValueError):
    """An option or argument out of its allowed values (names the option). Also a ValueError,
    so code that guards a call with `except ValueError` keeps working."""
