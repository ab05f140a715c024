"""Fill the HTML template with the page data (JSON) and write it atomically."""
from __future__ import annotations

import html
import json
from pathlib import Path

from .build import asset


def _script_json(data) -> str:
    # JSON inside <script>: "</" would end the element early, so escape it.
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def render_page(data: dict) -> str:
    """The whole page: template + inline CSS + inline JS + data. Nothing is fetched."""
    page = asset("template.html")
    for key, value in (("{{CSS}}", asset("report.css")), ("{{JS}}", asset("report.js")),
                       ("{{TITLE}}", html.escape(data.get("title", "eigenscope report"))),
                       ("{{DATA}}", _script_json(data))):
        page = page.replace(key, value, 1)
    return page


def write_page(text: str, out) -> Path:
    from ..analysis.spectra_io import atomic_write

    out = Path(out)
    atomic_write(out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return out
