"""Batches of same-shape matrices, planned from metadata alone, and the bytes each one costs.

A batch shares one Gram + eigvalsh call. Every batch's working memory is estimated before it is
read (`working_bytes`), so the runner can hold the matrices read, queued and in flight under a
byte budget:

    held <= max(max_memory, working_bytes of the largest matrix)
    working_bytes(m x n) = 8 m n (the float32 matrix and its copy in the batch's stack)
                           + 24 M^2 (Gram, float64 refinement and eigvalsh workspace,
                           M = min(m, n)) + [randomize: 8 m n + 24 M^2 (the shuffled copy,
                           its permutation and its own eigenproblem)]
Batches are at most max_memory / (workers + 1) working bytes, so that every worker can hold one
while the next is read, and hold at most BATCH_BYTES of matrices (a larger matrix goes alone):
batching only saves per-call overhead, which large eigenproblems do not feel.
"""
from __future__ import annotations

from ..sources.matrices import MatrixMeta

BATCH_MAX = 16               # matrices of one shape per eigvalsh call
BATCH_BYTES = 64 * 2**20     # float32 bytes of a batch's matrices at most: batching saves only
                             # per-call overhead, which large eigenproblems do not feel


def working_bytes(meta: MatrixMeta, groups) -> int:
    """Estimated peak bytes of analysing one matrix (module docstring)."""
    M = min(meta.rows, meta.cols)
    cost = 8 * meta.numel + 24 * M * M
    if "randomize" in groups:
        cost += 8 * meta.numel + 24 * M * M
    return cost


def plan_batches(plan: list[MatrixMeta], groups, *, limit: int, workers: int
                 ) -> list[tuple[list[MatrixMeta], int]]:
    """[(rows of one shape, their working bytes)], in the order of each batch's first row.

    Same-shape rows (anywhere in the model) share a batch of at most BATCH_MAX rows and
    limit / (workers + 1) bytes; a row larger than that is a batch of its own.
    """
    cap = max(limit // (workers + 1), 1)
    open_: dict[tuple[int, int], list] = {}
    done: list[list] = []
    for i, meta in enumerate(plan):
        key, cost = (meta.rows, meta.cols), working_bytes(meta, groups)
        cur = open_.get(key)
        if cur is not None and (len(cur[1]) >= BATCH_MAX or cur[2] + cost > cap
                                or 4 * (cur[3] + meta.numel) > BATCH_BYTES):
            done.append(open_.pop(key))
            cur = None
        if cur is None:
            cur = open_[key] = [i, [], 0, 0]     # first index, rows, working bytes, entries
        cur[1].append(meta)
        cur[2] += cost
        cur[3] += meta.numel
    done.extend(open_.values())
    return [(metas, cost) for _, metas, cost, _ in sorted(done, key=lambda b: b[0])]
