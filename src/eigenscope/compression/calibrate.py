"""Calibration: Gram matrices G = X X^T of every targeted Linear's input, one block at a time.

The embeddings run once; the hidden states entering the first block are kept and pushed through
the blocks one by one, so memory holds one block's activations, never the whole model's.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from .._progress import track
from ..errors import EigenscopeError
from ..inputs import call_model
from .registry import LayerStats


class _Stop(Exception):
    """Raised by the hook on block 0: nothing after the first block needs to run."""


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


def _hidden(args, kwargs):
    return args[0] if args else kwargs["hidden_states"]


def run_block(block: nn.Module, x: torch.Tensor, args, kwargs) -> torch.Tensor:
    """block(x, *rest, **kwargs) -> its hidden-state output (HF layers may return tuples)."""
    if args:
        out = block(x, *args[1:], **kwargs)
    else:
        out = block(**{**kwargs, "hidden_states": x})
    return out[0] if isinstance(out, (tuple, list)) else out


def capture_block_inputs(model, blocks, batches) -> list[tuple[torch.Tensor, tuple, dict]]:
    """Per batch: (hidden state entering block 0 (b, T, d), its positional args, its kwargs)."""
    store = []

    def pre(mod, args, kwargs):
        store.append((_hidden(args, kwargs).detach(), args, kwargs))
        raise _Stop

    h = blocks[0][1].register_forward_pre_hook(pre, with_kwargs=True)
    try:
        with torch.no_grad():
            for ids in batches:
                try:
                    call_model(model, ids)
                except _Stop:
                    pass
    finally:
        h.remove()
    return store


class GramHooks:
    """Forward hooks adding x^T x (and sum |x|) of each Linear's input into its LayerStats.

    Linears fed the same tensor (q/k/v, gate/up) share one product per batch: the cache is keyed
    by the input tensor's identity. Products run in `dtype`, the running sums are float64.
    """

    def __init__(self, linears: dict[str, nn.Linear], stats: dict[str, LayerStats], *,
                 absmean: bool = False, dtype=torch.float32):
        self.stats, self.absmean, self.dtype, self.cache = stats, absmean, dtype, {}
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in linears.items()]

    def _hook(self, name):
        def hook(mod, inp, out):
            # the cache keeps the tensor alive, so its id cannot be reused within the batch
            key = id(inp[0])
            if key not in self.cache:
                x2 = inp[0].detach().reshape(-1, inp[0].shape[-1]).to(self.dtype)  # (T, n)
                self.cache[key] = dict(x=inp[0], g=(x2.T @ x2).double(), a=x2.abs().sum(0).double(),
                                       t=x2.shape[0], added=set())
            c = self.cache[key]
            st = self.stats.setdefault(name, LayerStats())
            if st.gram is None:  # Linears with one input share one Gram tensor (one eigh later)
                st.gram = c.setdefault("first", c["g"].clone())
                c["added"].add(id(st.gram))
            elif id(st.gram) not in c["added"]:
                st.gram.add_(c["g"])
                c["added"].add(id(st.gram))
            if self.absmean:
                st.abssum = c["a"].clone() if st.abssum is None else st.abssum.add_(c["a"])
            st.tokens += c["t"]
        return hook

    def new_batch(self):
        """Forget the previous batch's shared products (call before each batch)."""
        self.cache.clear()

    def remove(self):
        """Detach the hooks and drop cached products."""
        for h in self.handles:
            h.remove()
        self.cache.clear()


def collect_stats(model, batches, targets: dict[str, nn.Linear], *, absmean: bool = False,
                  progress: bool = False, dtype=torch.float32) -> dict[str, LayerStats]:
    """One pass, block by block, over the calibration batches of token ids (b, T)."""
    stats: dict[str, LayerStats] = {}
    blocks = find_blocks(model)
    if not blocks:  # no repeated blocks: hooks on the whole model, one forward per batch
        hooks = GramHooks(targets, stats, absmean=absmean, dtype=dtype)
        with torch.no_grad():
            for ids in batches:
                hooks.new_batch()
                call_model(model, ids)
        hooks.remove()
        return stats
    inputs = capture_block_inputs(model, blocks, batches)
    for bname, block in track(blocks, "calibrating", unit="block", enabled=progress):
        mine = {n: m for n, m in targets.items() if n.startswith(bname + ".")}
        hooks = GramHooks(mine, stats, absmean=absmean, dtype=dtype)
        with torch.no_grad():
            for i, (x, args, kw) in enumerate(inputs):
                hooks.new_batch()
                inputs[i] = (run_block(block, x, args, kw), args, kw)
        hooks.remove()
    return stats
