"""Spectra of hidden activations: sites, streaming covariances, the fixed table schema.

    activations(model, inputs, *, sites=..., max_tokens=...) -> DataFrame (schema.COLUMNS)
    fit_filter(model, inputs, *, layer=..., site=...)        -> eigenscope.nn.SpectralFilter

`eigenscope.activations` names both this package and the verb: once any module in here has
been imported, Python binds the package to that attribute of `eigenscope`, hiding the lazy
export. So the package itself is callable and calling it is calling the verb:
`eigenscope.activations(model, inputs)` works either way.
"""
import sys
import types

from .filter import fit_filter
from .runner import activations
from .schema import COLUMNS, SITES

__all__ = ["activations", "fit_filter", "COLUMNS", "SITES"]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return activations(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
