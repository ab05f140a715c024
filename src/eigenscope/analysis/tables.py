"""Write an analysis table as CSV, JSON or Parquet (by suffix), atomically."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import EigenscopeError
from .schema import COLUMNS, SERIES_COLUMNS
from .._io import atomic_write

WRITERS = {
    ".csv": lambda df, p: df.to_csv(p, index=False),
    ".json": lambda df, p: df.to_json(p, orient="records", indent=1),
    ".parquet": lambda df, p: df.to_parquet(p, index=False),
}


def write_table(df: pd.DataFrame, path) -> Path:
    """Write `df` as CSV, JSON or Parquet by the suffix of `path`, atomically."""
    path = Path(path)
    writer = WRITERS.get(path.suffix.lower())
    if writer is None:
        raise EigenscopeError(f"{path}: unknown table format; use .csv, .json or .parquet")
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise EigenscopeError("writing .parquet needs pyarrow: pip install pyarrow") from None
    atomic_write(path, lambda tmp: writer(df, tmp))
    return path


def read_table(path) -> pd.DataFrame:
    """Read a table written by `write_table` (CSV, JSON or Parquet) back into the schema (plus
    SERIES_COLUMNS when the table has them)."""
    path = Path(path)
    if not path.is_file():
        raise EigenscopeError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            df = pd.read_csv(path, keep_default_na=True)
        elif suffix == ".json":
            df = pd.read_json(path, orient="records")
        elif suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            raise EigenscopeError(f"{path}: unknown table format; use .csv, .json or .parquet")
    except EigenscopeError:
        raise
    except Exception as e:
        raise EigenscopeError(f"{path}: cannot read the table ({type(e).__name__}: {e})") from None
    df["warning"] = df.get("warning", pd.Series(dtype=str)).fillna("")
    # a many-source table keeps its source and step columns in front
    return df.reindex(columns=[c for c in SERIES_COLUMNS if c in df] + COLUMNS)
