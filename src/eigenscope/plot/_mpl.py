"""Matplotlib with the Agg backend, figures made without pyplot's global state (thread-safe)."""
from __future__ import annotations

import base64
import io


def new_figure(figsize=(4.6, 3.2), ncols: int = 1, nrows: int = 1, squeeze: bool = True,
               layout="constrained", **kw):
    """(Figure, axes) on an Agg canvas; nothing is registered with pyplot, so nothing leaks."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **kw)
    return fig, axes


def to_png(fig, *, dpi: int = 80) -> bytes:
    """PNG bytes of a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def to_svg(fig) -> str:
    """Inline SVG text of a figure (no XML prolog)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    text = buf.getvalue()
    return text[text.find("<svg"):]                 # drop the XML prolog for inline use


def data_uri(png: bytes) -> str:
    """A data: URI embedding PNG bytes (for self-contained pages)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
