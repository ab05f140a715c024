"""The spectral report: one self-contained HTML file of an analysis.

    build_report(df, spectra=None, *, title=..., out=None, plots="flagged") -> HTML text
    report_from_source(source, out, ...)   analyse a model or read a saved analysis, write HTML

The comparison of two models is `eigenscope.compare` (its page is drawn here too).
"""
from __future__ import annotations

from .api import build_report, report_from_source

__all__ = ["build_report", "report_from_source"]
