"""Spectral analysis of every weight matrix: `analyze`, `summary`, and the fixed schema."""
from .schema import COLUMNS, METRIC_GROUPS

__all__ = ["analyze", "summary", "COLUMNS", "METRIC_GROUPS"]


def __getattr__(name):
    if name == "analyze":
        from .runner import analyze
        return analyze
    if name == "summary":
        from .summary import summary
        return summary
    raise AttributeError(name)
