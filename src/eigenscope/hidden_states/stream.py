"""Streaming statistics of one site's hidden states, accumulated in float64 batch by batch.

Memory is O(d^2) whatever the number of tokens: a shifted second moment (the shift c is the
first batch's mean, so that a large mean does not cancel the variance in floating point),
the sum of unit-normalised tokens (anisotropy), and running sums of the per-sequence Matrix
Entropy and Matrix Nuclear-Norm. `covariance()` is then exactly (1/n) sum (x - mu)(x - mu)^T.

    >>> import torch
    >>> st = SiteStats()
    >>> x = torch.randn(3, 10, 4)
    >>> for part in x.split(1):
    ...     st.update(part)
    >>> ref = torch.cov(x.reshape(-1, 4).double().T, correction=0)
    >>> bool(torch.allclose(st.covariance(), ref))
    True
"""
from __future__ import annotations

import torch

from ..maths.activations import matrix_entropy, matrix_nuclear_norm


class SiteStats:
    """Running sums for one site; `update(h, mask)` with h (b, T, d) or (N, d)."""

    def __init__(self, *, sequence_scores: bool = True):
        self.n = 0
        self.sequences = 0
        self.shift = self.s1 = self.s2 = self.unit = None
        self.me_sum = self.mnn_sum = 0.0
        self.sequence_scores = sequence_scores

    @property
    def dim(self) -> int:
        return 0 if self.s1 is None else int(self.s1.numel())

    def update(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add one batch. h: (b, T, d) sequences of tokens, or (N, d) single tokens (one
        'sequence' per call); mask (b, T): 1 for real tokens, 0 for padding."""
        h = h.detach().to("cpu", torch.float64)
        seqs = self._sequences(h, mask)
        x = torch.cat(seqs) if len(seqs) > 1 else seqs[0]     # (n, d) real tokens
        if x.shape[0] == 0:
            return
        if self.shift is None:
            d = x.shape[1]
            self.shift = x.mean(0)
            self.s1, self.s2, self.unit = x.new_zeros(d), x.new_zeros(d, d), x.new_zeros(d)
        xc = x - self.shift
        self.s1 += xc.sum(0)
        self.s2 += xc.T @ xc                                    # (d, d)
        norms = x.norm(dim=1, keepdim=True)
        self.unit += (x / norms.clamp_min(1e-300))[norms[:, 0] > 0].sum(0)
        self.n += x.shape[0]
        if self.sequence_scores:
            self._scores(seqs)

    @staticmethod
    def _sequences(h: torch.Tensor, mask) -> list[torch.Tensor]:
        if h.dim() == 2:
            return [h]
        h = h.reshape(-1, h.shape[-2], h.shape[-1])            # (b, T, d)
        if mask is None or tuple(mask.shape) != tuple(h.shape[:2]):
            return list(h)
        return [s[m.bool()] for s, m in zip(h, mask.to(h.device))]

    def _scores(self, seqs: list[torch.Tensor]) -> None:
        # equal lengths (no padding): one batched call; otherwise sequence by sequence
        usable = [s for s in seqs if s.shape[0] >= 2]
        if not usable:
            return
        if len({s.shape[0] for s in usable}) == 1:
            groups = [torch.stack(usable)]
        else:
            groups = [s[None] for s in usable]
        for g in groups:
            self.me_sum += float(matrix_entropy(g).nansum())
            self.mnn_sum += float(matrix_nuclear_norm(g).nansum())
            self.sequences += g.shape[0]

    def mean(self) -> torch.Tensor:
        """(d,) float64: the mean token."""
        return self.shift + self.s1 / self.n

    def covariance(self) -> torch.Tensor:
        """(d, d) float64: (1/n) sum_t (x_t - mu)(x_t - mu)^T."""
        m = self.s1 / self.n
        return self.s2 / self.n - torch.outer(m, m)

    def scores(self) -> tuple[float, float]:
        """(mean Matrix Entropy, mean Matrix Nuclear-Norm) over the sequences seen."""
        if not self.sequences:
            return float("nan"), float("nan")
        return self.me_sum / self.sequences, self.mnn_sum / self.sequences
