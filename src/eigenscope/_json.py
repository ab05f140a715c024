"""JSON from files we did not write, parsed with bounds: a size limit checked before parsing
and a nesting limit checked after (without recursion), so a crafted file can neither exhaust
memory nor overflow the stack of whatever walks the result later.

    >>> loads_bounded('{"a": [1, 2]}', what="x.json")
    {'a': [1, 2]}
    >>> loads_bounded("[" * 100 + "]" * 100, what="x.json")
    Traceback (most recent call last):
    eigenscope.errors.SourceError: x.json: JSON nested deeper than 32 levels
"""
from __future__ import annotations

import json

from .errors import SourceError

MAX_BYTES = 100_000_000   # the safetensors format's own header limit
MAX_DEPTH = 32            # Hugging Face configs nest 4 or 5 levels


def loads_bounded(text, *, what: str, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
                  error=SourceError):
    """Parse `text` (str or bytes); `error` (one line naming `what`) for anything but JSON
    within the bounds."""
    if len(text) > max_bytes:
        raise error(f"{what}: JSON of {len(text):,} bytes is larger than the {max_bytes:,} allowed")
    try:
        value = json.loads(text)
    except RecursionError:
        raise error(f"{what}: JSON nested deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise error(f"{what}: not valid JSON ({type(e).__name__}: {str(e)[:80]})") from None
    if depth(value, max_depth) > max_depth:
        raise error(f"{what}: JSON nested deeper than {max_depth} levels")
    return value


def depth(value, limit: int) -> int:
    """Nesting depth of lists and dicts (a scalar is 0), counted up to `limit` + 1."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = v.values()
        elif not isinstance(v, list):
            continue
        deepest = max(deepest, d + 1)
        if deepest > limit:
            return deepest
        stack.extend((x, d + 1) for x in v)
    return deepest


def read_json(path, *, what: str | None = None, max_bytes: int = MAX_BYTES, error=SourceError):
    """`loads_bounded` of a regular file's text; the size is checked before reading."""
    import os
    import stat

    what = what or str(path)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what}: not a regular file")
        if st.st_size > max_bytes:
            raise error(f"{what}: {st.st_size:,} bytes is larger than the {max_bytes:,} allowed")
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise error(f"{what}: cannot read ({e.strerror or type(e).__name__})") from None
    return loads_bounded(data, what=what, max_bytes=max_bytes, error=error)
