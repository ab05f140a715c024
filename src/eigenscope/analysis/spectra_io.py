"""Save and load every matrix's singular values, so later steps need not compute them again.

Format: one safetensors file; one float64 tensor of singular values (descending) per row name;
metadata "eigenscope.rows" = the analysis rows as JSON, "eigenscope.source" = what was analysed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .._io import atomic_write
from .._json import loads_bounded
from ..errors import EigenscopeError
from .schema import COLUMNS

ROWS_KEY, SOURCE_KEY = "eigenscope.rows", "eigenscope.source"


def save_spectra(path, df: pd.DataFrame, spectra: dict[str, np.ndarray], *, source: str = "") -> Path:
    """Write singular values `spectra` ({row name: values, descending}) and rows, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {name: torch.from_numpy(np.ascontiguousarray(sv, dtype=np.float64))
               for name, sv in spectra.items()}
    meta = {ROWS_KEY: df.to_json(orient="records"), SOURCE_KEY: source}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return path


def load_spectra(path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """(rows, {name: singular values descending}) from a file written by `save_spectra`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise EigenscopeError(f"{path}: no such spectra file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            sv = {k: f.get_tensor(k).double().numpy().ravel() for k in f.keys()}
    except BaseException as e:  # a Rust panic is a BaseException
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise EigenscopeError(f"{path}: not a readable spectra file ({type(e).__name__})") from None
    if ROWS_KEY not in meta:
        raise EigenscopeError(f"{path}: no eigenscope rows in its metadata (not a spectra file?)")
    rows = loads_bounded(meta[ROWS_KEY], what=f"{path}: its rows", error=EigenscopeError)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise EigenscopeError(f"{path}: its rows are not a list of records (not a spectra file?)")
    return pd.DataFrame.from_records(rows).reindex(columns=COLUMNS), sv
