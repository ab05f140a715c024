"""The report page of an activations table: summary cards, metrics by depth, a sortable table,
and per row (click) the site's covariance ESD with its Marchenko-Pastur fit.

    >>> import torch, eigenscope
    >>> df = eigenscope.activations(torch.nn.Sequential(torch.nn.Linear(8, 8)), torch.randn(64, 8))
    >>> build_activations_report(df, title="acts").startswith("<!DOCTYPE html>")
    True
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .build import rows_json
from .page import render_page, write_page

MAX_ESD_IMAGES = 160        # rows with an embedded ESD (30 layers x 4 sites fit with room)
TOP_SHARE_FLAG = 0.5        # one direction holding half the variance: flagged
COLUMNS = ["name", "layer", "site", "tokens", "dim", "status", "flag", "mp_spikes",
           "effective_rank", "participation_ratio", "spectral_entropy", "top_share",
           "anisotropy", "alpha", "matrix_entropy", "matrix_nuclear_norm", "mp_sigma", "aspect"]


def flags(df: pd.DataFrame) -> pd.Series:
    """'dominant direction' where the top eigenvalue holds > TOP_SHARE_FLAG of the variance,
    'bad status' for rows that could not be described."""
    top = pd.to_numeric(df["top_share"], errors="coerce")
    out = pd.Series("", index=df.index, dtype=object)
    out[(top > TOP_SHARE_FLAG).fillna(False).to_numpy()] = "dominant direction"
    out[(df["status"].astype(str) != "ok").to_numpy()] = "bad status"
    return out


def counts(df: pd.DataFrame) -> dict:
    """The headline numbers of the page's summary cards."""
    num = lambda c: pd.to_numeric(df[c], errors="coerce")
    return {"rows": int(len(df)), "layers": int(df["layer"].nunique()),
            "sites": ", ".join(dict.fromkeys(df["site"].astype(str))),
            "tokens": int(num("tokens").max()) if len(df) else 0,
            "median_effective_rank": float(num("effective_rank").median()),
            "total_mp_spikes": float(num("mp_spikes").sum()),
            "median_matrix_entropy": float(num("matrix_entropy").median()),
            "dominant_direction": int((num("top_share") > TOP_SHARE_FLAG).sum())}


def _images(df: pd.DataFrame, spectra: dict) -> dict[str, list[str]]:
    from ..plot._mpl import data_uri, to_png
    from ..plot.activations import esd_figure

    out = {}
    for row in df.head(MAX_ESD_IMAGES).to_dict(orient="records"):
        lam = spectra.get(row["name"])
        if lam is not None and np.size(lam):
            out[row["name"]] = [data_uri(to_png(esd_figure(lam, row, title=f"ESD  {row['name']}"),
                                                dpi=72))]
    return out


def build_activations_report(df: pd.DataFrame, spectra: dict | None = None, *,
                             title: str = "eigenscope activations", out=None,
                             source: str = "") -> str:
    """The HTML page of an activations table; spectra default to df.attrs['spectra']."""
    from ..plot._mpl import data_uri, to_png
    from ..plot.activations import depth_figure

    spectra = df.attrs.get("spectra", {}) if spectra is None else spectra
    df = df.reset_index(drop=True)
    data = {"kind": "activations", "title": title, "source": str(source), "counts": counts(df),
            "columns": [c for c in COLUMNS if c in df or c == "flag"],
            "rows": rows_json(df, flags(df)), "spectra": {}, "images": _images(df, spectra),
            "figures": [("metrics by depth, one line per site", data_uri(to_png(depth_figure(df), dpi=80)))]
            if len(df) else []}
    page = render_page(data)
    if out is not None:
        write_page(page, out)
    return page


def activations_report_from_file(path, out, *, title: str | None = None) -> Path:
    """Read a saved activations table (with its eigenvalues if .safetensors) and write its page."""
    from ..hidden_states.io import read_activations

    df, spectra = read_activations(path)
    build_activations_report(df, spectra, title=title or f"eigenscope activations: {Path(path).name}",
                             out=out, source=str(path))
    return Path(out)
