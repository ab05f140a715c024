"""The unit of work of `analyze_many`: one source, or one part of a large source, analysed by
`analyze`. Both engines run the same `run_task` on the same `Task`s; they only decide where.

A large source is split by tensor from its metadata (`plan_matrices`, no weight read): each part
is an exact regular expression of its row names passed as `layers=`, so each task opens the same
files and reads only its own tensors. Embedding and head tensors stay in one part, because
analyze recognises an untied-but-identical head only after reading the embedding.
"""
from __future__ import annotations

import math
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import pandas as pd
import torch

from ..analysis.schema import COLUMNS, METRIC_COLUMNS, SERIES_COLUMNS, STATUSES
from ..errors import EigenscopeError
from .resources import task_resources

SPLIT_BYTES = 2 * 2**30    # split="auto": one part per this many bytes of float32 matrices
TIE_ROLES = ("embed", "head")
FAILED = "failed"          # the status of rows a task could not compute
assert FAILED in STATUSES


@dataclass(frozen=True)
class Task:
    """One call of `analyze` on (part of) one source, and what the scheduler must give it."""

    source: str                  # what the node opens: a path reachable from it, or a name
    label: str                   # the `source` column of its rows
    step: int | None             # the `step` column (None: unknown)
    part: int = 0                # which part of its source (0 .. parts - 1)
    parts: int = 1
    layers: str | None = None    # analyze's `layers`: the user's filter or this part's rows
    metas: tuple = ()            # planned rows (MatrixMeta); () when the driver could not plan
    options: dict = field(default_factory=dict)    # the other analyze options
    resources: dict = field(default_factory=dict)  # num_cpus, memory, num_gpus


def run_task(task: Task) -> pd.DataFrame:
    """Rows of one task, SERIES_COLUMNS first; a source that fails gives rows of status
    "failed" (one per planned matrix, or one unnamed row) instead of raising.

    torch's thread count is set from the task's CPUs, so a task computes the same bits
    wherever it runs (a Ray worker or this process).
    """
    from ..analysis.runner import analyze

    t0 = time.perf_counter()
    with _torch_threads(task.resources.get("num_cpus", 1)):
        try:
            df = analyze(task.source, layers=task.layers, **task.options)
        except Exception as e:  # a bad source must not stop the others: its rows say why
            df = failed_rows(task, _message(task, e))
    df = label_rows(task, df)
    df.attrs["seconds"] = time.perf_counter() - t0    # time inside the task (benchmarks)
    return df


def label_rows(task: Task, df: pd.DataFrame) -> pd.DataFrame:
    """`df` with the task's SERIES_COLUMNS (source, step) in front."""
    df.insert(0, "step", pd.array([task.step] * len(df), dtype="Int64"))
    df.insert(0, "source", task.label)
    return df


def failed_rows(task: Task, message: str) -> pd.DataFrame:
    """Status "failed" rows of a task (without SERIES_COLUMNS): its planned matrices keep
    their identity; an unplanned source gets one row with an empty name."""
    unnamed = {"name": "", "tensor": "", "expert": -1, "block": -1, "role": "other", "rows": 0,
               "cols": 0, "shape": "", "dtype": "", "numel": 0}     # no matrix: keeps ints
    rows = [{**({c: getattr(m, c) for c in COLUMNS if hasattr(m, c)} if m else unnamed),
             "status": FAILED, "warning": message} for m in (task.metas or (None,))]
    return pd.DataFrame(rows, columns=COLUMNS).astype({c: float for c in METRIC_COLUMNS})


def _message(task: Task, e: BaseException) -> str:
    from ..sources.base import error_line

    text = str(e).strip().splitlines()
    if isinstance(e, EigenscopeError) and text:
        return text[0]                              # already names the file or tensor
    return f"{task.source}: {error_line(e)}"


