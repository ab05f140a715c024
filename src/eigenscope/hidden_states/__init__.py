"""Spectra of hidden activations: sites, streaming covariances, the fixed table schema.

    activations(model, inputs, *, sites=..., max_tokens=...) -> DataFrame (schema.COLUMNS)
    fit_filter(model, inputs, *, layer=..., site=...)        -> eigenscope.nn.SpectralFilter

The verb is `eigenscope.activations`; this package is named apart from it (hidden_states), so
importing a module in here never shadows the verb.
"""
from .filter import fit_filter
from .runner import activations
from .schema import COLUMNS, SITES

__all__ = ["activations", "fit_filter", "COLUMNS", "SITES"]

