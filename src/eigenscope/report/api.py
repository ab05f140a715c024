"""Public entry points of the report: `build_report` and `report_from_source`.

    >>> import torch, eigenscope
    >>> from eigenscope.report import build_report
    >>> df = eigenscope.analyze(torch.nn.Sequential(torch.nn.Linear(80, 60), torch.nn.Linear(60, 40)))
    >>> page = build_report(df, title="two layers")      # or out="report.html"
    >>> page.startswith("<!DOCTYPE html>"), "<title>two layers</title>" in page
    (True, True)
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import EigenscopeError
from .build import (MAX_IMAGES, TABLE_COLUMNS, compact_spectrum, model_figures, pick_rows,
                    row_images, rows_json)
from .page import render_page, write_page


def _spectra(spectra) -> dict:
    if spectra is None or isinstance(spectra, dict):
        return dict(spectra or {})
    from ..analysis.spectra_io import load_spectra
    return load_spectra(Path(spectra))[1]


def build_report(df: pd.DataFrame, spectra=None, *, title: str = "eigenscope report",
                 out=None, source: str = "", plots="flagged",
                 max_images: int = MAX_IMAGES) -> str:
    """The HTML report of an analysis; written atomically to `out` when given. Returns the HTML.

    spectra    -- {row name: singular values} or a spectra .safetensors file (None: table only).
    plots      -- rows with embedded matplotlib PNGs: "flagged" (default), "all", "none", or
                  names / regular expressions (list or comma-separated); at most `max_images`.
                  Every other row with a spectrum is drawn in the browser from a compact copy.
    """
    from ..plot.summary import counts, flags
    from ..validate import check

    check("report", plots=plots, max_images=max_images, title=title, out_html=out)
    if "name" not in df:
        raise EigenscopeError("the analysis has no 'name' column (not an eigenscope table?)")
    from .trajectory import is_series, trajectory_report
    if is_series(df):           # a table of several sources (analyze_many): its own view
        return trajectory_report(df, title=title, out=out, source=source)
    df = df.reset_index(drop=True)
    sv = _spectra(spectra)
    flag = flags(df)
    data = {
        "kind": "report", "title": title, "source": str(source), "counts": counts(df),
        "columns": [c for c in TABLE_COLUMNS if c in df or c == "flag"],
        "rows": rows_json(df, flag),
        "spectra": {n: compact_spectrum(s) for n, s in sv.items()},
        "images": row_images(df, sv, pick_rows(df, flag, plots, max_images)),
        "figures": model_figures(df, sv) if len(df) else [],
    }
    page = render_page(data)
    if out is not None:
        write_page(page, out)
    return page


def report_from_source(source, out, *, title: str | None = None, plots="flagged",
                       max_images: int = MAX_IMAGES, **analyze_kw) -> Path:
    """Analyse a model (or read a saved analysis) and write its report to `out`."""
    from ..hidden_states.io import is_activations
    from ..analysis.saved import load_any
    from ..validate import check

    check("report", source=source, plots=plots, max_images=max_images, title=title, out_html=out,
          sources=[source], **{k: v for k, v in analyze_kw.items() if k != "progress"})
    if is_activations(source):                 # an activations table: its own page
        from .activations_view import activations_report_from_file
        return activations_report_from_file(source, out, title=title)

    df, sv, desc = load_any(source, **analyze_kw)
    build_report(df, sv, title=title or f"eigenscope report: {Path(str(desc)).name}", out=out,
                 source=desc, plots=plots, max_images=max_images)
    return Path(out)
