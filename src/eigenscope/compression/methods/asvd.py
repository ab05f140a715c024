"""ASVD: activation-aware scaled SVD. s_j = (mean_t |x_jt|)^alpha; SVD of W diag(s); A <- A diag(1/s)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...maths.lowrank import truncate_scaled
from ..registry import MethodBase, register


@dataclass(frozen=True)
class ASVDConfig:
    """Activation-aware SVD (ASVD): input channels scaled by their mean |activation|^alpha.

    alpha -- exponent of the channel scale (0: plain SVD)
    """

    name: ClassVar[str] = "asvd"
    alpha: float = 0.5


def _scale(cfg, st, layer):
    mean_abs = st.require("abssum", layer) / max(st.tokens, 1)  # (n,)
    # an input channel that is never active would get scale 0 and a division by 0: floor it
    return mean_abs.clamp_min(1e-6 * float(mean_abs.max()) + 1e-12) ** cfg.alpha


@register(ASVDConfig)
class ASVD(MethodBase):
    """Handler of ASVDConfig: the spectrum is that of W diag(s)."""

    NEEDS = frozenset({"absmean"})

    @staticmethod
    def spectrum(cfg, W, st, *, layer="", state=None):
        return torch.linalg.svdvals(W.double() * _scale(cfg, st, layer))

    @staticmethod
    def factors(cfg, W, st, rank, *, layer="", state=None):
        return truncate_scaled(W, rank, right=_scale(cfg, st, layer))
