"""`compare(a, b)`: two checkpoints side by side, matrix by matrix.

Rows are matched by name. An eigenscope-compressed model (written by `eigenscope.save`) is loaded
and each LowRankLinear is multiplied back (up @ down), so its rows match the original's names.
Per matched matrix: every metric of both sides and its delta (b - a); when both sides are
models (not saved tables), the relative change ||Wb - Wa||_F / ||Wa||_F and the overlap of the
top-k left and right singular subspaces (principal angles). Matrices present on one side only
are listed in `frame.attrs["only_a"]` / `["only_b"]`, never dropped silently.
"""
from __future__ import annotations

from itertools import zip_longest
from pathlib import Path

import numpy as np
import pandas as pd

from ._progress import track
from .analysis.schema import METRIC_COLUMNS

KEY_METRICS = ["alpha", "stable_rank", "spectral_norm", "mp_spikes", "effective_rank"]
SUBSPACE_COLUMNS = ["rel_change", "overlap_left", "overlap_right", "max_angle_deg"]


def compare(a, b=None, *, k: int = 8, out=None, title: str | None = None, movers: int = 12,
            against: str = "first", progress: bool = False, **analyze_kw) -> pd.DataFrame:
    """One row per matrix in both a and b; written as an HTML page to `out` when given.

    a, b    -- model sources (nn.Module, folder, .safetensors, .gguf, built-in name, compressed
               model) or saved analyses (CSV / JSON / Parquet / spectra file; then no subspaces)
    k       -- dimension of the singular subspaces compared
    movers  -- how many of the matrices that moved most get plots in the page

    Without `b`, `a` is a series and the result walks it (`compare_series`): a list of sources,
    {step: source}, or a table of several sources written by `analyze_many`; each step is
    compared with the first (`against="first"`) or with the one before (`"previous"`).
    """
    if b is None:
        if out is not None:
            from .errors import ArgumentError
            raise ArgumentError("compare of a series returns a table; its page is "
                                "`eigenscope report TABLE` on the analyze_many table")
        return compare_series(a, against=against, k=k, progress=progress, **analyze_kw)
    from .validate import check

    check("compare", source=a, reference=b, k=k, movers=movers, title=title, out_html=out,
          sources=[a, b], **analyze_kw)
    _check_readable(a), _check_readable(b)        # fail on a bad B before analysing A
    sa, sb = _side(a, progress, analyze_kw), _side(b, progress, analyze_kw)
    frame = _pair(sa, sb, k, progress)
    if out is not None:
        from .report.compare_page import compare_page
        compare_page(frame, sa["sv"], sb["sv"], out=out, movers=movers,
                     title=title or f"eigenscope compare: {Path(sa['desc']).name} vs {Path(sb['desc']).name}")
    return frame


def _pair(sa: dict, sb: dict, k: int, progress: bool) -> pd.DataFrame:
    """The comparison rows of two sides (see `_side`); subspaces when both are models."""
    frame = _join(sa["df"], sb["df"])
    if sa["matrices"] is not None and sb["matrices"] is not None and len(frame):
        sub = _subspaces(sa["matrices"], sb["matrices"], set(frame["name"]), k, progress)
        for col in SUBSPACE_COLUMNS:
            frame[col] = frame["name"].map(lambda n, c=col: sub.get(n, {}).get(c, np.nan))
    else:
        for col in SUBSPACE_COLUMNS:
            frame[col] = np.nan
    names_a, names_b = set(sa["df"]["name"]), set(sb["df"]["name"])
    frame.attrs.update(only_a=sorted(names_a - names_b), only_b=sorted(names_b - names_a),
                       source_a=sa["desc"], source_b=sb["desc"], k=k)
    return frame


def compare_series(series, *, against: str = "first", k: int = 8, progress: bool = False,
                   **analyze_kw) -> pd.DataFrame:
    """Walk a series: every step compared with the first one, or with the one before it.

    series  -- a list of sources, {step: source}, or a table of several sources (a DataFrame
               or a saved .csv / .json / .parquet written by `analyze_many`), ordered by step
               when every source has one
    against -- "first" or "previous"
    Returns the rows of every pair, with `step` / `source` (the later side) and `step_a` /
    `source_a` (the side it is compared with) in front.
    """
    from .errors import ArgumentError

    if against not in ("first", "previous"):
        raise ArgumentError(f"against={against!r}: choose 'first' or 'previous'")
    sides = _series_sides(series, progress, analyze_kw)
    if len(sides) < 2:
        raise ArgumentError(f"a series needs at least two sources; got {len(sides)}")
    frames = []
    for i in range(1, len(sides)):
        (step_a, sa), (step_b, sb) = sides[0 if against == "first" else i - 1], sides[i]
        frame = _pair(sa, sb, k, progress)
        for col, value in (("source_a", sa["desc"]), ("step_a", step_a),
                           ("source", sb["desc"]), ("step", step_b))[::-1]:
            frame.insert(0, col, value)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    for col in ("step", "step_a"):
        out[col] = pd.array(out[col], dtype="Int64")
    return out


