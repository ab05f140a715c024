"""What one analysis task asks a scheduler for: CPUs, memory and GPUs, from analyze's options.

    >>> task_resources({"workers": 2, "max_memory": "1.5GiB", "device": "cuda"})
    {'num_cpus': 2, 'memory': 1610612736, 'num_gpus': 1}
    >>> parse_bytes("512MB"), parse_bytes(4096)
    (512000000, 4096)

`workers` threads of analyze become `num_cpus`; `max_memory` (bytes, or text such as "2GiB")
becomes `memory`, with analyze's default when absent: min(4 GiB, a quarter of the memory
available); `device="cuda"` asks for one GPU. The engine reads these; the task never does.
"""
from __future__ import annotations

import os
import re

from ..errors import ArgumentError

DEFAULT_MEMORY_CAP = 4 * 2**30     # analyze's default budget: min(4 GiB, available / 4)
MAX_DEFAULT_WORKERS = 4            # analyze's default workers: min(4, cores)
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")


def parse_bytes(value, *, option: str = "max_memory") -> int:
    """Bytes from an int or a text such as "2GiB", "512MB", "1.5g" (decimal and binary units)."""
    if isinstance(value, bool) or value is None:
        raise ArgumentError(f"{option}: give bytes as an int or a text such as '2GiB'")
    if isinstance(value, (int, float)):
        n = int(value)
    else:
        m = _SIZE.match(str(value))
        unit = m.group(2).lower() if m else ""
        if not m or unit not in _UNITS:
            raise ArgumentError(f"{option}={value!r}: not a size; use e.g. 2GiB, 512MB or bytes")
        n = int(float(m.group(1)) * _UNITS[unit])
    if n <= 0:
        raise ArgumentError(f"{option}={value!r}: must be more than 0 bytes")
    return n


def available_memory() -> int:
    """Bytes of memory available on this machine (psutil when installed, else /proc, sysconf)."""
    try:
        import psutil
        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def default_workers() -> int:
    """analyze's default number of workers on this machine: min(4, cores)."""
    return min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1)


def task_resources(options: dict) -> dict:
    """{'num_cpus', 'memory', 'num_gpus'} of one analysis task run with these analyze options."""
    workers = options.get("workers") or default_workers()
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ArgumentError(f"workers={workers!r}: give a whole number of threads >= 1")
    budget = options.get("max_memory")
    memory = (parse_bytes(budget) if budget is not None
              else min(DEFAULT_MEMORY_CAP, available_memory() // 4))
    device = str(options.get("device") or "cpu")
    return {"num_cpus": workers, "memory": memory,
            "num_gpus": 1 if device.startswith("cuda") else 0}
