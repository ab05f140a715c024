"""Turn what a notebook user has at hand into (singular values, rows, cols, row, name)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import EigenscopeError


def _sv_of(W) -> np.ndarray:
    from ..maths.spectrum import singular_values
    t = torch.as_tensor(np.asarray(W) if not isinstance(W, torch.Tensor) else W.detach())
    if t.ndim != 2:
        raise EigenscopeError(f"expected a 2-D matrix, got shape {tuple(t.shape)}")
    return singular_values(t.to(torch.float32).cpu()).numpy()


def _spectra_dict(spectra) -> dict:
    if spectra is None or isinstance(spectra, dict):
        return spectra or {}
    from ..analysis.spectra_io import load_spectra
    return load_spectra(Path(spectra))[1]


def read_matrix(name: str, source) -> tuple[torch.Tensor, object]:
    """The matrix of row `name` from a model source (only that tensor is read)."""
    from ..sources import open_source
    from ..sources.matrices import iter_matrices

    src = open_source(source)
    try:
        for meta, W in iter_matrices(src, layers=f"^{re.escape(name)}$"):
            if meta.name == name and meta.problem:
                raise EigenscopeError(f"{name}: not readable ({meta.problem[1]})")
            if meta.name == name:
                return W.clone(), meta
    finally:
        src.close()
    raise EigenscopeError(f"no matrix named {name!r} in {source!r}")


def resolve_spectrum(x, *, source=None, spectra=None):
    """(singular values, rows, cols, row dict or None, name) from a matrix, a row or a name."""
    if isinstance(x, (torch.Tensor, np.ndarray)) and np.ndim(x) == 2:
        return _sv_of(x), int(x.shape[0]), int(x.shape[1]), None, None
    if isinstance(x, (pd.Series, dict)):
        row = dict(x)
        name = str(row.get("name"))
        sv = _spectra_dict(spectra).get(name)
        if sv is None:
            if source is None:
                raise EigenscopeError(f"row {name!r}: give spectra= (dict or file) or source=")
            sv = _sv_of(read_matrix(name, source)[0])
        return np.asarray(sv, dtype=float), int(row["rows"]), int(row["cols"]), row, name
    if isinstance(x, str):
        if source is None:
            raise EigenscopeError(f"layer {x!r}: give source= to read it")
        W, meta = read_matrix(x, source)
        return _sv_of(W), meta.rows, meta.cols, None, x
    raise EigenscopeError(f"cannot plot a {type(x).__name__}: give a matrix, a row or a name")
