"""How hidden states move through a model's repeated blocks, one block at a time.

A `Stack` runs the model only up to its first block once (`enter`: the hidden states entering
block 0, with the positional/keyword arguments the model gives its blocks), then each block on
its own (`run`), so that one block at a time needs to be in memory. `top_grads` runs what comes
after the blocks (final norm, head, loss) with the model's own code, by standing stubs in for
the blocks that return stored hidden states. A model without repeated blocks is one pseudo-block:
the whole model run on each batch.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import EigenscopeError
from ..inputs import call_model, lm_labels
from ..nn.surgery import set_module
from .targets import find_stacks


class _Stop(Exception):
    """Raised by the hook on block 0: nothing after the first block needs to run."""


class State:
    """One batch entering a block: hidden states x (b, T, d) and the block's other arguments."""

    __slots__ = ("x", "args", "kwargs", "batch")

    def __init__(self, x, args=(), kwargs=None, batch=None):
        self.x, self.args, self.kwargs, self.batch = x, args, kwargs or {}, batch

    def moved(self, x) -> "State":
        """The same batch with new hidden states (the next block's input)."""
        return State(x, self.args, self.kwargs, self.batch)


def stacks_of(model: nn.Module) -> list["Stack"]:
    """The model's block stacks in the order they run (an encoder, then its decoder), or the
    whole model as one pseudo-block."""
    return [Stack(model, blocks) for blocks in find_stacks(model)] or [Stack(model, None)]


class Stack:
    """One stack of repeated blocks of `model` ([(name, module)]); None: the whole model."""

    def __init__(self, model: nn.Module, blocks):
        self.model = model
        self.whole = not blocks
        self.blocks = [("", model)] if self.whole else list(blocks)
        self.tuple_out = False

    def enter(self, batches) -> list[State]:
        """The states entering block 0, one per batch (runs only what precedes the blocks)."""
        if self.whole:
            return [State(None, batch=b) for b in batches]
        store: list[State] = []

        def pre(mod, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            store.append(State(x.detach(), args, kwargs))
            raise _Stop

        h = self.blocks[0][1].register_forward_pre_hook(pre, with_kwargs=True)
        try:
            with torch.no_grad():
                for batch in batches:
                    try:
                        call_model(self.model, batch)
                    except _Stop:
                        pass
                    store[-1].batch = batch
        finally:
            h.remove()
        return store

    def run(self, i: int, state: State):
        """Block i on one state: its hidden-state output (the whole model's output if whole)."""
        block = self.blocks[i][1]
        if self.whole:
            return call_model(block, state.batch)
        if state.args:
            out = block(state.x, *state.args[1:], **state.kwargs)
        else:
            out = block(**{**state.kwargs, "hidden_states": state.x})
        self.tuple_out = isinstance(out, (tuple, list))
        return out[0] if self.tuple_out else out

    def loss(self, state: State) -> torch.Tensor:
        """Whole-model pseudo-block: the summed token loss of one batch (for gradients)."""
        return summed_loss(self.model, state.batch)

    def top_grads(self, finals: list[State]) -> list[torch.Tensor]:
        """dLoss/dh (b, T, d) at the output of the last block, per batch: the model's own code
        runs the final norm, the head and the loss on stored last-block outputs."""
        stubs = [(name, _Replay(self.tuple_out)) for name, _ in self.blocks]
        originals = [(name, block) for name, block in self.blocks]
        for name, stub in stubs:
            set_module(self.model, name, stub)
        grads = []
        try:
            for st in finals:
                h = st.x.detach().requires_grad_(True)
                for _, stub in stubs:
                    stub.h = h
                summed_loss(self.model, _without_embedding(self.model, st.batch, h)).backward()
                grads.append(h.grad.detach())
        finally:
            for name, block in originals:
                set_module(self.model, name, block)
        return grads


def _without_embedding(model: nn.Module, batch, h: torch.Tensor):
    """The batch with dummy inputs_embeds in place of its ids where the model takes them: the
    stubs ignore their input, so the token embedding need not be in memory."""
    import inspect
    if not isinstance(batch, torch.Tensor) or batch.is_floating_point() or \
            "inputs_embeds" not in inspect.signature(model.forward).parameters:
        return batch
    return {"inputs_embeds": torch.zeros_like(h.detach()), "labels_from": batch}


def summed_loss(model: nn.Module, batch) -> torch.Tensor:
    """The batch's language-model loss summed over tokens (its gradients are per-token ones),
    or a one-line error for a model that returns none."""
    if isinstance(batch, dict) and "labels_from" in batch:   # dummy embeddings, ids as labels
        batch = dict(batch)
        ids = batch.pop("labels_from")
    else:
        ids = lm_labels(batch)
    try:
        out = call_model(model, batch, labels=ids)
    except TypeError:
        out = None
    if getattr(out, "loss", None) is None:
        raise EigenscopeError(f"{type(model).__name__}: gradient statistics need a model that "
                              "returns a language-model loss (a causal LM); use method 'whiten'")
    return out.loss * ids.numel()


class _Replay(nn.Module):
    """Stands in for a block: returns the stored hidden states whatever it is given."""

    def __init__(self, tuple_out: bool):
        super().__init__()
        self.h, self.tuple_out = None, tuple_out

    def forward(self, *args, **kwargs):
        return (self.h,) if self.tuple_out else self.h
