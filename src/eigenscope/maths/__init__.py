"""Pure tensor/numpy functions: spectra, power law, Marchenko-Pastur, FARMS, Weibull, the
randomization test, subspaces and the closed forms of low-rank compression (methods.md).

The names below are public; each module's other helpers are internal.
"""
from .farms import farms_alpha
from .lowrank import truncate_svd, truncate_whiten, useful_rank, whitened_spectrum
from .mp import fit_mp, gd_rank, mp_density, mp_median
from .norms import norm_metrics
from .powerlaw import fit_powerlaw
from .randomize import randomization_test
from .spectrum import eigvals, singular_values
from .subspace import compare_matrices
from .weibull import fit_weibull

__all__ = ["eigvals", "singular_values", "norm_metrics", "fit_powerlaw", "fit_mp", "mp_density",
           "mp_median", "gd_rank", "randomization_test", "farms_alpha", "fit_weibull",
           "compare_matrices", "truncate_svd", "truncate_whiten", "whitened_spectrum",
           "useful_rank"]
