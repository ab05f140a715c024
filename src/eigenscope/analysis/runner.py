"""`analyze`: one row per weight matrix, with every metric of methods.md §1, in a fixed schema.

Matrices stream from the source one tensor at a time (a reader thread keeps the next ones
ready), matrices of the same shape are batched into one Gram + eigvalsh call, and the per-matrix
metrics run on a small thread pool while the next batch is read.
"""
from __future__ import annotations

import os
import queue
import threading
from collections import deque
from contextlib import contextmanager
from functools import partial
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch

from .metrics import compute_metrics, matrix_status, solve_spectra
from .._progress import progress_bar
from .schema import COLUMNS, resolve_metrics

BATCH_MAX = 16               # matrices of one shape per eigvalsh call
BATCH_BYTES = 64 * 2**20     # a matrix larger than this is never held back for batching
PENDING_BATCHES = 2          # batches per worker in flight (bounds memory)


def analyze(source, *, metrics=None, layers: str | None = None, device=None,
            workers: int | None = None, seed: int = 0, precision: str = "auto",
            save_spectra: str | os.PathLike | None = None, return_spectra: bool = False,
            progress: bool = False):
    """Analyse every weight matrix of `source`; return one row per matrix.

    source   -- an nn.Module, a Hugging Face folder, a .safetensors or .gguf file, or a
                built-in name ("smollm2-135m", "minilm-l6").
    metrics  -- metric groups or column names (default: all); skipped columns stay NaN.
    layers   -- regular expression on matrix names, applied before any weight is read.
    device   -- where the eigenvalue problems run ("cpu", "cuda"); metrics run on the CPU.
    workers  -- threads solving batches of matrices in parallel (default: number of cores,
                at most 4); torch's intra-op threads are shared out among them.
    seed     -- seed of the randomization test and of sub-sampling (results are reproducible).
    save_spectra -- also write every matrix's singular values to this .safetensors file.
    return_spectra -- return (rows, {row name: singular values, descending, float64}).

    >>> import torch, eigenscope
    >>> df = eigenscope.analyze(torch.nn.Sequential(torch.nn.Linear(40, 30)), metrics="norms")
    >>> row = df.iloc[0]
    >>> row["name"], int(row["rows"]), int(row["cols"]), row["status"]
    ('0.weight', 30, 40, 'ok')
    """
    from ..sources import open_source
    from ..sources.matrices import iter_matrices, plan_matrices
    from ..validate import check_args

    check_args("analyze", locals(), sources=[source])   # every option, before any work
    groups = resolve_metrics(metrics)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    workers = workers or min(4, os.cpu_count() or 1)
    src = open_source(source)
    try:
        plan = plan_matrices(src, layers=layers)
        order = {meta.name: i for i, meta in enumerate(plan)}
        spectra = {}
        job = partial(_batch_rows, groups=groups, seed=seed, dev=dev, precision=precision,
                      spectra=spectra)
        with progress_bar(len(plan), "analyze", enabled=progress) as bar:
            rows = _run(_batches(_prefetch(iter_matrices(src, layers=layers))), job, workers, bar)
    finally:
        src.close()
    df = pd.DataFrame(rows, columns=COLUMNS)
    df = df.iloc[sorted(range(len(df)), key=lambda i: order.get(df.at[i, "name"], len(order)))]
    df = df.reset_index(drop=True)
    if save_spectra is not None:
        from .spectra_io import save_spectra as _save
        _save(save_spectra, df, spectra, source=_describe(source))
    return (df, spectra) if return_spectra else df


def _run(batches, job, workers: int, bar) -> list[dict]:
    """Rows of every batch, solved on a pool of `workers` threads while the next is read."""
    rows: list[dict] = []
    with _threads_per_worker(workers), ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for batch in batches:
            pending.append(pool.submit(job, batch))
            # The window bounds how many matrices are held in memory at once.
            while len(pending) > PENDING_BATCHES * workers or (pending and pending[0].done()):
                _collect(pending.popleft(), rows, bar)
        while pending:
            _collect(pending.popleft(), rows, bar)
    return rows


def _collect(future, rows, bar):
    batch_rows = future.result()
    rows.extend(batch_rows)
    bar.update(len(batch_rows))


@contextmanager
def _threads_per_worker(workers: int):
    """Give each worker its share of torch's intra-op threads while the analysis runs.

    Small eigenvalue problems (M <= ~2000) scale poorly over intra-op threads: two workers with
    one thread each are ~1.9x one worker with two threads (measured on SmolLM2's matrices).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, before // max(workers, 1)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _batch_rows(batch, *, groups, seed, dev, precision, spectra) -> list[dict]:
    """Rows of a batch of same-shape matrices: one Gram + eigvalsh call, then metrics per matrix."""
    checked = [(meta, W, *matrix_status(W, meta)) for meta, W in batch]
    good = [i for i, c in enumerate(checked) if c[2] in ("ok", "degenerate")]
    lams = {}
    solved = solve_spectra([checked[i][1] for i in good], dev=dev, precision=precision)
    for i, (lam, failure) in zip(good, solved):       # lam: (M,) ascending
        if failure:
            checked[i] = (*checked[i][:2], "failed", failure)
        else:
            lams[i] = lam
    rows = []
    for i, (meta, W, status, warning) in enumerate(checked):
        if i in lams:
            spectra[meta.name] = np.sqrt(lams[i][::-1])   # singular values, descending
        rows.append(_row(meta, W, lams.get(i), groups, seed, status, warning))
    return rows


def _row(meta, W, lam, groups, seed, status, warning) -> dict:
    row = {c: getattr(meta, c) for c in COLUMNS if hasattr(meta, c)}
    res = compute_metrics(W, lam, groups, status=status, seed=seed) if lam is not None else \
        {"metrics": {}, "warnings": []}
    row.update(res["metrics"])
    row["status"] = status
    row["warning"] = "; ".join([w for w in [warning, *res["warnings"]] if w])
    if status == "ok" and res["warnings"]:
        row["status"] = "partial"
    return row


def _batches(stream):
    """Group a stream of (meta, W) by shape; yield lists of at most BATCH_MAX same-shape items."""
    pending: dict[tuple, list] = {}
    for meta, W in stream:
        if W.numel() * W.element_size() > BATCH_BYTES:
            yield [(meta, W)]
            continue
        group = pending.setdefault(tuple(W.shape), [])
        group.append((meta, W))
        if len(group) >= BATCH_MAX:
            yield pending.pop(tuple(W.shape))
    yield from (g for g in pending.values() if g)


_DONE = object()


def _prefetch(iterator, depth: int = 4):
    """Read the next tensors in a background thread while the current ones are analysed."""
    q: queue.Queue = queue.Queue(maxsize=depth)

    def work():
        try:
            for item in iterator:
                q.put(item)
        except BaseException as e:  # re-raised in the consumer, with its message intact
            q.put(e)
        q.put(_DONE)

    threading.Thread(target=work, daemon=True).start()
    while (item := q.get()) is not _DONE:
        if isinstance(item, BaseException):
            raise item
        yield item


def _describe(source) -> str:
    return type(source).__name__ if isinstance(source, torch.nn.Module) else str(source)
