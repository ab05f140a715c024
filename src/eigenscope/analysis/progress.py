"""A progress bar that is silent when disabled (library use) and tqdm on a terminal."""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def progress_bar(total: int, desc: str, *, enabled: bool = True):
    if not enabled:
        yield _Null()
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit="matrix", dynamic_ncols=True, leave=False) as bar:
        yield bar


class _Null:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass
