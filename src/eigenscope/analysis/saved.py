"""Saved analyses (CSV, JSON, Parquet, spectra file) and models, as `report` and `compare` read them.

Either way the result is (rows DataFrame, {name: singular values} or {}, description).
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

TABLE_SUFFIXES = (".csv", ".json", ".parquet")


def is_spectra_file(path: Path) -> bool:
    """A .safetensors file written by `--save-spectra` (rows in its metadata), not a model."""
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return False
    from safetensors import safe_open

    from .spectra_io import ROWS_KEY
    try:
        with safe_open(str(path), framework="pt") as f:
            return ROWS_KEY in (f.metadata() or {})
    except BaseException as e:  # a Rust panic is a BaseException
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        return False


def is_analysis(source) -> bool:
    """True when `source` names a saved analysis (a table file or a spectra file), not a model."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    path = Path(source)
    return (path.suffix.lower() in TABLE_SUFFIXES and path.is_file()) or is_spectra_file(path)


def load_analysis(path) -> tuple[pd.DataFrame, dict, str]:
    """(rows, spectra, source description) from a saved analysis file."""
    from .spectra_io import SOURCE_KEY, load_spectra
    from .tables import read_table

    path = Path(path)
    if is_spectra_file(path):
        df, sv = load_spectra(path)
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            src = (f.metadata() or {}).get(SOURCE_KEY, "") or str(path)
        df["warning"] = df["warning"].fillna("")
        return df, sv, src
    return read_table(path), {}, str(path)


def analyze_with_spectra(source, **analyze_kw) -> tuple[pd.DataFrame, dict, str]:
    """Run `analyze` on a model and keep every singular value."""
    from .runner import analyze

    df, sv = analyze(source, return_spectra=True, **analyze_kw)
    desc = source if isinstance(source, (str, os.PathLike)) else type(source).__name__
    return df, sv, str(desc)


def load_any(source, **analyze_kw) -> tuple[pd.DataFrame, dict, str]:
    """A saved analysis is read as is; anything else is analysed (model sources)."""
    if is_analysis(source):
        return load_analysis(source)
    return analyze_with_spectra(source, **analyze_kw)
