"""Write and read activations tables: CSV / JSON / Parquet, or one .safetensors file holding the
rows (metadata) and every row's covariance eigenvalues (what the report draws its ESDs from).

    >>> import torch, tempfile, pathlib, eigenscope
    >>> df = eigenscope.activations(torch.nn.Linear(6, 4), torch.randn(64, 6))
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "acts.safetensors"
    >>> _ = save_activations(path, df)
    >>> back, spectra = read_activations(path)
    >>> back["name"].tolist(), len(spectra[back["name"][0]])
    (['model:residual'], 4)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .._io import atomic_write
from ..errors import EigenscopeError
from .schema import COLUMNS, TABLE_MARKER

ROWS_KEY = "eigenscope.activations"
SUFFIXES = (".csv", ".json", ".parquet", ".safetensors")


def save_activations(path, df: pd.DataFrame, spectra: dict | None = None) -> Path:
    """Write the table by suffix; .safetensors also stores the eigenvalues (df.attrs["spectra"]
    unless `spectra` is given), descending, one float64 tensor per row name."""
    from ..analysis.tables import write_table

    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise EigenscopeError(f"{path}: unknown table format; use {', '.join(SUFFIXES)}")
    if path.suffix.lower() != ".safetensors":
        return write_table(df, path)
    from safetensors.torch import save_file

    spectra = df.attrs.get("spectra", {}) if spectra is None else spectra
    tensors = {n: torch.from_numpy(np.ascontiguousarray(np.sort(np.asarray(v, np.float64))[::-1]))
               for n, v in spectra.items()}
    meta = {ROWS_KEY: df.to_json(orient="records")}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return path


def _safetensors_rows(path: Path) -> str | None:
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get(ROWS_KEY)
    except Exception:
        return None


def is_activations(source) -> bool:
    """A file written by save_activations (by its metadata or its columns)."""
    try:
        path = Path(source)
        if not path.is_file():
            return False
    except TypeError:
        return False
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _safetensors_rows(path) is not None
    if suffix == ".csv":
        with open(path, encoding="utf-8", errors="replace") as f:
            header = f.readline().strip().split(",")
        return all(c in header for c in TABLE_MARKER)
    if suffix in (".json", ".parquet"):
        try:
            cols = (pd.read_parquet(path) if suffix == ".parquet" else pd.read_json(path)).columns
        except Exception:
            return False
        return all(c in cols for c in TABLE_MARKER)
    return False


def read_activations(path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """(rows in the activations schema, {name: eigenvalues descending} or {})."""
    path = Path(path)
    if not path.is_file():
        raise EigenscopeError(f"{path}: no such file")
    if path.suffix.lower() == ".safetensors":
        rows = _safetensors_rows(path)
        if rows is None:
            raise EigenscopeError(f"{path}: not an activations file (no {ROWS_KEY} metadata)")
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            spectra = {k: f.get_tensor(k).numpy() for k in f.keys()}
        df = pd.DataFrame(json.loads(rows))
    else:
        try:
            df = {".csv": pd.read_csv, ".json": lambda p: pd.read_json(p, orient="records"),
                  ".parquet": pd.read_parquet}[path.suffix.lower()](path)
        except KeyError:
            raise EigenscopeError(f"{path}: unknown table format; use {', '.join(SUFFIXES)}") from None
        except Exception as e:
            raise EigenscopeError(f"{path}: cannot read the table ({type(e).__name__})") from None
        spectra = {}
    if not all(c in df for c in TABLE_MARKER):
        raise EigenscopeError(f"{path}: not an activations table (no {' / '.join(TABLE_MARKER)} columns)")
    df["warning"] = df["warning"].fillna("") if "warning" in df else ""
    return df.reindex(columns=COLUMNS), spectra
