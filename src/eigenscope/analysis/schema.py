"""The one fixed schema of an analysis: the same columns whatever the options (NaN when skipped),
the statuses a row can have, and how a metric is read (the alpha band). Every part of eigenscope
(tables, summary, plots, the HTML report) imports these facts from here.

Metric columns are declared by the maths modules that compute them (`COLUMNS` in each); a group
here is one of those modules, so a new column is one edit in its maths module.
"""
from __future__ import annotations

from ..maths import farms, mp, norms, powerlaw, randomize, weibull

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
    "status",    # one of STATUSES
    "warning",   # one-line text, empty when status is ok
]

# Metric groups: `--metrics` selects groups; each group fills exactly its module's COLUMNS.
METRIC_GROUPS: dict[str, list[str]] = {
    "norms": list(norms.COLUMNS),
    "powerlaw": list(powerlaw.COLUMNS),
    "mp": list(mp.COLUMNS),
    "randomize": list(randomize.COLUMNS),
    "farms": list(farms.COLUMNS),
    "weibull": list(weibull.COLUMNS),
}

# status -> meaning. Rows with a GOOD status enter averages; the others carry a warning.
STATUSES = {
    "ok": "every selected metric computed",
    "partial": "a metric group failed (its columns are NaN; the warning says which and why)",
    "nan_inf": "the matrix has NaN or Inf entries: metrics skipped",
    "zero": "all entries are zero: metrics skipped",
    "degenerate": "one singular value (a 1 x n matrix): only norms computed",
    "failed": "no metrics: the source (or this part of it) could not be read, or the eigenvalue "
              "problem failed (float32, float64 and an SVD); the warning says why",
    "truncated": "the file ends before this tensor's data (an interrupted download?): not read",
    "unsupported": "of a type eigenscope cannot analyse (a GGUF quantisation it cannot decode, "
                   "a complex tensor): not analysed",
}
GOOD_STATUSES = ("ok", "partial")

# Heavy-tailed self-regularisation reading of alpha (methods.md §1): 2 < alpha < 6 is typical of
# well-trained layers; above: under-trained / random-like; below: possibly over-fit.
ALPHA_BAND = (2.0, 6.0)

# A table of several sources (`analyze_many`) puts these before COLUMNS: which source a row
# comes from (its path as the nodes open it, or a built-in name) and its training step, if known.
SERIES_COLUMNS = ["source", "step"]

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
