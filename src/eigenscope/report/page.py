"""Fill the HTML template with the page data (JSON) and write it atomically."""
from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

from .._io import atomic_write
from .build import asset, facts


def _finite(x):
    """NaN / inf are not JSON: they become null (the page shows them as '–')."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


# Characters escaped inside the page's JSON: every "<" (so neither "</script" nor "<!--" can end
# or re-open the element: "<!--<script>" in a tensor name once made the rest of the page
# vanish), ">" and "&" for good measure, and the line separators older parsers choke on. Each
# becomes its \uXXXX escape, which JSON.parse reads back as the same character.
_SCRIPT_ESCAPES = {c: f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029"}
_SCRIPT_UNSAFE = re.compile("[<>&\u2028\u2029]")


def _script_json(data) -> str:
    """JSON to embed in <script type="application/json">, with no "<" left in it."""
    text = json.dumps(_finite(data), separators=(",", ":"), allow_nan=False)
    return _SCRIPT_UNSAFE.sub(lambda m: _SCRIPT_ESCAPES[m.group(0)], text)


def render_page(data: dict, *, scripts: tuple[str, ...] = ()) -> str:
    """The whole page: template + inline CSS + inline JS + data. Nothing is fetched.

    scripts -- further assets run after report.js (a page's own view, e.g. trajectory.js).
    """
    data = {**data, "facts": facts()}
    js = "\n".join(asset(name) for name in ("report.js", *scripts))
    values = {"CSS": asset("report.css"), "JS": js,
              "TITLE": html.escape(data.get("title", "eigenscope report")), "DATA": _script_json(data)}
    # one pass over the template only: text inserted for one placeholder is never re-scanned
    page = re.sub(r"\{\{(CSS|JS|TITLE|DATA)\}\}", lambda m: values[m.group(1)], asset("template.html"))
    return page


def write_page(text: str, out) -> Path:
    """Write a page atomically to `out`."""
    out = Path(out)
    atomic_write(out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return out
