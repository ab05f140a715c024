"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""


class EigenscopeError(Exception):
    """A user-facing error: bad input, a missing file or package. Its message is one line."""


class SourceError(EigenscopeError):
    """A model source cannot be opened or read (names the file or tensor)."""
