"""Method registry (torchao style): a frozen config dataclass maps to its handler.

A new method is one file in `methods/` with a config and a handler class decorated by
`@register(Config)`; nothing else changes (no if/elif on method names).

A handler offers, for one Linear with weight W (m, n) and its calibration statistics `st`:
    needs                       -- statistics it reads: subset of {"gram", "absmean", "fisher_w", "d_out"}
    spectrum(cfg, W, st) -> s   -- values whose tail sums sum_{i>=r} s_i^2 are the loss of rank r
    factors(cfg, W, st, r)      -- (B (m, r), A (r, n)) minimising that loss
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import EigenscopeError

METHODS: dict[type, type] = {}
NAMES: dict[str, type] = {}


def register(config_cls: type):
    """Class decorator: `@register(WhitenConfig) class Whiten: ...`."""
    def deco(handler):
        METHODS[config_cls] = handler
        NAMES[config_cls.name] = config_cls
        return handler
    return deco


@dataclass
class LayerStats:
    """Calibration statistics of one Linear (all float64 sums over tokens, n = in, m = out)."""

    gram: torch.Tensor | None = None      # (n, n)  X X^T
    abssum: torch.Tensor | None = None    # (n,)    sum_t |x_t|
    tokens: int = 0
    fisher_w: torch.Tensor | None = None  # (m, n)  sum over batches of grad(W)^2
    d_out: torch.Tensor | None = None     # (m,)    sqrt(mean_t (dLoss/dy_t)^2)
    extra: dict = field(default_factory=dict)   # sequential pass: G_cc, G_oc, held-out H_*
    cache: dict = field(default_factory=dict)   # spectra by method config, reused across ratios

    def require(self, what: str, layer: str) -> torch.Tensor:
        value = getattr(self, what)
        if value is None:
            raise EigenscopeError(f"{layer}: calibration statistic {what!r} missing")
        if not torch.isfinite(value).all():
            raise EigenscopeError(f"{layer}: calibration statistic {what!r} has NaN or inf "
                                  "(the model's activations overflow on the calibration text)")
        return value


def handler_for(method) -> tuple[object, type]:
    """Accept a config instance or a method name; return (config, handler)."""
    from . import methods  # noqa: F401  (importing registers every built-in method)

    cfg = NAMES[method]() if isinstance(method, str) and method in NAMES else method
    if type(cfg) not in METHODS:
        raise EigenscopeError(f"unknown compression method {method!r}; choose from {sorted(NAMES)}")
    return cfg, METHODS[type(cfg)]
