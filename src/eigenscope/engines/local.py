"""The local engine: the tasks one after another in this process (each task already uses the
machine's cores through analyze's workers)."""
from __future__ import annotations

from typing import Iterable, Iterator

from .tasks import Task, run_task


def run_local(tasks: Iterable[Task]) -> Iterator[tuple[Task, object]]:
    """(task, its rows) for every task, in order, as each finishes."""
    for task in tasks:
        yield task, run_task(task)
