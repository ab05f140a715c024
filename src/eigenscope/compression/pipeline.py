"""The compression pipeline: calibration statistics, loss curves and factors, block by block.

The pipeline owns memory (llm-compressor's sequential onloading): at most one block (or the
frame: embeddings, final norm, head) is in memory at a time, and what must outlive a block — the
hidden states of the calibration batches at each block boundary, their gradients — goes to a
`Spill` that keeps it in memory up to a budget and in an offload folder beyond it.

1. calibrate: the frame runs the batches up to block 0. Without gradient statistics, each block
   then runs forward with Gram hooks, and its loss curves are computed as soon as its statistics
   are complete. With them (fwsvd, whiten's output weighting), a forward pass stores each
   block's input, the frame gives dLoss/dh at the top, and a reverse pass recomputes each block
   from its stored input and back-propagates through it (activation checkpointing by hand),
   gathering Gram matrices and output gradients on the way; again the block's curves follow.
2. allocate: ranks from every matrix's curve under the global budget.
3. factorise: block by block again — sequential methods on the compressed stream's inputs
   (two streams side by side), the others from the stored statistics — and each finished block
   goes to the writer (the output files) or stays in the model.
"""
from __future__ import annotations

import time
from dataclasses import replace

import torch

from .._progress import track
from ..nn.lowrank import LowRankLinear
from ..nn.surgery import set_module
from .allocate import Curve, allocate
from .blocks import Stack
from .hooks import GradHooks, GramHooks, PairHooks
from .registry import LayerStats, PairStats


