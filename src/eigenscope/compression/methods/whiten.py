"""Whitened SVD (SVD-LLM): min ||D (W - W') X||_F; optional output Fisher weight D and
sequential error compensation (methods.md §2)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...maths.lowrank import (compensated_target, pair_error, truncate_whiten, whitened_spectrum,
                             whitening_factor)
from ..registry import register


@dataclass(frozen=True)
class WhitenConfig:
    """sequential    -- block l+1 is calibrated on the outputs of already compressed blocks
    damp          -- ridge of the compensated target, relative to trace(G_cc) / n
    blend         -- candidate weights a of W_t = a W* + (1 - a) W, chosen per matrix on the
                     held-out calibration slice (a = 0: no compensation; a = 1: plain W*).
                     Default (0.0,): re-whiten on the compressed stream's inputs only. On
                     SmolLM2-135M at ratio 0.4 the per-matrix choice among (0, 0.5, 1) raised
                     perplexity 34 -> 354: a small local pair error does not mean a small
                     model loss, so compensation is opt-in (e.g. blend=(0.0, 0.5, 1.0))
    output_fisher -- weight output channels by D = sqrt(mean (dLoss/dy)^2): losses in model-loss units,
                     comparable across matrices for global allocation. None (default): on for
                     models that return a language-model loss (causal LMs), off otherwise
    """

    name: ClassVar[str] = "whiten"
    sequential: bool = True
    damp: float = 0.05
    blend: tuple = (0.0,)
    output_fisher: bool | None = None


_FACTORS: dict[int, tuple] = {}  # id(G) -> (G, L): Linears sharing an input share one eigh


def _factor(G):
    hit = _FACTORS.get(id(G))
    if hit is None or hit[0] is not G:
        if len(_FACTORS) > 8:  # a block holds a few distinct inputs; keep memory bounded
            _FACTORS.clear()
        hit = _FACTORS[id(G)] = (G, whitening_factor(G))
    return hit[1]


def _d(cfg, st, layer):
    return st.require("d_out", layer) if cfg.output_fisher else None


@register(WhitenConfig)
class Whiten:
    needs: ClassVar[frozenset] = frozenset({"gram"})

    @staticmethod
    def spectrum(cfg, W, st, layer=""):
        G = st.require("gram", layer)
        return whitened_spectrum(W, G, _d(cfg, st, layer), L=_factor(G))

    @staticmethod
    def factors(cfg, W, st, rank, layer=""):
        """Sequential stats (extra: G_oc, G_cc, held-out H_*) switch on compensation."""
        d = _d(cfg, st, layer)
        ex = st.extra
        if not ex:
            G = st.require("gram", layer)
            B, A, _ = truncate_whiten(W, G, rank, d_out=d, L=_factor(G))
            return B, A
        # without a held-out slice a blend cannot be chosen honestly: take the middle candidate
        blends = cfg.blend if "H_oo" in ex else (sorted(cfg.blend)[len(cfg.blend) // 2],)
        target = W.double()
        if any(a != 0 for a in blends):  # W* costs a solve; skip it when no candidate uses it
            target = compensated_target(W, ex["G_oc"], ex["G_cc"], damp=cfg.damp)
        best = None
        for a in blends:
            B, A, _ = truncate_whiten(a * target + (1 - a) * W.double(), ex["G_cc"], rank, d_out=d,
                                      L=_factor(ex["G_cc"]))
            Dw = W.double() if d is None else d.double()[:, None] * W.double()
            DWc = B @ A if d is None else d.double()[:, None] * (B @ A)
            err = pair_error(Dw, DWc, ex["H_oo"], ex["H_oc"], ex["H_cc"]) if len(blends) > 1 else 0.0
            if best is None or err < best[0]:
                best = (err, B, A, a)
        st.extra["chosen_blend"] = best[3]
        return best[1], best[2]
