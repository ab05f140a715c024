"""Sequential, error-compensating compression: block l+1 is calibrated on the outputs of the
already compressed blocks l' <= l (methods.md §2).

Two streams of hidden states run side by side: X_o through the original blocks, X_c through the
compressed ones. For each targeted Linear we gather, on the training slice of the calibration
batches, g_cc = X_c X_c^T and g_oc = X_o X_c^T, and on the held-out slice h_oo, h_oc, h_cc, which
the method uses to choose how far to trust the compensated target (it overfits otherwise).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .._progress import track
from ..nn.surgery import set_module
from .calibrate import capture_block_inputs, find_blocks, run_block
from .registry import PairStats


class _PairHooks:
    """First pass (original stream) stores each Linear's input; second pass (compressed stream)
    adds the cross products into the stats — keys g_* on training batches, h_* on held-out ones."""

    def __init__(self, linears: dict[str, nn.Linear]):
        self.linears, self.saved, self.mode, self.prefix, self.batch_cache = linears, {}, "orig", "g", {}
        self.stats: dict[str, dict[str, torch.Tensor]] = {n: {} for n in linears}
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in linears.items()]

    def _hook(self, name):
        def hook(mod, inp, out):
            if self.mode == "orig":
                self.saved[name] = inp[0].detach().reshape(-1, inp[0].shape[-1]).float()  # (T, n)
                return
            xo = self.saved.pop(name)
            owner = self.batch_cache.setdefault(id(inp[0]), (name, inp[0]))[0]
            if owner != name:  # same input as an earlier Linear (q/k/v): share its sums
                self.stats[name] = self.stats[owner]
                return
            x = inp[0].detach().reshape(-1, inp[0].shape[-1]).float()  # (T, n)
            ex, p = self.stats[name], self.prefix
            for key, prod in ((f"{p}_cc", x.T @ x), (f"{p}_oc", xo.T @ x)):
                ex[key] = prod.double() if key not in ex else ex[key].add_(prod.double())
            if p == "h":
                ex["h_oo"] = (xo.T @ xo).double() + ex.get("h_oo", 0)
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def sequential_compress(model: nn.Module, batches: list[torch.Tensor], targets: dict[str, nn.Linear],
                        compress_one: Callable[[str, nn.Linear, PairStats], nn.Module | None],
                        *, heldout: int = 0, progress: bool = False) -> None:
    """Compress block by block. `compress_one(name, linear, pair)` returns the replacement module
    (or None to keep the Linear); the last `heldout` batches only choose settings."""
    blocks = find_blocks(model)
    inputs = capture_block_inputs(model, blocks, batches)   # per batch: (x (b, T, d), args, kw)
    xo = [x for x, _, _ in inputs]
    xc = list(xo)
    for bname, block in track(blocks, "compressing", unit="block", enabled=progress):
        mine = {n: m for n, m in targets.items() if n.startswith(bname + ".")}
        hooks = _PairHooks(mine)
        with torch.no_grad():
            for i, (_, args, kw) in enumerate(inputs):
                hooks.prefix = "h" if i >= len(inputs) - heldout else "g"
                hooks.mode = "orig"
                xo[i] = run_block(block, xo[i], args, kw)   # original stream moves on
                hooks.mode, hooks.batch_cache = "comp", {}
                run_block(block, xc[i], args, kw)           # same block, compressed-stream inputs
        hooks.remove()
        for name, lin in mine.items():
            new = compress_one(name, lin, PairStats(**hooks.stats[name]))
            if new is not None:
                set_module(model, name, new)
        with torch.no_grad():
            for i, (_, args, kw) in enumerate(inputs):
                xc[i] = run_block(block, xc[i], args, kw)   # through the compressed block