class Pipeline:
    """One compress call's passes over a model (see the module docstring).

    onloader -- compression.onload.InMemory or FromSource
    job      -- compression.api.Job: method, allocation and calibration settings
    batches  -- calibration batches (eigenscope.inputs)
    spill    -- where stored hidden states and gradients go (compression.spill.Spill)
    writer   -- a compression.io.ShardWriter receiving each finished block, or None
    cache    -- a StatsCache filled on the first call and reused by later ones, or None
    """

    def __init__(self, onloader, job, batches, spill, *, writer=None, cache=None):
        self.on, self.job, self.batches, self.spill = onloader, job, batches, spill
        self.writer, self.cache = writer, cache
        self.model = onloader.model
        self.stack = Stack(self.model)
        if not self.stack.whole and hasattr(onloader, "set_blocks"):
            onloader.set_blocks([name for name, _ in self.stack.blocks])
        from .targets import target_linears
        self.targets = target_linears(self.model, job.layers)
        self.by_block = _by_block(self.targets, self.stack)
        self.stats: dict[str, LayerStats] = {}
        self.seconds: dict[str, float] = {}
        self.store = cache.spill if cache is not None else spill   # outlives the call if cached
        self._loaded: dict = {}   # a block's stashed statistics, shared between its Linears

    # ---- 1. statistics and curves ---------------------------------------------------------
    def curves(self) -> dict[str, Curve]:
        """Every target's loss curve (from the cache when it has them)."""
        if self.cache is not None and self.cache.curves:
            self.stats = self.cache.stats
            return self.cache.curves
        needs = self.job.handler.needs(self.job.cfg)
        curves: dict[str, Curve] = {}
        if needs & {"gram", "absmean", "d_out", "fisher_w"}:
            states = self._enter()
            if needs & {"d_out", "fisher_w"}:
                self._reverse_pass(states, needs, curves)
            else:
                self._forward_pass(states, needs, curves)
        else:  # no calibration: each block only needs its weights
            for i, (bname, _) in enumerate(track(self.stack.blocks, "spectra", unit="block",
                                                 enabled=self.job.progress)):
                self._in_block(bname, lambda: self._block_curves(i, curves))
        if self.cache is not None:
            self.cache.curves, self.cache.stats = curves, self.stats
        return curves

    def _enter(self) -> list:
        """States entering block 0, their hidden states stored in the spill."""
        self.on.load("frame")
        states = self.stack.enter(self.batches)
        self.on.unload("frame")
        for i, st in enumerate(states):
            if st.x is not None:
                self.spill.put(("h", 0, i), st.x)
                st.x = None
        return states

    def _forward_pass(self, states, needs, curves) -> None:
        for l, (bname, _) in enumerate(track(self.stack.blocks, "calibrating", unit="block",
                                             enabled=self.job.progress)):
            def work():
                hooks = GramHooks(self.by_block[l], self.stats, absmean="absmean" in needs)
                with torch.no_grad():
                    for i, st in enumerate(states):
                        hooks.new_batch()
                        self._advance(l, i, st)
                hooks.remove()
                self._block_curves(l, curves)
            self._in_block(bname, work)

    def _advance(self, l, i, st, *, keep_input: bool = False):
        """Run block l on batch i's stored input; store its output as block l+1's input."""
        x = self.spill.get(("h", l, i)) if not self.stack.whole else None
        y = self.stack.run(l, st.moved(x))
        if not self.stack.whole:
            self.spill.put(("h", l + 1, i), y)
            if not keep_input:
                self.spill.pop(("h", l, i))
        return y

    def _reverse_pass(self, states, needs, curves) -> None:
        n_grad = min(self.job.grad_batches, len(states))
        if not self.stack.whole:
            for l, (bname, _) in enumerate(track(self.stack.blocks, "forward", unit="block",
                                                 enabled=self.job.progress)):
                self._in_block(bname, lambda: [self._advance(l, i, st, keep_input=True)
                                               for i, st in enumerate(states)], grad=False)
            last = len(self.stack.blocks)
            self._in_block("frame", lambda: self._top_grads(states[:n_grad], last), grad=True)
        blocks = list(enumerate(self.stack.blocks))[::-1]
        for l, (bname, _) in track(blocks, "gradients", unit="block", enabled=self.job.progress):
            self._in_block(bname, lambda: self._backward_block(l, states, n_grad, needs, curves),
                           grad=True)

    def _top_grads(self, states, last) -> None:
        finals = [st.moved(self.spill.get(("h", last, i))) for i, st in enumerate(states)]
        for i, g in enumerate(self.stack.top_grads(finals)):
            self.spill.put(("g", i), g)
        for i in range(len(self.batches)):
            self.spill.pop(("h", last, i))

    def _backward_block(self, l, states, n_grad, needs, curves) -> None:
        """Recompute block l from its stored inputs; back-propagate the stored output gradient."""
        mine = self.by_block[l]
        grams = GramHooks(mine, self.stats, absmean="absmean" in needs)
        grads = GradHooks(mine, outputs="d_out" in needs, weights="fisher_w" in needs)
        for i, st in enumerate(states):
            grams.new_batch()
            with torch.set_grad_enabled(i < n_grad):
                x = None if self.stack.whole else self.spill.get(("h", l, i)).requires_grad_(i < n_grad)
                if self.stack.whole:
                    self.stack.loss(st).backward() if i < n_grad else self.stack.run(l, st)
                else:
                    y = self.stack.run(l, st.moved(x))
                    if i < n_grad:
                        y.backward(self.spill.get(("g", i)))
                        self.spill.put(("g", i), x.grad)
            grads.after_backward()
            if not self.stack.whole:
                self.spill.pop(("h", l, i))
        grams.remove()
        grads.remove()
        grads.into(self.stats)
        self._block_curves(l, curves)

    def _block_curves(self, l, curves) -> None:
        job = self.job
        for name, lin in self.by_block[l].items():
            st = self.stats.setdefault(name, LayerStats())
            W = lin.weight.detach()
            s = job.handler.spectrum(job.cfg, W, st, layer=name, state=job.state)
            curves[name] = Curve(name, W.shape[0], W.shape[1], s.cpu(),
                                 normalise=not job.handler.loss_units(job.cfg))
        self._stash(l, keep=not self._sequential())

    _BIG = ("gram", "fisher_w")

    def _stash(self, l, *, keep: bool) -> None:
        """Move block l's big statistics into the store (a tensor shared by several Linears
        once), or drop them when the factors will come from the compressed stream's own
        statistics. Keys are layer names: tensor ids are reused once a tensor is freed."""
        keys: dict[int, tuple] = {}
        for name in self.by_block[l]:
            st = self.stats[name]
            for what in self._BIG:
                t = getattr(st, what)
                if t is None or not keep:
                    continue
                if id(t) not in keys:
                    keys[id(t)] = ("s", what, name)
                    self.store.put(keys[id(t)], t)
                st.stashed[what] = keys[id(t)]
        for name in self.by_block[l]:
            for what in self._BIG:
                setattr(self.stats[name], what, None)

    def _unstash(self, name) -> LayerStats:
        """A copy of the layer's statistics with its stashed ones back in memory (shared
        between the Linears of the block that read one input)."""
        st = self.stats.get(name, LayerStats())
        back = {}
        for what, key in st.stashed.items():
            if key not in self._loaded:
                self._loaded[key] = self.store.get(key)
            back[what] = self._loaded[key]
        return replace(st, **back) if back else st

    def _in_block(self, part, work, *, grad: bool = False):
        """Onload `part`, run `work`, give the part back; time it per block."""
        t0 = time.perf_counter()
        self.on.load(part)
        try:
            with torch.set_grad_enabled(grad):
                return work()
        finally:
            self.on.unload(part)
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - t0

    # ---- 3. factors -----------------------------------------------------------------------
    def _sequential(self) -> bool:
        return (self.job.handler.sequential(self.job.cfg) and not self.stack.whole
                and self.job.heldout > 0)

    def factorise(self, ranks: dict, *, keep: bool) -> None:
        """Replace every target by its factors at `ranks`, block by block."""
        seq = self._sequential()
        states = self._enter() if seq else None
        if seq:
            for i in range(len(states)):
                self.spill.put(("c", 0, i), self.spill.get(("h", 0, i)))
        for l, (bname, _) in enumerate(track(self.stack.blocks, "compressing", unit="block",
                                             enabled=self.job.progress)):
            t0 = time.perf_counter()
            self.on.load(bname)
            with torch.no_grad():
                pairs = self._pair_stats(l, states) if seq else {}
                self._replace(l, ranks, pairs)
                if seq:
                    self._advance_compressed(l, states)
            self._loaded.clear()
            if self.writer is not None:
                self.writer.add_block(bname, self.stack.blocks[l][1])
            self.on.unload(bname, keep=keep)
            self.seconds[bname] = self.seconds.get(bname, 0.0) + time.perf_counter() - t0

    def _pair_stats(self, l, states) -> dict[str, PairStats]:
        hooks = PairHooks(self.by_block[l])
        n_train = len(states) - self.job.heldout
        for i, st in enumerate(states):
            hooks.prefix = "h" if i >= n_train else "g"
            hooks.mode = "orig"
            self._advance(l, i, st)                                     # original stream
            hooks.mode, hooks.batch_cache = "comp", {}
            self.stack.run(l, st.moved(self.spill.get(("c", l, i))))    # compressed stream
        hooks.remove()
        return {n: PairStats(**hooks.stats[n]) for n in self.by_block[l]}

    def _advance_compressed(self, l, states) -> None:
        for i, st in enumerate(states):
            y = self.stack.run(l, st.moved(self.spill.get(("c", l, i))))
            self.spill.put(("c", l + 1, i), y)
            self.spill.pop(("c", l, i))

    def _replace(self, l, ranks, pairs) -> None:
        job = self.job
        for name, lin in self.by_block[l].items():
            if ranks.get(name) is None:
                continue
            st = self._unstash(name)
            if name in pairs:
                st = st.sequential(pairs[name])
            W = lin.weight.detach()
            B, A = job.handler.factors(job.cfg, W, st, ranks[name], layer=name, state=job.state)
            if not (torch.isfinite(B).all() and torch.isfinite(A).all()):
                from ..errors import EigenscopeError
                raise EigenscopeError(f"{name}: factorisation produced NaN/inf (check the "
                                      "calibration statistics)")
            bias = None if lin.bias is None else lin.bias.detach()
            set_module(self.model, name, LowRankLinear.from_factors(B.to(W), A.to(W), bias))


def _by_block(targets: dict, stack: Stack) -> list[dict]:
    """The targets of each block, in block order (a whole-model stack has one block)."""
    if stack.whole:
        return [dict(targets)]
    out = [{} for _ in stack.blocks]
    for name, lin in targets.items():
        for l, (bname, _) in enumerate(stack.blocks):
            if name.startswith(bname + "."):
                out[l][name] = lin
                break
    return out
