"""Fit a SpectralFilter on a site's hidden states from calibration inputs.

    >>> import torch
    >>> mlp = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    >>> f = fit_filter(mlp, torch.randn(256, 8), layer=0, keep=16)
    >>> f.rank, f.handle is not None
    (16, True)
    >>> f.remove()
"""
from __future__ import annotations

import math

from torch import nn

from ..errors import EigenscopeError
from ..inputs import DEFAULT_SEQ_LEN, model_batches, tokenizer_for
from ..nn.filter import SpectralFilter
from .runner import DEFAULT_MAX_TOKENS, collect
from .sites import find_sites


def fit_filter(model: nn.Module, inputs=None, *, layer: int, site: str = "residual",
               keep="spikes", mode: str = "denoise", max_tokens: int = DEFAULT_MAX_TOKENS,
               tokenizer=None, seq_len: int = DEFAULT_SEQ_LEN, batch_size: int = 8,
               attach: bool = True) -> SpectralFilter:
    """A SpectralFilter from the covariance of (`layer`, `site`) on `inputs` (the same inputs as
    `activations`), attached to that site unless attach=False."""
    if isinstance(site, str) and "," in site:
        raise EigenscopeError("fit_filter reads one site; give one name, e.g. site='residual'")
    found = find_sites(model, site, layers=[layer])
    tokenizer = tokenizer or (tokenizer_for(model) if isinstance(inputs, str) or inputs is None else None)
    batches = model_batches(inputs, tokenizer=tokenizer, seq_len=seq_len, batch_size=batch_size,
                            n_seqs=max(1, math.ceil(max_tokens / seq_len)))
    st = collect(model, batches, found, max_tokens=max_tokens, sequence_scores=False)[found[0].name]
    if st.n < 2:
        raise EigenscopeError(f"{found[0].name}: {st.n} token(s) seen, no covariance to fit")
    f = SpectralFilter.from_covariance(st.covariance(), st.mean(), tokens=st.n, keep=keep, mode=mode)
    return f.attach(found[0].module, where=found[0].where) if attach else f
