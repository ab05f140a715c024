"""The comparison page: deltas table, what moved most (plots), one-sided matrices listed."""
from __future__ import annotations

import pandas as pd

from .build import compact_spectrum, rows_json
from .page import render_page, write_page


def compare_page(frame, sv_a: dict, sv_b: dict, *, out=None, movers: int = 12,
                 title: str = "eigenscope compare") -> str:
    """The comparison page: deltas table, what moved most (plots), one-sided matrices listed."""
    from ..plot._mpl import data_uri, to_png
    from ..plot.layer import sv_overlay
    from ..plot.model import metrics_by_block

    a, b = frame.attrs.get("source_a", "a"), frame.attrs.get("source_b", "b")
    labels = ("A", "B")
    top = moved_most(frame, movers) if len(frame) else []
    images = {n: [data_uri(to_png(sv_overlay(sv_a[n], sv_b[n], labels=labels, title=n), dpi=72))]
              for n in top if n in sv_a and n in sv_b}
    data = {
        "kind": "compare", "title": title, "source": f"A = {a}   B = {b}",
        "counts": _compare_counts(frame),
        "columns": [c for c in COMPARE_COLUMNS if c in frame],
        "rows": rows_json(frame, frame["name"].map(lambda n: "moved" if n in top else "")),
        "spectra": {n: {"a": compact_spectrum(sv_a[n]), "b": compact_spectrum(sv_b[n])}
                    for n in frame["name"] if n in sv_a and n in sv_b},
        "images": images,
        "figures": [("change by block: Δα, relative change, top-k left-subspace overlap",
                     data_uri(to_png(metrics_by_block(
                         frame, metrics=("d_alpha", "rel_change", "overlap_left")), dpi=90)))]
        if len(frame) else [],
        "only_a": frame.attrs.get("only_a", []), "only_b": frame.attrs.get("only_b", []),
        "moved": top,
    }
    page = render_page(data)
    if out is not None:
        write_page(page, out)
    return page


COMPARE_COLUMNS = ["name", "block", "role", "shape", "flag", "alpha_a", "alpha_b", "d_alpha",
                   "d_stable_rank", "d_spectral_norm", "d_mp_spikes", "rel_change",
                   "overlap_left", "overlap_right", "max_angle_deg"]


def _compare_counts(frame) -> dict:
    import numpy as np

    def med(col):
        v = frame[col].dropna() if col in frame else []
        return float(np.median(v)) if len(v) else None

    return {"matched": int(len(frame)), "only_in_A": len(frame.attrs.get("only_a", [])),
            "only_in_B": len(frame.attrs.get("only_b", [])), "median_d_alpha": med("d_alpha"),
            "median_rel_change": med("rel_change"), "median_overlap_left": med("overlap_left"),
            "subspace_k": frame.attrs.get("k")}


def moved_most(frame: pd.DataFrame, n: int) -> list[str]:
    """Names ordered by how much they moved: subspace turn first, then relative change, |d alpha|."""
    score = (1 - frame["overlap_left"].fillna(1)) + frame["rel_change"].fillna(0)
    if not (score > 0).any():
        score = frame["d_alpha"].abs().fillna(0)
    return frame.loc[score.sort_values(ascending=False).index[:n], "name"].tolist()
