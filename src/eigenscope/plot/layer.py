"""Per-matrix figures: the ESD with its Marchenko-Pastur fit, and the power-law tail.

Both take singular values (descending or not) plus the matrix shape; fitted parameters come from
an analysis row when one is given (so the plot shows what the table says), else they are fitted
here with the same maths the analysis uses.
"""
from __future__ import annotations

import math

import numpy as np

from ._mpl import new_figure

NAN = float("nan")


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _panel(figsize):
    """(fig, ax) of one per-matrix panel, margins fixed so that report images line up."""
    fig, ax = new_figure(figsize, layout=None)
    fig.subplots_adjust(left=0.16, right=0.97, bottom=0.16, top=0.9)
    return fig, ax


def _finish(fig, ax, xlabel: str, ylabel: str, title: str):
    _no_minor_ticks(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return fig


def _no_minor_ticks(ax) -> None:
    """Log axes spend most of their drawing time on minor ticks; a report draws hundreds."""
    from matplotlib.ticker import NullLocator
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_locator(NullLocator())


def fitted(sv, rows: int, cols: int, row=None) -> dict:
    """Power-law and MP parameters for a spectrum: the row's values where present, else fitted."""
    from ..maths.mp import fit_mp
    from ..maths.powerlaw import fit_powerlaw

    lam = np.sort(np.asarray(sv, dtype=np.float64) ** 2)
    row = {} if row is None else dict(row)
    out = {k: row.get(k, NAN) for k in ("alpha", "xmin", "n_tail", "mp_sigma", "mp_edge")}
    if not (_finite(out["alpha"]) and _finite(out["xmin"])):
        out.update({k: v for k, v in fit_powerlaw(lam).items() if k in out})
    if not (_finite(out["mp_sigma"]) and _finite(out["mp_edge"])):
        out.update({k: v for k, v in fit_mp(lam, rows, cols).items() if k in out})
    return out


def esd_figure(sv, rows: int, cols: int, row=None, *, title: str | None = None,
               figsize=(4.6, 3.2), bins: int = 60):
    """Histogram of lambda / N on log axes, the fitted MP density and its edge (1/N scale)."""
    from ..maths.mp import mp_density

    fig, ax = _panel(figsize)
    M, N = min(rows, cols), max(rows, cols)
    gamma = M / N
    lam = np.asarray(sv, dtype=np.float64) ** 2 / N          # (M,) eigenvalues of (1/N) W W^T
    lam = lam[np.isfinite(lam) & (lam > 0)]
    p = fitted(sv, rows, cols, row)
    if lam.size == 0:
        ax.text(0.5, 0.5, "no positive singular values", ha="center", transform=ax.transAxes)
        return fig
    lo, hi = lam.min(), lam.max()
    edges = np.geomspace(lo * 0.98, hi * 1.02, bins + 1) if hi > lo else np.array([lo * .9, lo * 1.1])
    ax.hist(lam, bins=edges, density=True, color="#7aa6c2", edgecolor="none", label="ESD")
    if _finite(p["mp_sigma"]):
        x = np.geomspace(edges[0], edges[-1], 400)
        dens = mp_density(x, p["mp_sigma"], gamma)
        ax.plot(x, np.where(dens > 0, dens, np.nan), color="#c0392b", lw=1.5,
                label=f"MP  σ={p['mp_sigma']:.3g}")
    if _finite(p["mp_edge"]):
        ax.axvline(p["mp_edge"], color="#c0392b", ls="--", lw=1, label="MP edge")
    ax.set_xscale("log")
    ax.set_yscale("log")
    return _finish(fig, ax, "eigenvalue λ / N", "density", title or "ESD")


def tail_figure(sv, rows: int, cols: int, row=None, *, title: str | None = None,
                figsize=(4.6, 3.2)):
    """Empirical complementary CDF of lambda on log-log axes with the fitted power law from xmin."""
    fig, ax = _panel(figsize)
    lam = np.sort(np.asarray(sv, dtype=np.float64) ** 2)
    lam = lam[np.isfinite(lam) & (lam > 0)]
    p = fitted(sv, rows, cols, row)
    if lam.size == 0:
        ax.text(0.5, 0.5, "no positive singular values", ha="center", transform=ax.transAxes)
        return fig
    ccdf = 1.0 - np.arange(lam.size) / lam.size                  # P(X >= lam_i)
    ax.loglog(lam, ccdf, ".", ms=3, color="#34495e", label="empirical CCDF")
    if _finite(p["alpha"]) and _finite(p["xmin"]):
        a, xmin = p["alpha"], p["xmin"]
        frac = float((lam >= xmin).sum()) / lam.size            # tail share of the spectrum
        x = np.geomspace(xmin, lam[-1], 100)
        ax.loglog(x, frac * (x / xmin) ** (1 - a), color="#c0392b", lw=1.5,
                  label=f"power law α={a:.2f}")
        ax.axvline(xmin, color="#e67e22", ls="--", lw=1, label=f"xmin={xmin:.3g}")
    return _finish(fig, ax, "eigenvalue λ", "P(X ≥ λ)", title or "tail")


def sv_overlay(sv_a, sv_b, *, labels=("a", "b"), title: str | None = None, figsize=(4.6, 3.2)):
    """Singular values of two versions of one matrix against their rank, log y (compare)."""
    fig, ax = _panel(figsize)
    for sv, label, color in ((sv_a, labels[0], "#34495e"), (sv_b, labels[1], "#c0392b")):
        s = np.sort(np.asarray(sv, dtype=np.float64))[::-1]
        s = s[np.isfinite(s) & (s > 0)]
        if s.size:
            ax.semilogy(np.arange(1, s.size + 1), s, lw=1.2, color=color, label=label)
    return _finish(fig, ax, "rank i", "singular value s_i", title or "singular values")
