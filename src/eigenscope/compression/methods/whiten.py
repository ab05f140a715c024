"""Whitened SVD (SVD-LLM): min ||D (W - W') X||_F; optional output Fisher weight D and
sequential error compensation (methods.md §2)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from ...maths.lowrank import compensated_target, pair_error, truncate_whiten, whitened_spectrum
from ...inputs import has_lm_loss
from ..registry import CallState, MethodBase, register


@dataclass(frozen=True)
class WhitenConfig:
    """Whitened SVD (SVD-LLM's optimum of ||(W - W')X||), sequential, loss-weighted on LMs.

    sequential    -- block l+1 is calibrated on the outputs of already compressed blocks
    damp          -- ridge of the compensated target, relative to trace(G_cc) / n
    blend         -- candidate weights a of W_t = a W* + (1 - a) W, chosen per matrix on the
                     held-out calibration slice (a = 0: no compensation; a = 1: plain W*).
                     Default (0.0,): re-whiten on the compressed stream's inputs only. On
                     SmolLM2-135M at ratio 0.4 the per-matrix choice among (0, 0.5, 1) raised
                     perplexity 34 -> 354: a small local pair error does not mean a small
                     model loss, so compensation is opt-in (e.g. blend=(0.0, 0.5, 1.0))
    output_fisher -- weight output channels by D = sqrt(mean (dLoss/dy)^2): losses in model-loss
                     units, comparable across matrices for global allocation. None (default):
                     on for models that return a language-model loss (causal LMs), off otherwise
    """

    name: ClassVar[str] = "whiten"
    sequential: bool = True
    damp: float = 0.05
    blend: tuple = (0.0,)
    output_fisher: bool | None = None


def _factor(W, G, state):
    """L (L L^T = G), shared by the Linears reading one input; None for a wide W, whose
    whitened problem needs no L (maths.lowrank._whitened_left)."""
    if W.shape[0] <= W.shape[1]:
        return None
    return (state or CallState()).whitening(G)


def _d(cfg, st, layer):
    return st.require("d_out", layer) if cfg.output_fisher else None


@register(WhitenConfig, presets={"whiten-fisher": {"output_fisher": True}})
class Whiten(MethodBase):
    """Handler of WhitenConfig: the spectrum is that of D W L, L L^T = G."""

    @staticmethod
    def needs(cfg) -> frozenset:
        return frozenset({"gram", "d_out"} if cfg.output_fisher else {"gram"})

    @staticmethod
    def prepare(cfg, model):
        """output_fisher=None (auto) becomes on where the model returns a language-model loss."""
        return replace(cfg, output_fisher=has_lm_loss(model)) if cfg.output_fisher is None else cfg

    @staticmethod
    def sequential(cfg) -> bool:
        return cfg.sequential

    @staticmethod
    def loss_units(cfg) -> bool:
        return bool(cfg.output_fisher)

    @staticmethod
    def spectrum(cfg, W, st, *, layer="", state=None):
        G = st.require("gram", layer)
        return whitened_spectrum(W, G, _d(cfg, st, layer), L=_factor(W, G, state))

    @staticmethod
    def factors(cfg, W, st, rank, *, layer="", state=None):
        """Sequential statistics (st.pair) switch on compensation when `blend` asks for it."""
        state = state or CallState()
        d, pair = _d(cfg, st, layer), st.pair
        if pair is None:
            G = st.require("gram", layer)
            B, A, _ = truncate_whiten(W, G, rank, d_out=d, L=_factor(W, G, state))
            return B, A
        # without a held-out slice a blend cannot be chosen honestly: take the middle candidate
        held = pair.h_oo is not None
        blends = cfg.blend if held else (sorted(cfg.blend)[len(cfg.blend) // 2],)
        B, A, a = _best_blend(cfg, W, pair, rank, d, blends, _factor(W, pair.g_cc, state))
        if len(cfg.blend) > 1:
            state.note(layer, blend=a)
        return B, A


def _best_blend(cfg, W, pair, rank, d, blends, L):
    """(B, A, a) of the blend with the least held-out pair error (the only one if just one)."""
    W = W.double()
    target = W
    if any(a != 0 for a in blends):  # W* costs a solve; skip it when no candidate uses it
        target = compensated_target(W, pair.g_oc, pair.g_cc, damp=cfg.damp)
    Dw = W if d is None else d.double()[:, None] * W
    best = None
    for a in blends:
        B, A, _ = truncate_whiten(a * target + (1 - a) * W, pair.g_cc, rank, d_out=d, L=L)
        err = 0.0
        if len(blends) > 1:
            DWc = B @ A if d is None else d.double()[:, None] * (B @ A)
            err = pair_error(Dw, DWc, pair.h_oo, pair.h_oc, pair.h_cc)
        if best is None or err < best[0]:
            best = (err, B, A, a)
    return best[1], best[2], best[3]
