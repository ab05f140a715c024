"""FWSVD (Hsu et al. 2022): row weights d_i = sqrt(sum_j F_ij), F = squared gradients; SVD of diag(d) W."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...maths.lowrank import truncate_scaled
from ..registry import MethodBase, register


@dataclass(frozen=True)
class FWSVDConfig:
    """Fisher-weighted SVD (FWSVD): output rows weighted by their summed squared gradients.
    Needs a model that returns a language-model loss."""

    name: ClassVar[str] = "fwsvd"


def _rows(st, layer):
    d = st.require("fisher_w", layer).sum(1).sqrt()  # (m,)
    return d.clamp_min(1e-6 * float(d.max()) + 1e-30)  # zero-gradient rows: avoid 1/0


@register(FWSVDConfig)
class FWSVD(MethodBase):
    """Handler of FWSVDConfig: the spectrum is that of diag(d) W."""

    NEEDS = frozenset({"fisher_w"})

    @staticmethod
    def spectrum(cfg, W, st, *, layer="", state=None):
        return torch.linalg.svdvals(_rows(st, layer)[:, None] * W.double())

    @staticmethod
    def factors(cfg, W, st, rank, *, layer="", state=None):
        return truncate_scaled(W, rank, left=_rows(st, layer))
