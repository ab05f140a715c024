"""FWSVD (Hsu et al. 2022): row weights d_i = sqrt(sum_j F_ij), F = squared gradients; SVD of diag(d) W."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...maths.lowrank import truncate_scaled
from ..registry import register


@dataclass(frozen=True)
class FWSVDConfig:
    name: ClassVar[str] = "fwsvd"
    sequential: ClassVar[bool] = False


def _rows(st, layer):
    d = st.require("fisher_w", layer).sum(1).sqrt()  # (m,)
    return d.clamp_min(1e-6 * float(d.max()) + 1e-30)  # zero-gradient rows: avoid 1/0


@register(FWSVDConfig)
class FWSVD:
    needs: ClassVar[frozenset] = frozenset({"fisher_w"})

    @staticmethod
    def spectrum(cfg, W, st, layer=""):
        return torch.linalg.svdvals(_rows(st, layer)[:, None] * W.double())

    @staticmethod
    def factors(cfg, W, st, rank, layer=""):
        return truncate_scaled(W, rank, left=_rows(st, layer))
