"""What `compress` targets: the repeated blocks of a model and the Linear layers inside them."""
from __future__ import annotations

import re

from torch import nn

from ..errors import EigenscopeError


def find_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The repeated blocks (decoder/encoder layers): the largest ModuleList of Linear-holding modules."""
    best = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and all(
                any(isinstance(x, nn.Linear) for x in child.modules()) for child in mod):
            size = sum(p.numel() for p in mod.parameters())
            if best is None or size > best[0]:
                best = (size, name, mod)
    if best is None:
        return []
    return [(f"{best[1]}.{i}" if best[1] else str(i), b) for i, b in enumerate(best[2])]


def target_linears(model: nn.Module, layers: str | None = None) -> dict[str, nn.Linear]:
    """Default: every nn.Linear inside the blocks; never embeddings or an lm_head.

    Without blocks: every Linear whose weight is not shared with an embedding and not `lm_head`.
    `layers` is a regex on full module names that further filters the choice.
    """
    blocks = find_blocks(model)
    if blocks:
        found = {f"{bn}.{n}": m for bn, b in blocks for n, m in b.named_modules() if isinstance(m, nn.Linear)}
    else:
        tied = {m.weight.data_ptr() for m in model.modules() if isinstance(m, nn.Embedding)}
        found = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)
                 and m.weight.data_ptr() not in tied and not n.endswith("lm_head")}
    if layers:
        pat = re.compile(layers)
        found = {n: m for n, m in found.items() if pat.search(n)}
    if not found:
        raise EigenscopeError(f"{type(model).__name__}: no nn.Linear layer to compress"
                              + (f" matches {layers!r}" if layers else ""))
    return found