def _series_sides(series, progress, analyze_kw) -> list[tuple]:
    """[(step or None, side)] in the series' order."""
    from .analysis.saved import is_analysis
    from .analysis.tables import read_table

    if isinstance(series, (str, Path)) and is_analysis(series) and \
            Path(series).suffix.lower() in (".csv", ".json", ".parquet"):
        series = read_table(series)
    if isinstance(series, pd.DataFrame):
        return [(step, dict(df=df, sv={}, desc=src, matrices=None))
                for src, step, df in split_series(series)]
    from .engines.many import step_of

    items = sorted(series.items()) if isinstance(series, dict) else \
        [(step_of(str(s)) if isinstance(s, (str, Path)) else None, s) for s in series]
    for _, x in items:
        _check_readable(x)
    return [(step, _side(x, progress, analyze_kw)) for step, x in items]


def split_series(df: pd.DataFrame) -> list[tuple]:
    """[(source, step or None, its rows)] of a table of several sources, by step when every
    source has one, else in the table's order."""
    if "source" not in df:
        from .errors import ArgumentError
        raise ArgumentError("not a table of several sources (no 'source' column)")
    groups = [(src, g) for src, g in df.groupby("source", sort=False)]
    steps = [pd.to_numeric(g["step"], errors="coerce").iloc[0] if "step" in g else np.nan
             for _, g in groups]
    out = [(src, None if pd.isna(s) else int(s), g.reset_index(drop=True))
           for (src, g), s in zip(groups, steps)]
    if all(step is not None for _, step, _ in out):
        out.sort(key=lambda t: t[1])
    return out


def _check_readable(x) -> None:
    from torch import nn

    from .sources import open_source
    from .analysis.saved import is_analysis
    if not isinstance(x, nn.Module) and not is_analysis(x):
        open_source(x).close()                    # headers only; raises a one-line SourceError


def _side(x, progress, analyze_kw) -> dict:
    """{'df', 'sv', 'desc', 'matrices'}: matrices is a source to read weights from, or None."""
    from .analysis.saved import analyze_with_spectra, is_analysis, load_analysis

    if is_analysis(x):
        df, sv, desc = load_analysis(x)
        return dict(df=df, sv=sv, desc=desc, matrices=None)
    model = _densified_if_compressed(x)
    df, sv, desc = analyze_with_spectra(model if model is not None else x, progress=progress,
                                        **analyze_kw)
    if model is not None:
        desc = str(x) if isinstance(x, (str, Path)) else type(x).__name__
    return dict(df=df, sv=sv, desc=desc, matrices=model if model is not None else x)


def _densified_if_compressed(x):
    """The model of an eigenscope-compressed file with every LowRankLinear multiplied back."""
    import copy

    from torch import nn

    from .nn.surgery import lowrank_types, set_module
    from .sources.formats import save_metadata

    if isinstance(x, nn.Module):
        model = x
    elif isinstance(x, (str, Path)) and save_metadata(x) is not None:
        from .compression.io import load
        model = load(x)
    else:
        return None
    low = [(n, m) for n, m in model.named_modules() if isinstance(m, lowrank_types())]
    if not low:
        return None if not isinstance(x, nn.Module) else x
    if isinstance(x, nn.Module):   # never change the caller's model
        model = copy.deepcopy(x)
    for n, m in low:
        set_module(model, n, model.get_submodule(n).to_dense())
    return model


def _join(da: pd.DataFrame, db: pd.DataFrame) -> pd.DataFrame:
    """Identity columns from a; for every metric: <m>_a, <m>_b and d_<m> = b - a."""
    ids = [c for c in ("name", "block", "role", "shape", "rows", "cols") if c in da]
    left = da[ids + [c for c in METRIC_COLUMNS if c in da]]
    right = db[["name"] + [c for c in METRIC_COLUMNS if c in db]]
    m = left.merge(right, on="name", how="inner", suffixes=("_a", "_b"))
    out = m[ids].copy()
    for c in METRIC_COLUMNS:
        ca, cb = f"{c}_a", f"{c}_b"
        if ca in m and cb in m:
            va, vb = pd.to_numeric(m[ca], errors="coerce"), pd.to_numeric(m[cb], errors="coerce")
            out[ca], out[cb], out[f"d_{c}"] = va, vb, vb - va
    return out.reset_index(drop=True)


def _subspaces(src_a, src_b, wanted: set, k: int, progress: bool) -> dict:
    from .maths.subspace import compare_matrices

    out = {}
    pairs = _paired(_named(src_a), _named(src_b), wanted)
    pairs = track(pairs, "subspaces", unit="matrix", total=len(wanted), enabled=progress)
    for name, Wa, Wb in pairs:
        out[name] = compare_matrices(Wa, Wb, k)
    return out


def _named(source):
    from .sources import open_source
    from .sources.matrices import iter_matrices

    src = open_source(source)
    try:
        for meta, W in iter_matrices(src):
            if not meta.problem:      # an unreadable tensor has a row, but no matrix to compare
                yield meta.name, W
    finally:
        src.close()


def _paired(it_a, it_b, wanted: set):
    """(name, Wa, Wb) for names in both streams; an item waits only until its partner arrives,
    so two sources listing matrices in the same order hold one matrix each at a time."""
    pend_a, pend_b = {}, {}
    for (na, Wa), (nb, Wb) in zip_longest(it_a, it_b, fillvalue=(None, None)):
        for n, W, mine, other, first in ((na, Wa, pend_a, pend_b, True), (nb, Wb, pend_b, pend_a, False)):
            if n is None or n not in wanted:
                continue
            if n in other:
                partner = other.pop(n)
                yield (n, W, partner) if first else (n, partner, W)
            else:
                mine[n] = W
