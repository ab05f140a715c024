"""Spectral analysis of every weight matrix: `analyze`, `summary`, and the fixed schema.

The schema's facts (COLUMNS, METRIC_GROUPS, STATUSES, GOOD_STATUSES, ALPHA_BAND) are defined in
analysis/schema.py and imported from there by every other part of eigenscope.
"""
from .schema import ALPHA_BAND, COLUMNS, GOOD_STATUSES, METRIC_GROUPS, STATUSES

__all__ = ["analyze", "summary", "COLUMNS", "METRIC_GROUPS", "STATUSES", "GOOD_STATUSES",
           "ALPHA_BAND"]


def __getattr__(name):
    if name == "analyze":
        from .runner import analyze
        return analyze
    if name == "summary":
        from .summary import summary
        return summary
    raise AttributeError(name)
