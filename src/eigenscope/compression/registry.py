"""The method contract (torchao style): a frozen config dataclass maps to its handler.

A new method is one file in `methods/` (every module there is imported, so it registers itself):
a frozen config dataclass with a ClassVar `name`, and a handler class implementing `Method`,
decorated by `@register(Config)`. The generic code only ever asks the handler; it never reads a
config's fields. `register` refuses a config or a name that is already taken.

A handler offers, for one matrix W (m, n) and its calibration statistics `st`:
    needs(cfg)        -- statistics it reads: a subset of STATISTICS
    prepare(cfg, model) -> cfg -- automatic options resolved against the model (before `needs`)
    sequential(cfg)   -- calibrate block l+1 on the outputs of the already compressed blocks
    loss_units(cfg)   -- spectra of different matrices share a unit (the model's loss), so the
                         global allocation compares them raw instead of normalising each
    spectrum(cfg, W, st, layer=, state=) -> s  -- values whose tail sums sum_{i>=r} s_i^2 are
                         the loss of keeping rank r
    factors(cfg, W, st, rank, layer=, state=) -> (B (m, r), A (r, n)) minimising that loss
`state` is the `CallState` of one compress call: caches shared between its layers and the
notes a method leaves for the plan; it is dropped when the call returns.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import ClassVar, Protocol

import torch

from ..errors import ArgumentError, EigenscopeError
from ..maths.lowrank import whitening_factor

# statistic name -> what it is (gathered by compression/hooks.py during the pipeline's passes)
STATISTICS = {
    "gram": "X X^T of the layer's inputs over calibration tokens (n, n)",
    "absmean": "sum over tokens of |x| per input channel (n,)",
    "fisher_w": "sum over batches of the squared weight gradient (m, n)",
    "d_out": "sqrt(mean over tokens of (dLoss/dy)^2) per output channel (m,)",
}


class Method(Protocol):
    """What a compression method offers the generic code (see the module docstring)."""

    def needs(self, cfg) -> frozenset:
        """Statistics the method reads for `cfg`: a subset of STATISTICS."""

    def prepare(self, cfg, model):
        """`cfg` with its automatic options resolved against `model` (called before `needs`)."""

    def sequential(self, cfg) -> bool:
        """Whether block l+1 is calibrated on the outputs of the already compressed blocks."""

    def loss_units(self, cfg) -> bool:
        """Whether spectra of different matrices share one unit (the model's loss)."""

    def spectrum(self, cfg, W, st, *, layer: str = "", state=None) -> torch.Tensor:
        """Values s (descending) whose tail sums sum_{i>=r} s_i^2 are the loss of rank r."""

    def factors(self, cfg, W, st, rank: int, *, layer: str = "", state=None):
        """(B (m, r), A (r, n)) minimising the method's loss at rank r, float64."""


class MethodBase(Method):
    """Defaults of the Method protocol: NEEDS as declared, nothing to prepare, one pass,
    normalised losses. A handler subclasses it and implements `spectrum` and `factors`."""

    NEEDS: ClassVar[frozenset] = frozenset()

    @classmethod
    def needs(cls, cfg) -> frozenset:
        return cls.NEEDS

    @staticmethod
    def prepare(cfg, model):
        return cfg

    @staticmethod
    def sequential(cfg) -> bool:
        return False

    @staticmethod
    def loss_units(cfg) -> bool:
        return False


METHODS: dict[type, Method] = {}          # config class -> handler
NAMES: dict[str, tuple[type, dict]] = {}  # method name -> (config class, preset fields)
_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")


def register(config_cls: type, *, presets: dict[str, dict] | None = None):
    """Class decorator: `@register(WhitenConfig, presets={"whiten-fisher": {...}}) class Whiten`.

    Registers `config_cls.name` (the config's defaults) and each preset name (the config with
    those fields set). Refuses a config class or a name registered before, and bad names.
    """
    names = {config_cls.name: {}, **(presets or {})}

    def deco(handler):
        if config_cls in METHODS:
            raise ArgumentError(f"{config_cls.__name__} is already registered")
        for n in names:
            if not isinstance(n, str) or not _NAME.match(n):
                raise ArgumentError(f"method name {n!r}: lowercase words joined by '-'")
            if n in NAMES:
                raise ArgumentError(f"method name {n!r} is already registered")
        METHODS[config_cls] = handler
        NAMES.update({n: (config_cls, dict(kw)) for n, kw in names.items()})
        return handler
    return deco


def lookup(method) -> tuple[object, Method]:
    """(config, handler) of a registered name or a config instance."""
    if isinstance(method, str):
        if method not in NAMES:
            raise ArgumentError(f"unknown compression method {method!r}; choose from "
                                f"{', '.join(sorted(NAMES))}")
        cls, kw = NAMES[method]
        return cls(**kw), METHODS[cls]
    if type(method) not in METHODS:
        raise ArgumentError(f"unknown compression method {method!r}; give a name "
                            f"({', '.join(sorted(NAMES))}) or a registered config")
    return method, METHODS[type(method)]


def summary_line(name: str) -> str:
    """The first line of a registered method's config docstring (CLI help, docs)."""
    cls, kw = NAMES[name]
    doc = (cls.__doc__ or "").strip().splitlines()
    text = (doc[0] if doc else cls.__name__).rstrip(".")
    return text + (f" [{', '.join(f'{k}={v}' for k, v in kw.items())}]" if kw else "")


@dataclass
class PairStats:
    """Sequential calibration's cross products: X_o (original stream) and X_c (compressed
    stream) inputs of one Linear; g_* on the training batches, h_* on the held-out ones."""

    g_cc: torch.Tensor            # (n, n) X_c X_c^T
    g_oc: torch.Tensor            # (n, n) X_o X_c^T
    h_oo: torch.Tensor | None = None
    h_oc: torch.Tensor | None = None
    h_cc: torch.Tensor | None = None


@dataclass
class LayerStats:
    """Calibration statistics of one Linear (float64 sums over tokens, n = in, m = out)."""

    gram: torch.Tensor | None = None      # (n, n)  X X^T
    abssum: torch.Tensor | None = None    # (n,)    sum_t |x_t|
    tokens: int = 0
    fisher_w: torch.Tensor | None = None  # (m, n)  sum over batches of grad(W)^2
    d_out: torch.Tensor | None = None     # (m,)    sqrt(mean_t (dLoss/dy_t)^2)
    pair: PairStats | None = None         # sequential pass only
    stashed: dict = field(default_factory=dict)  # statistic -> spill key while out of memory

    def require(self, what: str, layer: str) -> torch.Tensor:
        """The statistic `what`, or a one-line error naming the layer when it is missing or not finite."""
        value = getattr(self, what)
        if value is None:
            raise EigenscopeError(f"{layer}: calibration statistic {what!r} missing")
        if not torch.isfinite(value).all():
            raise EigenscopeError(f"{layer}: calibration statistic {what!r} has NaN or inf "
                                  "(the model's activations overflow on the calibration text)")
        return value

    def sequential(self, pair: PairStats) -> "LayerStats":
        """These statistics with the compressed stream's Gram matrix and cross products."""
        return replace(self, gram=pair.g_cc, pair=pair, stashed={})


class CallState:
    """What one compress call shares between its layers, dropped when the call returns:
    whitening factors of Gram matrices shared by several Linears (q/k/v read one input), and
    the notes methods leave per layer (they become plan columns)."""

    def __init__(self, max_factors: int = 8):
        self._factors: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._max = max_factors
        self.notes: dict[str, dict] = {}

    def whitening(self, G: torch.Tensor) -> torch.Tensor:
        """L with L L^T = G, computed once per Gram tensor (kept while the tensor is cached)."""
        hit = self._factors.get(id(G))
        if hit is None or hit[0] is not G:
            if len(self._factors) >= self._max:  # a block holds a few distinct inputs
                self._factors.clear()
            hit = self._factors[id(G)] = (G, whitening_factor(G))
        return hit[1]

    def forget(self) -> None:
        """Drop the cached factors (and the Gram tensors they keep alive): the pipeline calls
        it when a block is done, so memory holds one block's factors, not the last few."""
        self._factors.clear()

    def note(self, layer: str, **values) -> None:
        """Record values for `layer` (they become columns of the plan)."""
        self.notes.setdefault(layer, {}).update(values)
