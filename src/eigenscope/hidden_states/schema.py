"""The one fixed schema of an activations table: the same columns whatever the options.

One row per (layer, site). Metric columns are declared by their maths (maths/activations.py);
a column that cannot be computed (too few tokens, a constant site) stays NaN and `status` /
`warning` say why.
"""
from __future__ import annotations

# Where in a block hidden states are read (activations/sites.py finds the modules).
SITES = ("residual", "attn_out", "mlp_in", "mlp_hidden")
DEFAULT_SITES = ("residual",)

ID_COLUMNS = [
    "name",        # row name: "<module>:<site>", e.g. "model.layers.3:residual"
    "layer",       # block index (or Linear index in a model without repeated blocks)
    "site",        # residual | attn_out | mlp_in | mlp_hidden
    "module",      # the hooked module's name
    "tokens",      # tokens seen (n)
    "dim",         # hidden dimension (d)
    "sequences",   # sequences seen (Matrix Entropy / Nuclear-Norm are averaged over them)
    "status",      # ok | few_tokens | constant | error
    "warning",     # one line, empty when status is ok
]

METRIC_COLUMNS = [
    "aspect",               # d / n, the MP ratio
    "mp_sigma",             # MP noise level (robust, median-matched), per coordinate
    "mp_edge",              # MP upper edge sigma^2 (1 + sqrt(aspect))^2, covariance scale
    "mp_spikes",            # eigenvalues above the edge + Tracy-Widom margin
    "spectral_entropy",     # H(lam / sum lam) / ln d
    "effective_rank",       # exp(H(p)), p ~ sqrt(lam) (Roy & Vetterli)
    "participation_ratio",  # (sum lam)^2 / sum lam^2
    "top_share",            # lam_1 / sum lam
    "anisotropy",           # mean cosine between distinct (uncentred) tokens
    "alpha",                # power-law exponent of the covariance spectrum's tail
    "matrix_entropy",       # Wei et al., mean over sequences
    "matrix_nuclear_norm",  # Li et al., mean over sequences
]

COLUMNS = ID_COLUMNS + METRIC_COLUMNS
TABLE_MARKER = ("site", "matrix_entropy")    # columns that tell an activations table apart
