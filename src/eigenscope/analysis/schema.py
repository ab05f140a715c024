"""The one fixed schema of an analysis: the same columns whatever the options (NaN when skipped)."""
from __future__ import annotations

# Identity of a row: which matrix it is and where it sits in the model.
ID_COLUMNS = [
    "name",      # row name: tensor name, plus ".expert{e}" for MoE experts
    "tensor",    # stored tensor name
    "expert",    # expert index (-1 when not an MoE tensor)
    "block",     # block index parsed from the name (-1 outside the blocks)
    "role",      # q k v o gate up down embed head other
    "rows",      # m (out) of the analysed matrix
    "cols",      # n (in) of the analysed matrix
    "shape",     # stored shape as text, e.g. "576x1536"
    "dtype",     # stored dtype (before upcasting)
    "numel",     # number of entries of the analysed matrix
    "status",    # ok | nan_inf | zero | degenerate | error
    "warning",   # one-line text, empty when status is ok
]

# Metric groups: `--metrics` selects groups; each group fills exactly these columns.
METRIC_GROUPS: dict[str, list[str]] = {
    "norms": [
        "spectral_norm", "frobenius_norm", "nuclear_norm", "stable_rank", "effective_rank",
        "spectral_entropy", "numerical_rank", "log_norm", "log_spectral_norm",
    ],
    "powerlaw": ["alpha", "alpha_weighted", "log_alpha_norm", "xmin", "ks_distance", "n_tail"],
    "mp": ["mp_sigma", "mp_edge", "mp_spikes", "mp_softrank", "gd_rank"],
    "randomize": ["rand_traps", "rand_distance"],
    "farms": ["farms_alpha"],
    "weibull": ["weibull_k", "weibull_scale", "weibull_r2"],
}

METRIC_COLUMNS = [c for cols in METRIC_GROUPS.values() for c in cols]
COLUMNS = ID_COLUMNS + METRIC_COLUMNS
DEFAULT_METRICS = tuple(METRIC_GROUPS)
ROLES = ("q", "k", "v", "o", "gate", "up", "down", "embed", "head", "other")


def resolve_metrics(metrics) -> tuple[str, ...]:
    """Normalise a `metrics` option (None, a group name, or a list of names) to metric groups.

    Accepts group names and column names (a column selects its whole group).
    """
    from ..errors import EigenscopeError

    if metrics is None:
        return DEFAULT_METRICS
    if isinstance(metrics, str):
        metrics = [m for m in metrics.replace(",", " ").split() if m]
    groups = []
    for m in metrics:
        if m == "all":
            return DEFAULT_METRICS
        group = m if m in METRIC_GROUPS else next(
            (g for g, cols in METRIC_GROUPS.items() if m in cols), None)
        if group is None:
            raise EigenscopeError(
                f"unknown metric {m!r}; choose from: all, {', '.join(METRIC_GROUPS)}")
        if group not in groups:
            groups.append(group)
    # alpha_weighted etc. need the power law; the power law needs nothing else.
    return tuple(g for g in METRIC_GROUPS if g in groups)
