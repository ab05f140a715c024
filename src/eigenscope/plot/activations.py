"""Figures of an activations table: one site's covariance ESD with its MP fit, metrics by depth."""
from __future__ import annotations

import math

import numpy as np

from ._mpl import new_figure


def mp_covariance_density(x, sigma: float, aspect: float):
    """Density of a covariance's nonzero eigenvalues under MP (ratio c = d / n, noise sigma):
    mp.py's law for c <= 1; for c > 1 the nonzero eigenvalues are c times those of the
    (1/d) X X^T law with ratio 1/c, so the density is rescaled (mass 1/c of the spectrum)."""
    from ..maths.mp import mp_density

    x = np.asarray(x, dtype=np.float64)
    if aspect <= 1:
        return mp_density(x, sigma, aspect)
    return mp_density(x / aspect, sigma, 1 / aspect) / aspect


def esd_figure(lam, row: dict, *, title: str = ""):
    """Histogram of the covariance eigenvalues (log bins), the fitted MP density and edge, and
    the spikes above the MP cut marked."""
    lam = np.sort(np.asarray(lam, dtype=np.float64))
    pos = lam[lam > lam.max() * 1e-12] if lam.size and lam.max() > 0 else lam[:0]
    fig, ax = new_figure((4.6, 3.0))
    if pos.size < 2:
        ax.text(0.5, 0.5, "no spectrum", ha="center", transform=ax.transAxes)
        return fig
    bins = np.geomspace(pos[0] * 0.98, pos[-1] * 1.02, 50)
    ax.hist(pos, bins=bins, density=True, color="#7aa6c2", label=f"{pos.size} eigenvalues")
    sigma, edge, aspect = (row.get(k, math.nan) for k in ("mp_sigma", "mp_edge", "aspect"))
    if all(isinstance(v, (int, float)) and math.isfinite(v) for v in (sigma, edge, aspect)):
        xs = np.geomspace(bins[0], min(bins[-1], edge * 1.01), 300)
        ax.plot(xs, mp_covariance_density(xs, sigma, aspect), color="#c0392b",
                label=f"MP σ={sigma:.3g}")
        ax.axvline(edge, color="#c0392b", ls="--", lw=1, label="MP edge")
        spikes = pos[pos > edge]
        if spikes.size:
            ax.plot(spikes, np.full(spikes.size, ax.get_ylim()[1] * 0.02 + 1e-300), "|",
                    color="#e67e22", ms=12, label=f"{int(row.get('mp_spikes', 0) or 0)} spikes")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("covariance eigenvalue")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return fig


DEPTH_PANELS = (("effective_rank", "effective rank"), ("mp_spikes", "MP spikes"),
                ("spectral_entropy", "spectral entropy"), ("matrix_entropy", "Matrix Entropy"),
                ("top_share", "top eigenvalue share"), ("anisotropy", "anisotropy (mean cos)"))


def depth_figure(df):
    """Each metric of DEPTH_PANELS against the layer, one line per site."""
    fig, axes = new_figure((10.5, 5.2), ncols=3, nrows=2)
    for ax, (col, label) in zip(axes.ravel(), DEPTH_PANELS):
        for site, part in df.groupby("site", sort=False):
            part = part.sort_values("layer")
            ax.plot(part["layer"], part[col].astype(float), marker=".", label=str(site))
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("layer", fontsize=8)
        ax.tick_params(labelsize=7)
    axes.ravel()[0].legend(fontsize=7, frameon=False)
    return fig
