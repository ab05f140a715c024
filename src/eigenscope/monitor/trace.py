"""ActivationTrace: spectral descriptors of a sliding window of hidden states, token by token.

While the model reads a prompt and generates (`model.generate`, or any forward calls), each
traced site keeps the last `window` hidden states of every sequence; for every new token the
window ending at it is centred and described by maths.activations.window_descriptors: the
spectral entropy and top share of its covariance, its KS distance to the fitted MP law and
its MP spikes (the features of an EigenTrack-style detector), plus the token's norm.

    >>> import torch
    >>> from torch import nn
    >>> blocks = nn.ModuleList(nn.Sequential(nn.Linear(8, 8), nn.Tanh()) for _ in range(2))
    >>> class Tiny(nn.Module):
    ...     def __init__(self):
    ...         super().__init__(); self.blocks = blocks
    ...     def forward(self, x):
    ...         for b in self.blocks: x = b(x)
    ...         return x
    >>> model = Tiny()
    >>> with ActivationTrace(model, window=6) as tr:
    ...     _ = model(torch.randn(1, 10, 8))
    >>> df = tr.dataframe()
    >>> sorted(set(df["name"])), int(df["step"].max())
    (['blocks.0:residual', 'blocks.1:residual'], 9)

A multi-token forward call starts a new sequence (a prompt); single-token calls continue it
(generation with a KV cache). Sequences of a batch are traced independently; padding is not
masked, so trace padded prompts with batch size 1.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..hidden_states.sites import SiteHooks, find_sites
from ..errors import EigenscopeError
from ..maths.activations import window_descriptors

FEATURES = ("entropy", "top_share", "mp_ks", "mp_spikes", "norm")
MIN_WINDOW = 4          # fewer tokens leave < 3 nonzero eigenvalues: nothing to describe


class ActivationTrace:
    """Record per token, per site, the descriptors of the last `window` hidden states."""

    def __init__(self, model: nn.Module, sites=None, *, layers=None, window: int = 32,
                 prompt: bool = True):
        if not isinstance(window, int) or window < MIN_WINDOW:
            raise EigenscopeError(f"window must be an int >= {MIN_WINDOW}, not {window!r}")
        self.model, self.window, self.prompt = model, window, prompt
        self.sites = find_sites(model, sites, layers=layers)
        self.hooks = SiteHooks(self.sites, self._on_hidden)
        self.buffers: dict[str, torch.Tensor] = {}
        self.pos: dict[str, int] = {}
        self.sequence = -1
        self.new_call: set[str] = set()
        self.parts: list[dict] = []

    def __enter__(self):
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc):
        return self.hooks.__exit__(*exc)

    def reset(self) -> None:
        """Forget the rows and the windows."""
        self.buffers, self.pos, self.parts, self.sequence = {}, {}, [], -1

    def run(self, input_ids: torch.Tensor, **generate_kw) -> pd.DataFrame:
        """Trace `model.generate(input_ids, **generate_kw)`; the rows of this call."""
        start = len(self.parts)
        with self, torch.no_grad():
            self.model.generate(input_ids, **generate_kw)
        return self.dataframe(self.parts[start:])

    def dataframe(self, parts=None) -> pd.DataFrame:
        """One row per (sequence, batch item, token step, site): phase 'prompt' or 'generated'."""
        parts = self.parts if parts is None else parts
        cols = ["sequence", "batch", "step", "phase", "name", "layer", "site", *FEATURES]
        if not parts:
            return pd.DataFrame(columns=cols)
        return pd.concat([pd.DataFrame(p) for p in parts], ignore_index=True)[cols]

    def _on_hidden(self, site, h: torch.Tensor) -> None:
        h = h.detach().float().cpu()
        if h.dim() == 2:
            h = h[None]                                        # (1, T, d)
        b, t, _ = h.shape
        first = site.name not in self.pos or t > 1             # a prompt starts a new sequence
        if first:
            if site is self.sites[0]:
                self.sequence += 1
            self.buffers[site.name], self.pos[site.name] = h[:, :0], 0
        buf = torch.cat([self.buffers[site.name], h], dim=1)   # (b, past + t, d)
        past = buf.shape[1] - t
        ends = range(past, buf.shape[1]) if (self.prompt or not first) else [buf.shape[1] - 1]
        self._describe(site, buf, [e for e in ends if e + 1 >= MIN_WINDOW], first,
                       offset=self.pos[site.name] - past)   # buffer index -> token step
        self.buffers[site.name] = buf[:, -(self.window - 1):]
        self.pos[site.name] += t

    def _describe(self, site, buf: torch.Tensor, ends: list[int], prompt: bool, *,
                  offset: int) -> None:
        if not ends:
            return
        b = buf.shape[0]
        by_len: dict[int, list[int]] = {}
        for e in ends:
            by_len.setdefault(min(self.window, e + 1), []).append(e)
        for w, es in by_len.items():
            # (len(es) * b, w, d): the window ending at each e, for every batch item
            H = torch.stack([buf[:, e - w + 1:e + 1] for e in es], dim=0).flatten(0, 1)
            desc = window_descriptors(H)
            steps = np.repeat(np.asarray(es) + offset, b)
            self.parts.append({
                "sequence": self.sequence, "batch": np.tile(np.arange(b), len(es)),
                "step": steps, "phase": "prompt" if prompt else "generated", "name": site.name,
                "layer": site.layer, "site": site.site, **desc,
                "norm": H[:, -1].norm(dim=-1).double().numpy()})
