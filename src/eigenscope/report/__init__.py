"""The spectral report (one self-contained HTML file) and the comparison of two models.

    build_report(df, spectra=None, *, title=..., out=None, plots="flagged") -> HTML text
    report_from_source(source, out, ...)   analyse a model or read a saved analysis, write HTML
    compare(a, b, *, out=None, k=8)        two models/analyses side by side -> DataFrame
"""
from __future__ import annotations

from .api import build_report, report_from_source
from .compare import compare

__all__ = ["build_report", "report_from_source", "compare"]

