"""What one analysis task asks a scheduler for: CPUs, memory and GPUs, from analyze's options.

    >>> task_resources({"workers": 2, "max_memory": "1.5GiB", "device": "cuda"})
    {'num_cpus': 2, 'memory': 1610612736, 'num_gpus': 1}

`workers` threads of analyze become `num_cpus` (default: analyze's, min(4, cores)); analyze's
memory budget `max_memory` (bytes, or text such as "2GiB") becomes `memory`, with analyze's
default when absent (min(4 GiB, a quarter of the memory available, `_memory.memory_budget`));
`device="cuda"` asks for one GPU. The engine reads these; the task never does.
"""
from __future__ import annotations

import os

from .._memory import memory_budget
from ..errors import ArgumentError

MAX_DEFAULT_WORKERS = 4            # analyze's default workers: min(4, cores)


def default_workers() -> int:
    """analyze's default number of workers on this machine: min(4, cores)."""
    return min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1)


def task_resources(options: dict) -> dict:
    """{'num_cpus', 'memory', 'num_gpus'} of one analysis task run with these analyze options."""
    workers = options.get("workers") or default_workers()
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ArgumentError(f"workers={workers!r}: give a whole number of threads >= 1")
    device = str(options.get("device") or "cpu")
    return {"num_cpus": workers, "memory": memory_budget(options.get("max_memory")),
            "num_gpus": 1 if device.startswith("cuda") else 0}