@contextmanager
def _torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def plan_tasks(entries, *, layers: str | None = None, split="auto", options: dict | None = None,
               done: dict | None = None) -> tuple[list[Task], dict]:
    """Tasks for [(source, label, step)], and {label: planned row names} for ordering rows.

    split -- "auto" (a part per SPLIT_BYTES of float32 matrices), an int (that many parts),
             or None / 1 (never split).
    done  -- {label: row names already in the output} (resume): only the rest is planned.
    """
    _parts(split, [[]])                      # a bad `split` fails before anything is opened
    resources = task_resources(dict(options or {}))
    # analyze's threads and memory budget are fixed here, not by the node's cores and free
    # memory: a task computes the same way on any node, within what it asked the scheduler for
    options = {**(options or {}), "workers": resources["num_cpus"],
               "max_memory": resources["memory"]}
    tasks, plans = [], {}
    for source, label, step in entries:
        plan = _plan(source, layers)
        plans[label] = [m.name for m in plan] if plan is not None else []
        base = Task(source=source, label=label, step=step, layers=layers, options=options,
                    resources=resources)
        tasks += _source_tasks(base, plan, split, (done or {}).get(label, set()))
    return tasks, plans


def _plan(source, layers):
    """Planned rows of a source from its metadata, or None when this machine cannot open it
    (the task then tries on its node, and reports the failure in its rows)."""
    from ..sources import open_source
    from ..sources.matrices import plan_matrices

    try:
        src = open_source(source)
    except Exception:
        return None
    try:
        return plan_matrices(src, layers=layers)
    except Exception:
        return None
    finally:
        src.close()


def _source_tasks(base: Task, plan, split, done: set) -> list[Task]:
    if plan is None:
        return [base]
    units = [u for u in _units(plan) if any(m.name not in done for m in u)]
    if not units:
        return []
    n = _parts(split, units)
    if n == 1 and len(units) == len(_units(plan)):
        return [_with(base, plan, 0, 1, exact=False)]
    position = {m.name: i for i, m in enumerate(plan)}
    parts = [sorted(p, key=lambda m: position[m.name]) for p in _balance(units, n)]
    return [_with(base, metas, i, len(parts), exact=True) for i, metas in enumerate(parts)]


def _with(base: Task, metas, part: int, parts: int, *, exact: bool) -> Task:
    from dataclasses import replace

    layers = "^(?:" + "|".join(re.escape(m.name) for m in metas) + ")$" if exact else base.layers
    return replace(base, part=part, parts=parts, layers=layers, metas=tuple(metas))


def _units(plan) -> list[list]:
    """Rows grouped so that a group is never divided: one tensor's rows (experts), and all
    embedding and head rows together."""
    units, by_tensor, tied = [], {}, None
    for meta in plan:
        if meta.role in TIE_ROLES:
            if tied is None:
                tied = []
                units.append(tied)
            tied.append(meta)
            continue
        if meta.tensor not in by_tensor:
            by_tensor[meta.tensor] = []
            units.append(by_tensor[meta.tensor])
        by_tensor[meta.tensor].append(meta)
    return units


def _parts(split, units) -> int:
    if split in (None, 1, "none"):
        return 1
    if split == "auto":
        nbytes = 4 * sum(m.numel for u in units for m in u)
        return max(1, min(len(units), math.ceil(nbytes / SPLIT_BYTES)))
    if isinstance(split, int) and not isinstance(split, bool) and split >= 1:
        return min(split, len(units))
    from ..errors import ArgumentError
    raise ArgumentError(f"split={split!r}: give 'auto', None or a number of parts >= 1")


def _balance(units, n: int) -> list[list]:
    """n parts of about equal work: the costliest unit first, onto the lightest part."""
    def cost(u):   # Gram + eigenvalues of an m x n matrix: ~ m n min(m, n)
        return sum(m.rows * m.cols * min(m.rows, m.cols) for m in u)

    loads, bins = [0] * n, [[] for _ in range(n)]
    for u in sorted(units, key=cost, reverse=True):
        i = loads.index(min(loads))
        loads[i] += cost(u)
        bins[i].append(u)
    return [[m for u in b for m in u] for b in bins if b]


def series_frame(rows: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate task results into one table with SERIES_COLUMNS + COLUMNS (empty if none)."""
    frames = [r for r in rows if len(r)]
    if not frames:
        empty = pd.DataFrame(columns=SERIES_COLUMNS + COLUMNS)
        empty["step"] = empty["step"].astype("Int64")
        return empty
    return pd.concat(frames, ignore_index=True)
