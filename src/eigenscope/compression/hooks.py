"""Hooks that gather calibration statistics of the targeted Linears while a block runs.

GramHooks   -- G = X X^T (and sum |x|) of each Linear's input (forward)
GradHooks   -- d_out: sum over tokens of (dLoss/dy)^2 per output channel; fisher_w: squared
               weight gradients (backward through a block recomputed from its stored input)
PairHooks   -- sequential calibration: X_o (original stream) against X_c (compressed stream)
Running sums are float64. Linears fed the same tensor (q/k/v, gate/up) share one product per
batch (keyed by the input tensor's identity), and share one Gram tensor.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import LayerStats


def input_rows(mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The inputs a layer's weight matrix W (m, n) multiplies, one row per token: (T, n). A
    Conv2d multiplies unfolded patches (in * kh * kw each, one per output position)."""
    if isinstance(mod, nn.Conv2d):
        cols = F.unfold(x, mod.kernel_size, dilation=mod.dilation, padding=mod.padding,
                        stride=mod.stride)                        # (b, in * kh * kw, L)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return x.reshape(-1, x.shape[-1])


def output_rows(mod: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """A layer's outputs (or their gradients), one row per token: (T, m)."""
    if isinstance(mod, nn.Conv2d):
        return y.transpose(1, -1).reshape(-1, y.shape[1])          # channels last
    return y.reshape(-1, y.shape[-1])


class _Hooks:
    def __init__(self, linears: dict[str, nn.Module], hook, **kw):
        self.handles = [m.register_forward_hook(hook(n), **kw) for n, m in linears.items()]

    def remove(self):
        """Detach the hooks."""
        for h in self.handles:
            h.remove()
        self.handles = []


class GramHooks(_Hooks):
    """Forward hooks adding x^T x (and sum |x|) of each Linear's input into its LayerStats.
    Products run in `dtype` (float32: fast; the running sums are float64)."""

    def __init__(self, linears, stats: dict[str, LayerStats], *, absmean: bool = False,
                 dtype=torch.float32):
        self.stats, self.absmean, self.dtype, self.cache = stats, absmean, dtype, {}
        super().__init__(linears, self._hook)

    def _hook(self, name):
        def hook(mod, inp, out):
            # the cache keeps the tensor alive, so its id cannot be reused within the batch
            key = id(inp[0])
            if key not in self.cache:
                x2 = input_rows(mod, inp[0].detach()).to(self.dtype)  # (T, n)
                self.cache[key] = dict(x=inp[0], g=(x2.T @ x2).double(),
                                       a=x2.abs().sum(0).double(), t=x2.shape[0], added=set())
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
        super().remove()
        self.cache.clear()


class GradHooks(_Hooks):
    """Output-gradient sums (d_out) and, with `weights`, squared weight gradients (fisher_w) of
    each Linear, over the backward passes run while attached."""

    def __init__(self, linears, *, outputs: bool = True, weights: bool = False):
        self.linears, self.weights = linears, weights
        self.sq = {n: None for n in linears}
        self.count = {n: 0 for n in linears}
        self.fw = {n: None for n in linears}
        super().__init__(linears if outputs else {}, self._hook)
        if weights:
            for m in linears.values():
                m.weight.requires_grad_(True)

    def _hook(self, name):
        def hook(mod, inp, out):
            def grad_hook(g):  # g (b, T, m): gradient of the batch's summed token losses
                rows = output_rows(mod, g.detach())                       # (T, m)
                g2 = rows.double().pow(2).sum(0)
                self.sq[name] = g2 if self.sq[name] is None else self.sq[name] + g2
                self.count[name] += rows.shape[0]
            if out.requires_grad:
                out.register_hook(grad_hook)
        return hook

    def after_backward(self):
        """Fold the weight gradients of the last backward pass into fisher_w."""
        for n, m in self.linears.items():
            if self.weights and m.weight.grad is not None:
                g2 = _as_matrix(m, m.weight.grad).double().pow(2)
                self.fw[n] = g2 if self.fw[n] is None else self.fw[n] + g2
            m.weight.grad = None

    def into(self, stats: dict[str, LayerStats]) -> None:
        """Write d_out (and fisher_w) into `stats` and stop tracking weight gradients."""
        for n, m in self.linears.items():
            st = stats.setdefault(n, LayerStats())
            if self.weights:
                st.fisher_w = self.fw[n]
                m.weight.requires_grad_(False)
            if self.sq[n] is not None:
                d = (self.sq[n] / max(self.count[n], 1)).sqrt()
                st.d_out = d.clamp_min(1e-3 * float(d.mean()) + 1e-30)  # no channel weighted 0


class PairHooks(_Hooks):
    """Sequential calibration, per batch: the original-stream pass ("orig") stores each Linear's
    input; the compressed-stream pass adds the cross products — g_* on training batches, h_* on
    held-out ones (set `prefix`)."""

    def __init__(self, linears):
        self.saved, self.mode, self.prefix, self.batch_cache = {}, "orig", "g", {}
        self.stats: dict[str, dict[str, torch.Tensor]] = {n: {} for n in linears}
        super().__init__(linears, self._hook)

    def _hook(self, name):
        def hook(mod, inp, out):
            if self.mode == "orig":
                self.saved[name] = input_rows(mod, inp[0].detach()).float()  # (T, n)
                return
            xo = self.saved.pop(name)
            owner = self.batch_cache.setdefault(id(inp[0]), (name, inp[0]))[0]
            if owner != name:  # same input as an earlier Linear (q/k/v): share its sums
                self.stats[name] = self.stats[owner]
                return
            x = input_rows(mod, inp[0].detach()).float()  # (T, n)
            ex, p = self.stats[name], self.prefix
            for key, prod in ((f"{p}_cc", x.T @ x), (f"{p}_oc", xo.T @ x)):
                ex[key] = prod.double() if key not in ex else ex[key].add_(prod.double())
            if p == "h":
                ex["h_oo"] = (xo.T @ xo).double() + ex.get("h_oo", 0)
        return hook


def _as_matrix(mod: nn.Module, w: torch.Tensor) -> torch.Tensor:
    """A weight-shaped tensor (a gradient) in the (out, in) orientation of targets.target_weight."""
    from .targets import is_conv1d
    if is_conv1d(mod):
        return w.T
    return w.reshape(w.shape[0], -1)


def gram_statistics(model: nn.Module, inputs=None, *, tokenizer=None, layers: str | None = None,
                    n_seqs: int = 32, seq_len: int = 256, batch_size: int = 8,
                    progress: bool = False) -> dict[str, LayerStats]:
    """{Linear name: LayerStats with the Gram matrix X X^T of its inputs} over calibration
    inputs (eigenscope.inputs; default: the pydoc text), in one pass of the whole model: what
    quantize_'s activation-aware error correction needs. Targets as compress chooses them."""
    from .._progress import track
    from ..inputs import call_model, model_batches, tokenizer_for
    from .targets import target_linears

    batches = model_batches(inputs, tokenizer=tokenizer or tokenizer_for(model), n_seqs=n_seqs,
                            seq_len=seq_len, batch_size=batch_size)
    targets = {n: m for n, m in target_linears(model, layers).items() if isinstance(m, nn.Linear)}
    stats: dict[str, LayerStats] = {}
    hooks = GramHooks(targets, stats)
    try:
        with torch.no_grad():
            for batch in track(batches, "statistics", unit="batch", enabled=progress):
                hooks.new_batch()
                call_model(model, batch)
    finally:
        hooks.remove()
    return stats
