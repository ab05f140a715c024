"""Figures of an analysis (matplotlib, Agg backend). Every function returns a Figure.

    >>> import torch, eigenscope.plot as ep
    >>> fig = ep.esd(torch.randn(60, 100))          # a matrix
    >>> fig = ep.tail(torch.randn(60, 100))
    >>> type(fig).__name__
    'Figure'

`esd`/`tail` also take an analysis row (with `spectra=`, a dict or a spectra .safetensors file,
or `source=` to read the matrix), or a row name plus `source=`.
"""
from __future__ import annotations

from .inputs import resolve_spectrum
from .layer import esd_figure, tail_figure
from .model import metrics_by_block, sv_curves
from .summary import Summary

__all__ = ["esd", "tail", "metrics_by_block", "sv_curves", "Summary", "resolve_spectrum"]


def esd(x, *, source=None, spectra=None, title: str | None = None, **kw):
    """ESD histogram (log axes) with the fitted Marchenko-Pastur density and edge."""
    sv, rows, cols, row, name = resolve_spectrum(x, source=source, spectra=spectra)
    return esd_figure(sv, rows, cols, row, title=title or name, **kw)


def tail(x, *, source=None, spectra=None, title: str | None = None, **kw):
    """Log-log complementary CDF of the eigenvalues with the fitted power law and xmin."""
    sv, rows, cols, row, name = resolve_spectrum(x, source=source, spectra=spectra)
    return tail_figure(sv, rows, cols, row, title=title or name, **kw)
