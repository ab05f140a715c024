"""Model-level figures: metrics by block and role, and the singular-value curves by role."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis.schema import ALPHA_BAND
from ._mpl import new_figure

ROLE_COLORS = {"q": "#1f77b4", "k": "#ff7f0e", "v": "#2ca02c", "o": "#d62728", "gate": "#9467bd",
               "up": "#8c564b", "down": "#e377c2", "embed": "#7f7f7f", "head": "#bcbd22",
               "other": "#17becf"}


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    if col not in df:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)


def metrics_by_block(df: pd.DataFrame, *, metrics=("alpha", "stable_rank", "mp_spikes"),
                     figsize=None):
    """One panel per metric: value against block, one colour per role; alpha shades 2-6.

    Rows outside the blocks (block -1: embeddings, head) are drawn at x = -1.
    """
    metrics = [m for m in metrics if m in df and np.isfinite(_num(df, m)).any()] or ["alpha"]
    fig, axes = new_figure(figsize or (8.0, 2.3 * len(metrics)), nrows=len(metrics), sharex=True)
    axes = np.atleast_1d(axes)
    block = _num(df, "block")
    roles = df["role"].astype(str).to_numpy() if "role" in df else np.full(len(df), "other")
    for ax, col in zip(axes, metrics):
        y = _num(df, col)
        if col == "alpha":
            ax.axhspan(*ALPHA_BAND, color="#2ecc71", alpha=0.12, lw=0)
            bad = np.isfinite(y) & ((y < ALPHA_BAND[0]) | (y > ALPHA_BAND[1]))
            ax.scatter(block[bad], y[bad], s=60, facecolors="none", edgecolors="#c0392b", lw=1)
        for role in dict.fromkeys(roles):
            sel = (roles == role) & np.isfinite(y)
            if sel.any():
                ax.plot(block[sel], y[sel], "o", ms=3.5, alpha=0.85, label=role,
                        color=ROLE_COLORS.get(role, "#333333"))
        ax.set_ylabel(col)
        fy = y[np.isfinite(y)]
        if col in ("stable_rank", "mp_spikes") and fy.size and (fy > 0).all():
            ax.set_yscale("log")
    axes[-1].set_xlabel("block")
    axes[-1].xaxis.get_major_locator().set_params(integer=True)   # blocks are whole numbers
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        axes[0].legend(handles, labels, fontsize=7, ncol=min(len(labels), 10), frameon=False,
                       loc="lower left", bbox_to_anchor=(0, 1.0))
    return fig


def sv_curves(df: pd.DataFrame, spectra: dict, *, figsize=None, max_lines: int = 200):
    """Normalised singular values s_i / s_1 against i / M, one panel per role, colour = block."""
    from matplotlib import colormaps

    names = [n for n in df["name"] if n in spectra] if "name" in df else []
    meta = df.set_index("name") if names else None
    roles = list(dict.fromkeys(meta.loc[names, "role"].astype(str))) if names else []
    ncols = max(1, min(4, len(roles)))
    nrows = max(1, -(-len(roles) // ncols))
    fig, axes = new_figure(figsize or (2.4 * ncols + 0.6, 2.1 * nrows + 0.3),
                           ncols=ncols, nrows=nrows, squeeze=False)
    cmap = colormaps["viridis"]
    top = max(1.0, float(np.nanmax(_num(df, "block")))) if names else 1.0
    for ax in axes.ravel()[len(roles):]:
        ax.set_visible(False)
    for ax, role in zip(axes.ravel(), roles):
        sel = [n for n in names if str(meta.at[n, "role"]) == role]
        step = max(1, len(sel) // max_lines)            # thin out very deep models
        for n in sel[::step]:
            s = np.sort(np.asarray(spectra[n], dtype=float))[::-1]
            if s.size == 0 or not s[0] > 0:
                continue
            b = float(meta.at[n, "block"])
            ax.plot(np.linspace(0, 1, s.size), s / s[0], lw=0.8,
                    color=cmap(max(b, 0) / top) if b >= 0 else "#999999")
        ax.set_yscale("log")
        ax.set_title(role, fontsize=9)
        ax.tick_params(labelsize=7)
    if roles:
        axes[0, 0].set_ylabel("s_i / s_1")
    return fig
