"""Rank allocation: which rank each targeted matrix keeps (None = stays dense).

Every allocator reads per-matrix loss curves e(r) = sum_{i>=r} s_i^2 (s: the method's spectrum)
and costs: by default parameters, c(r) = r (m + n); a dense matrix costs m n (+ nothing saved)
and loses nothing. A rank with r >= m n / (m + n) saves nothing and is never used: that matrix
stays dense. With a `Cost` such as `latency_cost(table)` the budget is time instead: the options
of a matrix are the ranks its cost offers (those faster than dense), and `ratio` is the fraction
of the targeted matrices' dense time removed; `fast_param_cost(table)` offers the same ranks but
counts parameters, so `ratio` removes parameters with no factorisation slower than dense.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import EigenscopeError
from ..maths.lowrank import tail_energy, useful_rank
from ..maths.mp import gd_rank as mp_gd_rank


@dataclass
class Curve:
    """One matrix's loss curve for allocation: the method's spectrum s of an m x n matrix."""
    name: str
    m: int
    n: int
    s: torch.Tensor          # (min(m, n),) the method's spectrum, descending
    normalise: bool = True   # divide losses by the total energy (no loss-unit weight available)

    def loss(self) -> np.ndarray:
        """e[r] for r = 0..min(m, n): the loss of keeping rank r (normalised to e[0] = 1 unless in loss units)."""
        e = tail_energy(self.s).numpy()  # e[r], r = 0..min(m, n)
        return e / max(e[0], 1e-300) if self.normalise else e


def _grid(c: Curve, multiple: int) -> list[int]:
    top = useful_rank(c.m, c.n)
    return [r for r in range(multiple, top + 1, multiple)]


def _round(r: float, multiple: int) -> int:
    return int(r // multiple) * multiple


def uniform(curves, ratio, multiple, cost=None):
    """Every matrix keeps the same fraction (1 - ratio) of its parameters (or of its cost)."""
    if cost is not None:  # the largest offered rank within (1 - ratio) of the dense cost
        out = {}
        for c in curves:
            opts = cost(c, multiple)
            fits = [r for r, k in opts[:-1] if k <= (1 - ratio) * opts[-1][1]]
            out[c.name] = fits[-1] if fits else None
        return out
    out = {}
    for c in curves:
        r = _round((1 - ratio) * c.m * c.n / (c.m + c.n), multiple)
        out[c.name] = r if 0 < r <= useful_rank(c.m, c.n) else None
    return out


def energy(curves, fraction, multiple):
    """Smallest rank keeping `fraction` of the spectrum's energy (rounded up to the multiple)."""
    out = {}
    for c in curves:
        kept = 1 - c.loss() / max(c.loss()[0], 1e-300)
        r = int(np.argmax(kept >= fraction - 1e-12))
        r = -(-max(r, 1) // multiple) * multiple
        out[c.name] = r if r <= useful_rank(c.m, c.n) else None
    return out


def gd_rank(curves, multiple):
    """Gavish-Donoho hard threshold: keep the singular values above omega(gamma) * median
    (maths.mp.gd_rank, the same function as the analysis's `gd_rank` column)."""
    out = {}
    for c in curves:
        k = mp_gd_rank(c.s.double().numpy() ** 2, c.m, c.n)
        r = -(-max(int(k) if k == k else 1, 1) // multiple) * multiple
        out[c.name] = r if r <= useful_rank(c.m, c.n) else None
    return out


def param_cost(c: Curve, multiple: int) -> list[tuple[int | None, float]]:
    """(rank or None, parameters) for every rank on the grid, then dense."""
    return [(r, float(r * (c.m + c.n))) for r in _grid(c, multiple)] + [(None, float(c.m * c.n))]


def latency_cost(table):
    """A cost in predicted seconds per call from a `latency.LatencyTable`: the ranks offered are
    the table's efficient ranks faster than dense (a slower factorisation is never an option)."""
    def cost(c: Curve, multiple: int):
        opts = [(r, t) for r, t in table.options(c.m, c.n) if r % multiple == 0 and r <= min(c.m, c.n)]
        return opts + [(None, table.dense(c.m, c.n))]
    return cost


def fast_param_cost(table):
    """A cost in parameters over only the ranks `latency_cost(table)` offers: `ratio` still removes
    parameters, but no matrix is factorised at a rank that the table finds no faster than dense
    (or than a larger rank)."""
    def cost(c: Curve, multiple: int):
        opts = [(r, float(r * (c.m + c.n))) for r, _ in latency_cost(table)(c, multiple)[:-1]]
        return opts + [(None, float(c.m * c.n))]
    return cost


def _options(c: Curve, multiple: int, cost=None):
    """(rank or None, cost, loss) for every allowed choice, cost ascending; dense last."""
    e = c.loss()
    return [(r, k, 0.0 if r is None else float(e[r])) for r, k in (cost or param_cost)(c, multiple)]


def global_greedy(curves, ratio, multiple, cost=None):
    """Minimise sum of losses under the budget: greedy on marginal loss decrease per unit of cost."""
    opts = [_options(c, multiple, cost) for c in curves]
    budget = (1 - ratio) * sum(o[-1][1] for o in opts)
    pick = [0] * len(curves)
    spent = sum(o[0][1] for o in opts)
    if spent > budget:
        raise EigenscopeError(f"ratio {ratio}: even the cheapest rank everywhere costs {spent:.4g} > "
                              f"{budget:.4g} (the budget); lower --multiple or the ratio")
    heap = []

    def push(i):
        if pick[i] + 1 < len(opts[i]):
            (_, c0, e0), (_, c1, e1) = opts[i][pick[i]], opts[i][pick[i] + 1]
            heapq.heappush(heap, (-(e0 - e1) / max(c1 - c0, 1e-30), i, c1 - c0))

    for i in range(len(curves)):
        push(i)
    while heap:
        _, i, dc = heapq.heappop(heap)
        if spent + dc <= budget:  # a step that does not fit is dropped; smaller ones may still fit
            spent += dc
            pick[i] += 1
            push(i)
    return {c.name: opts[i][pick[i]][0] for i, c in enumerate(curves)}


def global_knapsack(curves, ratio, multiple, cost=None, units: int = 2000):
    """Exact multiple-choice knapsack by dynamic programming over `units` cost buckets.

    Costs are rounded up to whole buckets, so the budget always holds (ROCKET's formulation).
    """
    opts = [_options(c, multiple, cost) for c in curves]
    budget = (1 - ratio) * sum(o[-1][1] for o in opts)
    unit = budget / units
    dp = np.zeros(units + 1)                      # dp[b]: least loss with cost <= b units
    choice = np.zeros((len(curves), units + 1), dtype=np.int32)
    for i, o in enumerate(opts):
        new = np.full(units + 1, np.inf)
        for k, (_, cost, loss) in enumerate(o):
            cu = int(np.ceil(cost / unit - 1e-9))
            if cu > units:
                continue
            cand = np.full(units + 1, np.inf)
            cand[cu:] = dp[:units + 1 - cu] + loss
            better = cand < new
            new[better], choice[i, better] = cand[better], k
        dp = new
    if not np.isfinite(dp[units]):
        raise EigenscopeError(f"ratio {ratio}: no rank choice fits the budget; lower the ratio")
    b, out = units, {}
    for i in range(len(curves) - 1, -1, -1):
        k = choice[i, b]
        r, cost, _ = opts[i][k]
        out[curves[i].name] = r
        b -= int(np.ceil(cost / unit - 1e-9))
    return out


ALLOCATORS = {"uniform": uniform, "global": global_greedy, "knapsack": global_knapsack}


def allocate(curves: list[Curve], allocation, ratio: float | None, multiple: int, cost=None) -> dict:
    """`allocation`: a name above, "gd_rank", "energy:0.9", an int (rank count for every matrix),
    a float in (0, 1) (energy fraction), or a dict {layer: int | float}. `cost`: None
    (parameters) or e.g. `latency_cost(table)`; it applies to "global", "knapsack", "uniform"."""
    if isinstance(allocation, dict):
        return {c.name: _fixed(c, allocation.get(c.name), multiple) for c in curves}
    if isinstance(allocation, (int, float)) and not isinstance(allocation, bool):
        return {c.name: _fixed(c, allocation, multiple) for c in curves}
    if allocation == "gd_rank":
        return gd_rank(curves, multiple)
    if isinstance(allocation, str) and allocation.startswith("energy"):
        return energy(curves, float(allocation.partition(":")[2] or 0.9), multiple)
    if allocation not in ALLOCATORS:
        raise EigenscopeError(f"unknown allocation {allocation!r}; choose from "
                              f"{sorted(ALLOCATORS) + ['gd_rank', 'energy:F', 'an int or float']}")
    check_ratio(ratio)
    return ALLOCATORS[allocation](curves, ratio, multiple, cost)


def _fixed(c: Curve, spec, multiple):
    if spec is None:
        return None
    if isinstance(spec, float) and 0 < spec < 1:
        return energy([c], spec, multiple)[c.name]
    if isinstance(spec, int) and spec >= 1:
        if spec > min(c.m, c.n):
            raise EigenscopeError(f"{c.name}: rank {spec} impossible for a {c.m}x{c.n} matrix")
        return spec if spec <= useful_rank(c.m, c.n) else None
    raise EigenscopeError(f"{c.name}: rank {spec!r} is neither an int >= 1 nor a float in (0, 1)")


def check_ratio(ratio) -> None:
    """Fail with one line unless `ratio` is a fraction in (0, 1) of parameters removed."""
    if ratio is None or not (0 < float(ratio) < 1):
        raise EigenscopeError(f"ratio {ratio!r} must be a fraction in (0, 1) of parameters removed")
