"""The compression pipeline: calibration statistics, loss curves and factors, block by block.

The pipeline owns memory (llm-compressor's sequential onloading): at most one block (or part of
the frame: embeddings, final norm, head) is in memory at a time, and what must outlive a block —
the hidden states of the calibration batches at each block boundary, their gradients — goes to a
`Spill` that keeps it in memory up to a budget and in an offload folder beyond it.

1. calibrate: the frame runs the batches up to block 0 of a stack. Without gradient statistics,
   each block then runs forward with Gram hooks, and its loss curves are computed as soon as its
   statistics are complete. With them (fwsvd, whiten's output weighting), a forward pass stores
   each block's input, the frame gives dLoss/dh at the top, and a reverse pass recomputes each
   block from its stored input and back-propagates through it (activation checkpointing by
   hand), gathering Gram matrices and output gradients on the way; again the curves follow.
2. allocate: ranks from every matrix's curve under the global budget (api.py).
3. factorise: block by block again — sequential methods on the compressed stream's inputs
   (two streams side by side), the others from the stored statistics — and each finished block
   goes to the writer (the output files) or stays in the model.
A model with several stacks (an encoder and a decoder) runs them in turn: a later stack's
inputs come from running the model up to it (its earlier stacks in memory for that moment).
"""
from __future__ import annotations

import time
from dataclasses import replace

import torch

