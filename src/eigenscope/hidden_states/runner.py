"""`eigenscope.activations(model, inputs)`: spectra of hidden activations, one row per (layer, site).

    >>> import torch, eigenscope
    >>> mlp = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    >>> df = eigenscope.activations(mlp, torch.randn(512, 16))
    >>> df[["name", "tokens", "dim"]].values.tolist()
    [['0:residual', 512, 32], ['2:residual', 512, 8]]
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._progress import track
from ..errors import EigenscopeError
from ..inputs import DEFAULT_SEQ_LEN, call_model, model_batches, tokenizer_for
from ..maths.activations import anisotropy, covariance_metrics
from .schema import COLUMNS
from .sites import SiteHooks, find_sites
from .stream import SiteStats

DEFAULT_MAX_TOKENS = 8192


def activations(model, inputs=None, *, sites=None, layers=None, max_tokens: int = DEFAULT_MAX_TOKENS,
                tokenizer=None, seq_len: int = DEFAULT_SEQ_LEN, batch_size: int = 8,
                progress: bool = False) -> pd.DataFrame:
    """Covariance spectra of hidden states on `inputs`, one row per (layer, site) (schema.py).

    model      -- an nn.Module or a source (built-in name, HF folder, .gguf, eigenscope save)
    inputs     -- what compress calibrates on (eigenscope.inputs): None (held-out-free pydoc
                  text), text, token ids (N, T), float tensors, dicts of model inputs, a DataLoader
    sites      -- "residual" (default), "attn_out", "mlp_in", "mlp_hidden", "all", or a list
    layers     -- block indices to read (default: every block)
    max_tokens -- stop after the batch that reaches this many tokens (text: whole windows)
    The eigenvalues of each row's covariance (ascending) are in df.attrs["spectra"][name].
    """
    from ..models import load_model

    if not isinstance(model, nn.Module):
        model, tok = load_model(model)
        tokenizer = tokenizer or tok
    if not isinstance(max_tokens, int) or max_tokens < 2:
        raise EigenscopeError(f"max_tokens must be an int >= 2, not {max_tokens!r}")
    tokenizer = tokenizer or (tokenizer_for(model) if isinstance(inputs, str) or inputs is None else None)
    found = find_sites(model, sites, layers=layers)
    batches = model_batches(inputs, tokenizer=tokenizer, seq_len=seq_len, batch_size=batch_size,
                            n_seqs=max(1, math.ceil(max_tokens / seq_len)))
    stats = collect(model, batches, found, max_tokens=max_tokens, progress=progress)
    rows, spectra = [], {}
    for s in found:
        row, lam = _row(s, stats[s.name])
        rows.append(row)
        if lam is not None:
            spectra[s.name] = lam
    df = pd.DataFrame(rows).reindex(columns=COLUMNS)
    df.attrs["spectra"] = spectra
    return df


def _backbone(model: nn.Module) -> nn.Module:
    """The model without its LM head where Hugging Face exposes one: the sites all live in it,
    and the (tokens x vocabulary) logits need not be computed."""
    base = getattr(model, "base_model", None)
    return base if isinstance(base, nn.Module) and base is not model else model


def collect(model: nn.Module, batches, sites, *, max_tokens: int, progress: bool = False,
            sequence_scores: bool = True) -> dict[str, SiteStats]:
    """Run the model over `batches` with hooks on `sites`: {site name: SiteStats}."""
    stats = {s.name: SiteStats(sequence_scores=sequence_scores) for s in sites}
    state = {"mask": None}

    def add(site, h):
        stats[site.name].update(h, state["mask"])

    runner = _backbone(model)
    was_training = model.training
    model.eval()
    try:
        with SiteHooks(sites, add), torch.no_grad():
            for batch in track(batches, "activations", unit="batch", enabled=progress):
                state["mask"] = batch.get("attention_mask") if isinstance(batch, dict) else None
                call_model(runner, batch)
                if max(st.n for st in stats.values()) >= max_tokens:
                    break
    finally:
        model.train(was_training)
    return stats


def _row(site, st: SiteStats) -> tuple[dict, np.ndarray | None]:
    row = {"name": site.name, "layer": site.layer, "site": site.site, "module": site.module_name,
           "tokens": st.n, "dim": st.dim, "sequences": st.sequences, "status": "ok", "warning": ""}
    if st.n < 2:
        return row | {"status": "few_tokens", "warning": f"{st.n} token(s) seen: no covariance"}, None
    lam = torch.linalg.eigvalsh(st.covariance()).clamp_min(0.0).numpy()
    if not lam[-1] > 0:
        return row | {"status": "constant", "warning": "every token is the same vector"}, lam
    me, mnn = st.scores()
    row |= covariance_metrics(lam, st.n) | {
        "anisotropy": anisotropy(st.unit.numpy(), st.n), "matrix_entropy": me,
        "matrix_nuclear_norm": mnn}
    if st.n < st.dim:
        row["warning"] = (f"{st.n} tokens < {st.dim} dimensions: the covariance has rank < d "
                          "(MP ratio > 1); give more tokens for a full spectrum")
    return row, lam
