"""Memory budgets: sizes people write ("2GiB", "512MB", bytes), the default budget, and a
thread-safe byte budget that the runner and the compression pipeline draw from.

    >>> parse_size("2GiB"), parse_size("1.5 GB"), parse_size(4096)
    (2147483648, 1500000000, 4096)
"""
from __future__ import annotations

import os
import re
import threading

from .errors import ArgumentError

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")
DEFAULT_CAP = 4 * 2**30          # the default budget is min(DEFAULT_CAP, available / 4)


def parse_size(value, *, what: str = "max_memory") -> int:
    """Bytes from an int or a string such as "2GiB", "512MB", "1.5 GB" (k/M/G are powers of
    1000, KiB/MiB/GiB of 1024)."""
    if isinstance(value, bool):
        raise ArgumentError(f"{what}: give a size such as 2GiB, not {value!r}")
    if isinstance(value, (int, float)):
        size = value
    else:
        m = _SIZE.match(str(value))
        if m is None or m.group(2).lower() not in _UNITS:
            raise ArgumentError(f"{what}: {value!r} is not a size (e.g. 2GiB, 512MB, 1000000)")
        size = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not size > 0 or size != size:
        raise ArgumentError(f"{what}: {value!r} must be a positive size")
    return int(size)


def available_memory() -> int:
    """Bytes the system can still give (MemAvailable on Linux; physical memory elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def memory_budget(max_memory=None) -> int:
    """`max_memory` in bytes; None gives the default min(4 GiB, a quarter of what is available).
    Whoever asks for a budget works with large buffers: freed ones go back to the system."""
    release_freed_memory()
    if max_memory is None:
        return min(DEFAULT_CAP, available_memory() // 4)
    return parse_size(max_memory)


# glibc's mallopt parameter and the size from which allocations get their own mapping
_M_MMAP_THRESHOLD, MMAP_THRESHOLD = -3, 2**20
_released = False


def release_freed_memory() -> None:
    """Have freed large buffers go back to the system (glibc; elsewhere a no-op), once per process.

    glibc raises its mmap threshold as buffers are freed (up to 32 MiB), after which freed
    matrices of a few MiB stay in the heap as resident memory: measured +0.6 GiB on an 8-block
    compress. Fixing the threshold at 1 MiB maps each large buffer on its own, unmapped when
    freed (a page-fault per allocation: nothing next to the matrix products). Skipped when the
    user set MALLOC_MMAP_THRESHOLD_ themselves.
    """
    global _released
    if _released or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    _released = True
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):   # not glibc: its allocator keeps its own policy
        pass


def human(n: float) -> str:
    """Bytes as text with a binary unit: 1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TiB"


class Budget:
    """Bytes in use, at most `limit`: `acquire(n)` waits until n more fit. A request larger than
    the whole limit is granted alone (when nothing else is held), so one oversized item is still
    processed instead of waiting forever; `oversized` counts those."""

    def __init__(self, limit: int):
        self.limit, self.used, self.peak, self.oversized = int(limit), 0, 0, 0
        self._cv = threading.Condition()

    def acquire(self, n: int) -> None:
        """Take n bytes, waiting until they fit (or until nothing else is held)."""
        with self._cv:
            self._cv.wait_for(lambda: self.used + n <= self.limit or self.used == 0)
            if n > self.limit:
                self.oversized += 1
            self.used += n
            self.peak = max(self.peak, self.used)

    def release(self, n: int) -> None:
        """Give n bytes back."""
        with self._cv:
            self.used -= n
            self._cv.notify_all()
