"""Plain truncated SVD: min ||W - W'||_F, no calibration."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...maths.lowrank import truncate_svd
from ..registry import MethodBase, register


@dataclass(frozen=True)
class SVDConfig:
    """Truncated SVD of W (no calibration data)."""

    name: ClassVar[str] = "svd"


@register(SVDConfig)
class SVD(MethodBase):
    """Handler of SVDConfig: the spectrum is W's singular values."""

    @staticmethod
    def spectrum(cfg, W, st, *, layer="", state=None):
        return torch.linalg.svdvals(W.double())

    @staticmethod
    def factors(cfg, W, st, rank, *, layer="", state=None):
        return truncate_svd(W, rank)
