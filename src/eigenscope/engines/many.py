"""`analyze_many`: many sources (checkpoints of a run, a zoo of fine-tunes, one very large model)
into one table, on this machine or on a Ray cluster.

    >>> import eigenscope
    >>> df = eigenscope.analyze_many({0: "minilm-l6"}, layers=r"layer\\.0\\.attention\\.self\\.query",
    ...                              metrics="norms")
    >>> df[["source", "step", "role", "status"]].values.tolist()
    [['minilm-l6', 0, 'q', 'ok']]
"""
from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .._progress import progress_bar
from ..errors import ArgumentError
from .tasks import plan_tasks
from .writer import TableWriter

ENGINES = ("local", "ray")
# "checkpoint-1000", "step_1000", "global_step1000", "ckpt-5", "iter_0200", "epoch3"
STEP = re.compile(r"(?:checkpoint|ckpt|step|iter|iteration|epoch)[-_]?(\d+)", re.IGNORECASE)
NOT_HERE = ("save_spectra", "return_spectra", "progress")   # analyze options that make no sense


def analyze_many(sources, *, engine: str = "local", address: str | None = None, out=None,
                 resume: bool = False, split="auto", progress: bool = False,
                 **analyze_options) -> pd.DataFrame:
    """Analyse every source; one table with a `source` column (and `step`) before analyze's.

    sources -- paths or built-in names (a list), or {step: path}. A step is also read from
               names such as checkpoint-1000 / step_1000. Paths are opened by the task that
               analyses them: on a cluster they must be reachable from every node.
    engine  -- "local" (this process) or "ray" (a Ray cluster: `address` "auto", "host:port",
               or None to start Ray here or use the instance this process is connected to).
    out     -- .csv / .json / .parquet, rewritten atomically as rows arrive.
    resume  -- keep the rows already in `out` and analyse only the missing (source, matrix)
               pairs; rows that failed before are tried again.
    split   -- "auto" (a part per 2 GiB of float32 matrices), an int (parts per source) or
               None: a large source is divided by tensor among tasks, so it uses every node.
    analyze_options -- passed to `analyze` (metrics, layers, device, workers, seed, ...); each
               task asks the scheduler for `workers` CPUs, `max_memory` bytes and a GPU on cuda.

    A source that cannot be read gets rows of status "failed" (the warning says why) and the
    others go on; `table["status"].eq("failed").any()` tells that something failed.
    `table.attrs["tasks"]` lists the tasks this call ran (source, part, seconds inside the task).
    """
    options = _check_options(engine, address, analyze_options)
    entries = source_entries(sources)
    writer = TableWriter(out, resume=resume)
    layers = options.pop("layers", None)
    tasks, plans = plan_tasks(entries, layers=layers, split=split, options=options,
                              done=writer.done())
    timings = []
    with progress_bar(len(tasks), "analyze", unit="task", enabled=progress) as bar:
        try:
            for task, rows in _engine(engine, address)(tasks):
                writer.add(rows)
                timings.append({"source": task.label, "part": task.part,
                                "seconds": rows.attrs.get("seconds", float("nan"))})
                bar.update(1)
        except BaseException:
            writer.flush()      # an interrupted run keeps every row that arrived
            raise
    table = order_rows(writer.frame(), [label for _, label, _ in entries], plans)
    writer.write(table)
    table.attrs["tasks"] = timings     # per task run: its source, part, seconds inside the task
    return table


def _engine(engine: str, address):
    if engine == "ray":
        from .ray import run_ray
        return lambda tasks: run_ray(tasks, address=address)
    from .local import run_local
    return run_local


def _check_options(engine, address, options: dict) -> dict:
    """Every option checked here, before any task starts (a typo must not fail every task)."""
    from ..analysis.runner import analyze
    from ..analysis.schema import resolve_metrics

    if engine not in ENGINES:
        raise ArgumentError(f"engine={engine!r}: choose from {', '.join(ENGINES)}")
    if address is not None and engine != "ray":
        raise ArgumentError("address is the Ray cluster's: use it with engine='ray'")
    known = set(inspect.signature(analyze).parameters) - {"source", *NOT_HERE}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ArgumentError(f"analyze_many: unknown option {unknown[0]!r}; analyze takes "
                            f"{', '.join(sorted(known))}")
    resolve_metrics(options.get("metrics"))
    if options.get("layers"):
        try:
            re.compile(options["layers"])
        except re.error as e:
            raise ArgumentError(f"layers={options['layers']!r}: bad regular expression: {e}")
    return dict(options)


def source_entries(sources) -> list[tuple[str, str, int | None]]:
    """[(what a node opens, the `source` label, step or None)], in the order to analyse them:
    a dict by step; a list as given. Local paths become absolute (other nodes have other
    working folders); other specs (built-in names, paths only the nodes see) stay as given."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if isinstance(sources, dict):
        items = sorted(((_step_key(k), v) for k, v in sources.items()), key=lambda kv: kv[0])
    else:
        items = [(None, s) for s in sources]
    entries, seen = [], set()
    for step, spec in items:
        if not isinstance(spec, (str, os.PathLike)):
            raise ArgumentError(f"analyze_many takes paths or built-in names, not a "
                                f"{type(spec).__name__}; analyse an in-memory model with analyze")
        path = os.path.abspath(spec) if os.path.exists(spec) else os.fspath(spec)
        if path in seen:
            raise ArgumentError(f"{path}: given twice")
        seen.add(path)
        entries.append((path, path, step if step is not None else step_of(path)))
    if not entries:
        raise ArgumentError("analyze_many: no sources given")
    return entries


def _step_key(key) -> int:
    try:
        return int(key)
    except (TypeError, ValueError):
        raise ArgumentError(f"sources: a dict maps steps (whole numbers) to paths; got key "
                            f"{key!r}") from None


def step_of(path: str) -> int | None:
    """The training step a checkpoint's name says (its own name, else its folder's), or None.

    >>> step_of("runs/a/checkpoint-1500"), step_of("out/step_20/model.safetensors"), step_of("m.gguf")
    (1500, 20, None)
    """
    p = Path(path)
    for part in (p.stem if p.suffix else p.name, p.parent.name):
        m = STEP.search(part)
        if m:
            return int(m.group(1))
    return None


def order_rows(df: pd.DataFrame, labels: list[str], plans: dict) -> pd.DataFrame:
    """Rows by source (in `labels` order, others after) and, within one, in the plan's order."""
    if df.empty:
        return df
    source_rank = {s: i for i, s in enumerate(labels)}
    ranks = {s: {n: i for i, n in enumerate(names)} for s, names in plans.items()}
    src = df["source"].astype(str)
    first = src.map(source_rank).fillna(len(labels)).to_numpy()
    second = np.array([ranks.get(s, {}).get(n, -1) for s, n in zip(src, df["name"].astype(str))])
    order = np.lexsort((np.arange(len(df)), second, first))
    return df.iloc[order].reset_index(drop=True)
