"""Gradient statistics on the calibration set (needs a model with a language-model loss).

fisher_w (m, n): sum over batches of grad(W)^2 — FWSVD's weight importance.
d_out (m,): sqrt(mean over tokens of (dLoss/dy)^2) per output channel of each Linear; with it a
truncation costs about 1/2 ||D (W - W') X||_F^2 in units of the model's loss, which makes the loss
curves of different matrices comparable for global rank allocation.
"""
from __future__ import annotations

import torch
from torch import nn

from .._progress import track
from ..errors import EigenscopeError
from ..inputs import call_model
from .registry import LayerStats


def has_lm_loss(model: nn.Module) -> bool:
    """A causal LM (Hugging Face *ForCausalLM / *LMHeadModel): forward takes labels, returns a loss."""
    import inspect
    name = type(model).__name__
    return ("labels" in inspect.signature(model.forward).parameters
            and name.endswith(("ForCausalLM", "LMHeadModel")))


def _ids(batch) -> torch.Tensor:
    """The token ids of a batch (the labels of its language-model loss)."""
    ids = batch.get("input_ids") if isinstance(batch, dict) else batch
    if ids is None or ids.is_floating_point():
        raise EigenscopeError("gradient statistics need token ids (a language-model loss); "
                              "use method 'whiten' for models fed other inputs")
    return ids


def _lm_loss(model, batch):
    ids = _ids(batch)
    try:
        out = call_model(model, batch, labels=ids)
    except TypeError:
        out = None
    loss = getattr(out, "loss", None)
    if loss is None:
        raise EigenscopeError(f"{type(model).__name__}: gradient statistics need a model that "
                              "returns a language-model loss (a causal LM); use method 'whiten'")
    return loss


def collect_fisher(model: nn.Module, batches, targets: dict[str, nn.Linear], stats: dict[str, LayerStats],
                   *, weights: bool = False, outputs: bool = True, progress: bool = False) -> None:
    """Add fisher_w and/or d_out to `stats` (one forward + backward per calibration batch)."""
    sq = {n: None for n in targets}
    count = {n: 0 for n in targets}

    def fwd(name):
        def hook(mod, inp, out):
            def grad_hook(g):  # g (b, T, m): gradient of the batch's summed token losses
                g2 = g.detach().reshape(-1, g.shape[-1]).double().pow(2).sum(0)
                sq[name] = g2 if sq[name] is None else sq[name] + g2
                count[name] += g.shape[0] * g.shape[1] if g.dim() == 3 else g.shape[0]
            if out.requires_grad:
                out.register_hook(grad_hook)
        return hook

    handles = [m.register_forward_hook(fwd(n)) for n, m in targets.items()] if outputs else []
    was = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for m in targets.values():  # only the targets' weights need .grad; the activations always do
        m.weight.requires_grad_(True)
    fw = {n: None for n in targets}
    try:
        for batch in track(batches, "gradients", unit="batch", enabled=progress):
            loss = _lm_loss(model, batch)
            (loss * _ids(batch).numel()).backward()  # summed token losses: per-token gradients
            for n, m in targets.items():
                if weights and m.weight.grad is not None:
                    g2 = m.weight.grad.double().pow(2)
                    fw[n] = g2 if fw[n] is None else fw[n] + g2
                m.weight.grad = None
    finally:
        for h in handles:
            h.remove()
        for p, w in zip(model.parameters(), was):
            p.requires_grad_(w)
    for n in targets:
        st = stats.setdefault(n, LayerStats())
        if weights:
            st.fisher_w = fw[n]
        if outputs and sq[n] is not None:
            d = (sq[n] / max(count[n], 1)).sqrt()
            st.d_out = d.clamp_min(1e-3 * float(d.mean()) + 1e-30)  # no channel weighted 0: B = D^-1 U
