"""Plain truncated SVD: min ||W - W'||_F, no calibration."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...maths.lowrank import truncate_svd
from ..registry import register


@dataclass(frozen=True)
class SVDConfig:
    name: ClassVar[str] = "svd"
    sequential: ClassVar[bool] = False


@register(SVDConfig)
class SVD:
    needs: ClassVar[frozenset] = frozenset()

    @staticmethod
    def spectrum(cfg, W, st, layer=""):
        return torch.linalg.svdvals(W.double())

    @staticmethod
    def factors(cfg, W, st, rank, layer=""):
        return truncate_svd(W, rank)