from .._progress import track
from ..errors import ArgumentError, EigenscopeError
from ..nn.surgery import lowrank_from_factors, set_module
from .allocate import Curve
from .blocks import stacks_of
from .hooks import GradHooks, GramHooks, PairHooks
from .registry import LayerStats, PairStats
from .targets import find_targets, target_bias, target_weight


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
        self.stacks = stacks_of(self.model)
        self.blocks = [(s, l, name) for s, st in enumerate(self.stacks)
                       for l, (name, _) in enumerate(st.blocks)]
        if hasattr(onloader, "set_blocks"):
            if len(self.stacks) > 1:   # a later stack runs the earlier ones to get its inputs
                raise ArgumentError(f"{type(self.model).__name__} has {len(self.stacks)} block "
                                    "stacks (an encoder and a decoder): compress it from memory "
                                    "(pass the loaded model), not block by block from disk")
            onloader.set_blocks([n for _, _, n in self.blocks if n])
        self.targets, self.dense = find_targets(self.model, job.layers, convs=job.convs)
        self.mine = {n: {t: m for t, m in self.targets.items() if not n or t.startswith(n + ".")}
                     for _, _, n in self.blocks}
        self.stats: dict[str, LayerStats] = {}
        self.seconds: dict[str, float] = {}
        self.store = cache.spill if cache is not None else spill   # outlives the call if cached
        self._loaded: dict = {}   # a block's stashed statistics, shared between its layers

    # ---- 1. statistics and curves ---------------------------------------------------------
    def curves(self) -> dict[str, Curve]:
        """Every target's loss curve (from the cache when it has them)."""
        key = (repr(self.job.cfg), self.job.layers)
        if self.cache is not None and self.cache.curves:
            if self.cache.key != key:
                raise ArgumentError(f"this StatsCache holds statistics of {self.cache.key[0]} "
                                    f"(layers={self.cache.key[1]!r}); use a new one for {key[0]}")
            self.stats = self.cache.stats
            return self.cache.curves
        needs = self.job.handler.needs(self.job.cfg)
        curves: dict[str, Curve] = {}
        for s, stack in enumerate(self.stacks):
            if not needs & {"gram", "absmean", "d_out", "fisher_w"}:   # weights only
                for l, (name, _) in enumerate(self._track(stack, "spectra")):
                    self._in_block(name, lambda: self._block_curves(name, curves))
            elif needs & {"d_out", "fisher_w"}:
                if len(self.stacks) > 1:
                    raise ArgumentError("gradient statistics (fwsvd, whiten's output weighting) "
                                        "need a model with one block stack; this one has "
                                        f"{len(self.stacks)}: use method 'whiten'")
                self._reverse_pass(s, self._enter(s), needs, curves)
            else:
                self._forward_pass(s, self._enter(s), needs, curves)
        if self.cache is not None:
            self.cache.curves, self.cache.stats, self.cache.key = curves, self.stats, key
        return curves

    def _track(self, stack, desc):
        return track(stack.blocks, desc, unit="block", enabled=self.job.progress)

    def _enter(self, s: int, stream: str = "h") -> list:
        """States entering stack s's block 0 (hidden states stored in the spill). The model
        runs up to there: the frame's way in (and earlier stacks, in memory: see __init__)."""
        self.on.load("frame-in")
        try:
            states = self.stacks[s].enter(self.batches)
        finally:
            self.on.unload("frame-in")
        for i, st in enumerate(states):
            if st.x is not None:
                self.spill.put((stream, s, 0, i), st.x)
                st.x = None
        return states

    def _forward_pass(self, s, states, needs, curves) -> None:
        for l, (name, _) in enumerate(self._track(self.stacks[s], "calibrating")):
            def work():
                hooks = GramHooks(self.mine[name], self.stats, absmean="absmean" in needs)
                for i, st in enumerate(states):
                    hooks.new_batch()
                    self._advance(s, l, i, st)
                hooks.remove()
                self._block_curves(name, curves)
            self._in_block(name, work)

    def _advance(self, s, l, i, st, *, keep_input: bool = False, stream: str = "h"):
        """Run block l of stack s on batch i's stored input; store the output as the next
        block's input. A whole-model pseudo-block just runs the model on the batch."""
        stack = self.stacks[s]
        if stack.whole:
            return stack.run(l, st)
        y = stack.run(l, st.moved(self.spill.get((stream, s, l, i))))
        self.spill.put((stream, s, l + 1, i), y)
        if not keep_input:
            self.spill.pop((stream, s, l, i))
        return y

    def _reverse_pass(self, s, states, needs, curves) -> None:
        stack = self.stacks[s]
        n_grad = min(self.job.grad_batches, len(states))
        if not stack.whole:
            for l, (name, _) in enumerate(self._track(stack, "forward")):
                self._in_block(name, lambda: [self._advance(s, l, i, st, keep_input=True)
                                              for i, st in enumerate(states)])
            self._in_block("frame-out", lambda: self._top_grads(s, states[:n_grad]), grad=True)
        back = track(range(len(stack.blocks) - 1, -1, -1), "gradients", unit="block",
                     enabled=self.job.progress)
        for l in back:
            self._in_block(stack.blocks[l][0], lambda: self._backward_block(
                s, l, states, n_grad, needs, curves), grad=True)

    def _top_grads(self, s, states) -> None:
        last = len(self.stacks[s].blocks)
        finals = [st.moved(self.spill.get(("h", s, last, i))) for i, st in enumerate(states)]
        for i, g in enumerate(self.stacks[s].top_grads(finals)):
            self.spill.put(("g", s, i), g)
        for i in range(len(self.batches)):
            self.spill.pop(("h", s, last, i))

    def _backward_block(self, s, l, states, n_grad, needs, curves) -> None:
        """Recompute block l from its stored inputs; back-propagate the stored output gradient."""
        stack, name = self.stacks[s], self.stacks[s].blocks[l][0]
        grams = GramHooks(self.mine[name], self.stats, absmean="absmean" in needs)
        grads = GradHooks(self.mine[name], outputs="d_out" in needs, weights="fisher_w" in needs)
        for i, st in enumerate(states):
            grams.new_batch()
            with torch.set_grad_enabled(i < n_grad):
                if stack.whole:
                    stack.loss(st).backward() if i < n_grad else stack.run(l, st)
                else:
                    x = self.spill.get(("h", s, l, i)).requires_grad_(i < n_grad)
                    y = stack.run(l, st.moved(x))
                    if i < n_grad:
                        y.backward(self.spill.get(("g", s, i)))
                        self.spill.put(("g", s, i), x.grad)
                    self.spill.pop(("h", s, l, i))
            grads.after_backward()
        grams.remove()
        grads.remove()
        grads.into(self.stats)
        self._block_curves(name, curves)

    def _block_curves(self, name, curves) -> None:
        job = self.job
        for t, layer in self.mine[name].items():
            st = self.stats.setdefault(t, LayerStats())
            W = target_weight(layer)
            s = job.handler.spectrum(job.cfg, W, st, layer=t, state=job.state)
            curves[t] = Curve(t, W.shape[0], W.shape[1], s.cpu(),
                              normalise=not job.handler.loss_units(job.cfg))
        self._stash(name, keep=not self._sequential())
        job.state.forget()          # the block's whitening factors: not needed by the next one

    _BIG = ("gram", "fisher_w")

    def _stash(self, name, *, keep: bool) -> None:
        """Move a block's big statistics into the store (a tensor shared by several layers
        once), or drop them when the factors will come from the compressed stream's own
        statistics. Keys are layer names: tensor ids are reused once a tensor is freed."""
        keys: dict[int, tuple] = {}
        for t in self.mine[name]:
            st = self.stats[t]
            for what in self._BIG:
                x = getattr(st, what)
                if x is None or not keep:
                    continue
                if id(x) not in keys:
                    keys[id(x)] = ("s", what, t)
                    self.store.put(keys[id(x)], x)
                st.stashed[what] = keys[id(x)]
        for t in self.mine[name]:
            for what in self._BIG:
                setattr(self.stats[t], what, None)

    def unstashed(self, name) -> LayerStats:
        """A layer's statistics with every stashed one back in memory (a copy; layers that
        read one input share one Gram tensor)."""
        return self._unstash(name)

    def _unstash(self, name) -> LayerStats:
        """A copy of a layer's statistics with its stashed ones back in memory (shared between
        the layers of the block that read one input)."""
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
        return (self.job.handler.sequential(self.job.cfg) and self.job.heldout > 0
                and not any(st.whole for st in self.stacks))

    def factorise(self, ranks: dict, *, keep: bool) -> None:
        """Replace every target by its factors at `ranks`, block by block, stack by stack."""
        seq = self._sequential()
        for s, stack in enumerate(self.stacks):
            states = self._enter(s, "c") if seq else None
            if seq:
                for i in range(len(states)):
                    self.spill.put(("h", s, 0, i), self.spill.get(("c", s, 0, i)))
            for l, (name, _) in enumerate(self._track(stack, "compressing")):
                t0 = time.perf_counter()
                self.on.load(name)
                with torch.no_grad():
                    pairs = self._pair_stats(s, l, states) if seq else {}
                    self._replace(name, ranks, pairs)
                    if seq:
                        self._advance_compressed(s, l, states)
                self._loaded.clear()
                self.job.state.forget()
                if self.writer is not None:
                    self.writer.add_block(name, stack.blocks[l][1])
                self.on.unload(name, keep=keep)
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def _pair_stats(self, s, l, states) -> dict[str, PairStats]:
        name = self.stacks[s].blocks[l][0]
        hooks = PairHooks(self.mine[name])
        n_train = len(states) - self.job.heldout
        for i, st in enumerate(states):
            hooks.prefix = "h" if i >= n_train else "g"
            hooks.mode = "orig"
            self._advance(s, l, i, st)                                      # original stream
            hooks.mode, hooks.batch_cache = "comp", {}
            self.stacks[s].run(l, st.moved(self.spill.get(("c", s, l, i))))  # compressed stream
        hooks.remove()
        return {n: PairStats(**hooks.stats[n]) for n in self.mine[name]}

    def _advance_compressed(self, s, l, states) -> None:
        for i, st in enumerate(states):
            self._advance(s, l, i, st, stream="c")

    def _replace(self, name, ranks, pairs) -> None:
        job = self.job
        for t, layer in self.mine[name].items():
            if ranks.get(t) is None:
                continue
            st = self._unstash(t)
            if t in pairs:
                st = st.sequential(pairs[t])
            W = target_weight(layer)
            B, A = job.handler.factors(job.cfg, W, st, ranks[t], layer=t, state=job.state)
            if not (torch.isfinite(B).all() and torch.isfinite(A).all()):
                raise EigenscopeError(f"{t}: factorisation produced NaN/inf (check the "
                                      "calibration statistics)")
            set_module(self.model, t, lowrank_from_factors(layer, B.to(W), A.to(W),
                                                           target_bias(layer)))
