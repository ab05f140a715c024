"""Progress bars: tqdm on a terminal, silent when disabled (library use). One place for all."""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator


@contextlib.contextmanager
def progress_bar(total: int, desc: str, *, unit: str = "matrix", enabled: bool = True):
    """A bar with `.update(n)` and `.set_postfix_str(s)`; a do-nothing one when disabled."""
    if not enabled:
        yield _Null()
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False) as bar:
        yield bar


def track(items: Iterable, desc: str, *, unit: str, enabled: bool = True,
          total: int | None = None) -> Iterator:
    """`items`, with a bar while they are consumed when `enabled`."""
    if not enabled:
        yield from items
        return
    from tqdm.auto import tqdm

    yield from tqdm(items, desc=desc, unit=unit, total=total, dynamic_ncols=True, leave=False)


class _Null:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass
