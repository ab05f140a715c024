"""The output table of `analyze_many`, written as rows arrive and read back to resume.

Every write replaces the whole file atomically (a temporary file renamed into place), so a
crash at any moment leaves either the previous table or the new one, never half of one; the
rows that arrived since the last write are recomputed by `resume`.
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from ..analysis.schema import SERIES_COLUMNS
from ..errors import ArgumentError
from .tasks import FAILED, series_frame


class TableWriter:
    """Collects the rows of a run (deduplicated by source and name) and keeps `path` up to date.

    path   -- .csv, .json or .parquet (None: keep the rows in memory only)
    resume -- start from the rows already in `path` (its failed rows are dropped, to be retried)
    every  -- at least this many seconds between two rewrites while rows arrive
    """

    def __init__(self, path=None, *, resume: bool = False, every: float = 1.0):
        from ..analysis.tables import WRITERS

        self.path = Path(path) if path is not None else None
        if self.path is not None and self.path.suffix.lower() not in WRITERS:
            raise ArgumentError(f"{self.path}: unknown table format; use .csv, .json or .parquet")
        if resume and self.path is None:
            raise ArgumentError("resume needs the output table (out=...) to resume from")
        self.every, self._last, self._dirty = every, 0.0, False
        self.frames: list[pd.DataFrame] = []
        self.keys: set[tuple[str, str]] = set()
        if resume and self.path.exists():
            self._add(_previous_rows(self.path))

    def done(self) -> dict[str, set[str]]:
        """{source: row names already in the table}."""
        out: dict[str, set[str]] = {}
        for source, name in self.keys:
            out.setdefault(source, set()).add(name)
        return out

    def add(self, rows: pd.DataFrame) -> None:
        """Append a task's rows (those already present are dropped) and rewrite when due."""
        self._add(rows)
        if time.monotonic() - self._last >= self.every:
            self.flush()

    def _add(self, rows: pd.DataFrame) -> None:
        keys = list(zip(rows["source"].astype(str), rows["name"].astype(str)))
        new = [k not in self.keys for k in keys]
        if any(new):
            self.frames.append(rows[new].reset_index(drop=True) if not all(new) else rows)
            self.keys.update(k for k, n in zip(keys, new) if n)
            self._dirty = True

    def frame(self) -> pd.DataFrame:
        """Every row so far, in arrival order."""
        return series_frame(self.frames)

    def flush(self) -> None:
        """Write the rows so far (only when something changed since the last write)."""
        if self.path is not None and self._dirty:
            self.write(self.frame())

    def write(self, table: pd.DataFrame) -> None:
        """Replace the file with `table` (atomically)."""
        from ..analysis.tables import write_table

        if self.path is not None:
            write_table(table, self.path)
        self._last, self._dirty = time.monotonic(), False


def _previous_rows(path: Path) -> pd.DataFrame:
    from ..analysis.tables import read_table

    df = read_table(path)
    missing = [c for c in SERIES_COLUMNS if c not in df]
    if missing:
        raise ArgumentError(f"{path}: not a table of several sources (no {missing[0]!r} "
                            "column); resume continues a table written by analyze_many")
    df["step"] = pd.to_numeric(df["step"], errors="coerce").astype("Int64")
    df["name"] = df["name"].fillna("").astype(str)
    return df[df["status"] != FAILED].reset_index(drop=True)
