"""`analyze`: one row per weight matrix, with every metric of methods.md §1, in a fixed schema.

Matrices of the same shape are batched into one Gram + eigvalsh call (batches planned from the
metadata, analysis/batches.py). A reader thread reads the next batch while a small thread pool
computes the metrics of the previous ones; every batch first takes its working bytes from a
memory budget (`max_memory`), so what is read, queued and in flight stays under it.
"""
from __future__ import annotations

import os
import queue
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial

import numpy as np
import pandas as pd
import torch

from .._memory import Budget, human, memory_budget
from .._progress import progress_bar
from ..validate import check_args
from .batches import plan_batches
from .metrics import compute_metrics, matrix_status, solve_spectra
from .schema import COLUMNS, resolve_metrics


def analyze(source, *, metrics=None, layers: str | None = None, device=None,
            workers: int | None = None, seed: int = 0, precision: str = "auto", max_memory=None,
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
    max_memory -- bytes (or "2GiB") for the matrices read, queued and in flight; default
                min(4 GiB, a quarter of the available memory). A matrix larger than the budget
                is still analysed, alone, with a warning (analysis/batches.py has the formula).
    save_spectra -- also write every matrix's singular values to this .safetensors file.
    return_spectra -- return (rows, {row name: singular values, descending, float64}).

    >>> import torch, eigenscope
    >>> df = eigenscope.analyze(torch.nn.Sequential(torch.nn.Linear(40, 30)), metrics="norms")
    >>> row = df.iloc[0]
    >>> row["name"], int(row["rows"]), int(row["cols"]), row["status"]
    ('0.weight', 30, 40, 'ok')
    """
    from ..sources import open_source
    from ..sources.matrices import plan_matrices

    check_args("analyze", locals(), sources=[source])   # every option, before any work
    groups = resolve_metrics(metrics)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    workers = workers or min(4, os.cpu_count() or 1)
    budget = Budget(memory_budget(max_memory))
    src = open_source(source)
    try:
        plan = plan_matrices(src, layers=layers)
        batches = plan_batches(plan, groups, limit=budget.limit, workers=workers)
        spectra: dict = {}
        job = partial(_batch_rows, groups=groups, seed=seed, dev=dev, precision=precision,
                      spectra=spectra)
        with progress_bar(len(plan), "analyze", enabled=progress) as bar:
            rows = _run(src, batches, job, workers, budget, bar)
    finally:
        src.close()
    df = _in_plan_order(rows, plan)
    if save_spectra is not None:
        from .spectra_io import save_spectra as _save
        _save(save_spectra, df, spectra, source=_describe(source))
    return (df, spectra) if return_spectra else df


def _in_plan_order(rows: list[dict], plan) -> pd.DataFrame:
    """The rows as a table in the schema, in the order of the plan (files and modules alike)."""
    order = {meta.name: i for i, meta in enumerate(plan)}
    df = pd.DataFrame(rows, columns=COLUMNS)
    df = df.iloc[sorted(range(len(df)), key=lambda i: order.get(df.at[i, "name"], len(order)))]
    return df.reset_index(drop=True)


def _run(src, batches, job, workers: int, budget: Budget, bar) -> list[dict]:
    """Rows of every batch: a reader thread takes each batch's bytes from the budget and reads
    it, at most one batch ahead of the workers (reading further ahead only holds memory); the
    pool computes, and a finished batch gives its bytes and its slot back."""
    rows: list[dict] = []
    lock = threading.Lock()
    slots = threading.Semaphore(workers + 1)

    def done(future, cost):
        budget.release(cost)
        slots.release()
        if future.exception() is None:
            with lock:
                rows.extend(future.result())
                bar.update(len(future.result()))

    with _threads_per_worker(workers), ThreadPoolExecutor(workers) as pool:
        futures = []
        for batch, cost in _read_ahead(src, batches, budget, slots):
            fut = pool.submit(job, batch)
            fut.add_done_callback(partial(done, cost=cost))
            futures.append(fut)
        for fut in futures:
            fut.result()          # re-raises a worker's exception here
    if budget.oversized:
        warnings.warn(f"{budget.oversized} matrices alone need more than max_memory="
                      f"{human(budget.limit)}; they were analysed one at a time")
    return rows


_DONE = object()


def _read_ahead(src, batches, budget: Budget, slots: threading.Semaphore):
    """(matrices of a batch, its bytes), read in a background thread once the budget allows."""
    from ..sources.matrices import read_matrices

    q: queue.Queue = queue.Queue()
    stop = threading.Event()

    def work():
        seen: set = set()
        try:
            for metas, cost in batches:
                slots.acquire()
                budget.acquire(cost)
                if stop.is_set():
                    budget.release(cost)
                    break
                q.put((list(read_matrices(src, metas, seen)), cost))
        except BaseException as e:  # re-raised in the consumer, with its message intact
            q.put(e)
        q.put(_DONE)

    threading.Thread(target=work, daemon=True).start()
    try:
        while (item := q.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


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


def _describe(source) -> str:
    return type(source).__name__ if isinstance(source, torch.nn.Module) else str(source)
