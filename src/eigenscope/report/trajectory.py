"""The trajectory view of a table of several sources (`analyze_many`): metrics by step per role,
the matrices that moved most between the first and the last step, and each source's table
behind a selector (assets/trajectory.js, on top of the report's table script)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.schema import ALPHA_BAND, GOOD_STATUSES
from .build import TABLE_COLUMNS, rows_json
from .page import render_page, write_page

TRAJECTORY_METRICS = ("alpha", "stable_rank", "spectral_norm", "mp_spikes")
MOVED_COLUMNS = ["name", "block", "role", "alpha_a", "alpha_b", "d_alpha", "d_stable_rank",
                 "d_spectral_norm", "d_mp_spikes"]
MOVED = 20          # rows of the "moved most" table


def is_series(df: pd.DataFrame) -> bool:
    """True for a table of several sources (a `source` column with two or more values)."""
    return "source" in df and df["source"].nunique() > 1


def trajectory_report(df: pd.DataFrame, *, title: str = "eigenscope trajectory", out=None,
                      source: str = "") -> str:
    """The page of a table of several sources; written atomically to `out` when given."""
    from ..comparison import split_series
    from ..plot._mpl import data_uri, to_png
    from ..plot.summary import flags

    series = split_series(df)
    df = pd.concat([g for _, _, g in series], ignore_index=True)
    x = _x_values(series)
    short = _short_names([s for s, _, _ in series])
    data = {
        "kind": "trajectory", "title": title, "source": source or f"{len(series)} sources",
        "counts": _counts(df, series),
        "columns": ["step", "source"] + [c for c in TABLE_COLUMNS if c in df or c == "flag"],
        "rows": rows_json(df.assign(source=df["source"].map(short)), flags(df)),
        "spectra": {}, "images": {},
        "figures": [(f"median over each role's matrices against the {x['label']} (green band: "
                     f"{ALPHA_BAND[0]:g} ≤ α ≤ {ALPHA_BAND[1]:g})",
                     data_uri(to_png(metrics_by_step(df, x), dpi=90)))],
        "series": [{"source": short[s], "path": s, "step": step, "x": x["values"][s],
                    "rows": int(len(g)), "failed": int((~g["status"].isin(GOOD_STATUSES)).sum())}
                   for s, step, g in series],
        "moved": moved_rows(series),
    }
    page = render_page(data, scripts=("trajectory.js",))
    if out is not None:
        write_page(page, out)
    return page


def _short_names(sources: list[str]) -> dict[str, str]:
    """{source: its last path component (with its folder when that is the model's file)}, or
    the whole path for every source when two short names would be the same."""
    def short(source):
        p = Path(str(source))
        return f"{p.parent.name}/{p.name}" if p.suffix and p.parent.name else p.name or str(source)

    names = {s: short(s) for s in sources}
    return names if len(set(names.values())) == len(names) else {s: str(s) for s in sources}


def _x_values(series) -> dict:
    """The x axis: the steps when every source has one, else the position in the series."""
    if all(step is not None for _, step, _ in series):
        return {"label": "step", "values": {s: step for s, step, _ in series}}
    return {"label": "source (in order)", "values": {s: i for i, (s, _, _) in enumerate(series)}}


def _counts(df, series) -> dict:
    good = df["status"].isin(GOOD_STATUSES)
    first, last = series[0][2], series[-1][2]

    def med(g):
        a = pd.to_numeric(g.loc[g["status"].isin(GOOD_STATUSES), "alpha"], errors="coerce")
        return float(a.median()) if a.notna().any() else None

    steps = [step for _, step, _ in series if step is not None]
    return {"sources": len(series),
            **({"first_step": min(steps), "last_step": max(steps)} if steps else {}),
            "matrices": int(len(df)), "bad_status": int((~good).sum()),
            "failed_sources": sum(int((g["status"] == "failed").any()) for _, _, g in series),
            "alpha_median_first": med(first), "alpha_median_last": med(last)}


def role_medians(df: pd.DataFrame, x: dict, metric: str) -> pd.DataFrame:
    """Median of `metric` per (x, role) over the usable rows: columns are roles."""
    ok = df[df["status"].isin(GOOD_STATUSES)]
    values = pd.to_numeric(ok[metric], errors="coerce") if metric in ok else pd.Series(dtype=float)
    frame = pd.DataFrame({"x": ok["source"].map(x["values"]), "role": ok["role"], "v": values})
    return frame.dropna().pivot_table(index="x", columns="role", values="v", aggfunc="median")


def metrics_by_step(df: pd.DataFrame, x: dict):
    """Four panels (alpha, stable rank, spectral norm, MP spikes): one line per role."""
    from ..plot._mpl import new_figure
    from ..plot.model import ROLE_COLORS

    fig, axes = new_figure((9.0, 5.6), ncols=2, nrows=2, sharex=True)
    for ax, metric in zip(axes.ravel(), TRAJECTORY_METRICS):
        table = role_medians(df, x, metric)
        if metric == "alpha":
            ax.axhspan(*ALPHA_BAND, color="#2ecc71", alpha=0.12, lw=0)
        for role in table.columns:
            line = table[role].dropna()
            ax.plot(line.index, line.values, "o-", ms=3, lw=1.2, label=role,
                    color=ROLE_COLORS.get(role, "#333333"))
        ax.set_title(metric, fontsize=10)
        if table.empty:
            ax.text(0.5, 0.5, "not in this table", ha="center", va="center",
                    transform=ax.transAxes, color="#6b7785")
        finite = table.to_numpy(dtype=float)
        finite = finite[np.isfinite(finite)]
        if metric != "alpha" and finite.size and (finite > 0).all() and finite.max() > 20 * finite.min():
            ax.set_yscale("log")
    for ax in axes[-1]:
        ax.set_xlabel(x["label"])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, fontsize=8, ncol=min(len(labels), 10), frameon=False,
                   loc="outside upper center")
    return fig


def moved_rows(series, n: int = MOVED) -> list[dict]:
    """The matrices whose metrics changed most from the first source to the last (|Δα| first)."""
    from ..comparison import compare_series
    from .compare_page import moved_most

    (_, _, ga), (_, _, gb) = series[0], series[-1]         # (source, step, rows)
    pair = pd.concat([ga, gb], ignore_index=True)
    frame = compare_series(pair, against="first")
    if frame.empty:
        return []
    top = moved_most(frame, n)
    frame = frame.set_index("name").loc[top].reset_index()
    return rows_json(frame[[c for c in MOVED_COLUMNS if c in frame]],
                     pd.Series("", index=frame.index))
