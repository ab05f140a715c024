"""`eigenscope.compress(model, ratio=...)` -> (model, plan).

    >>> import torch, eigenscope
    >>> torch.manual_seed(0) and None
    >>> net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64))
    >>> net, plan = eigenscope.compress(net, ratio=0.5, method="svd", allocation="uniform")
    >>> print(plan[["layer", "shape", "rank", "params_before", "params_after"]].to_string(index=False))
    layer    shape  rank  params_before  params_after
        0 (64, 64)    16           4160          2112
        2 (64, 64)    16           4160          2112
    >>> type(net[0]).__name__, net[0](torch.randn(3, 64)).shape
    ('LowRankLinear', torch.Size([3, 64]))
"""
from __future__ import annotations

import time

import pandas as pd
import torch
from torch import nn

from ..errors import EigenscopeError
from ..nn.lowrank import LowRankLinear
from .allocate import Curve, allocate
from .calibrate import collect_stats, find_blocks, target_linears
from ..inputs import DEFAULT_CALIB_SEQS, DEFAULT_SEQ_LEN, model_batches
from .fisher import collect_fisher
from .methods import resolve
from .registry import CallState, LayerStats
from ..nn.surgery import set_module
from .sequential import sequential_compress


def compress(model, *, ratio: float | None = None, method="whiten", allocation="global",
             calibration=None, layers: str | None = None, tokenizer=None, seq_len: int = DEFAULT_SEQ_LEN,
             n_seqs: int = DEFAULT_CALIB_SEQS, batch_size: int = 8, heldout: float = 0.25, multiple: int = 8,
             grad_batches: int = 4, stats: dict | None = None, progress: bool = False):
    """Replace targeted nn.Linear layers by LowRankLinear; return (model, plan).

    model       -- nn.Module (changed in place) or a source: built-in name, HF folder, .gguf file
    ratio       -- fraction in (0, 1) of the targeted matrices' parameters REMOVED
    method      -- a registered name (`eigenscope.compression.methods.names()`; default "whiten",
                   which weighs outputs by the loss gradient on causal LMs) or a config instance,
                   e.g. WhitenConfig(sequential=False)
    allocation  -- "global" (greedy), "knapsack" (exact), "uniform", "gd_rank", "energy:0.9", an int
                   rank, a float energy fraction, or {layer: rank}
    calibration -- model inputs (eigenscope.inputs: text, token ids, tensors, dicts, a
                   DataLoader) or None (Python's pydoc topics text)
    heldout     -- fraction of calibration sequences kept apart to choose settings (sequential)
    grad_batches-- calibration batches used for gradient statistics (fwsvd, output_fisher)
    stats       -- statistics from a previous call's plan.attrs["stats"] (reused, not recomputed;
                   only valid for the same, uncompressed model and calibration)

    The plan (DataFrame): layer, shape, rank (None: dense), params_before, params_after,
    predicted_loss, and any note a method leaves per layer (e.g. whiten's chosen blend);
    plan.attrs holds the totals (kept parameters and bytes) and the settings.
    """
    from ..models import load_model
    from ..validate import check_args

    check_args("compress", locals(), source=model)       # every option, before any work
    t0 = time.perf_counter()
    if not isinstance(model, nn.Module):
        model, tokenizer = load_model(model)
    cfg, handler = resolve(method)
    cfg = handler.prepare(cfg, model)
    targets = target_linears(model, layers)
    needs, state = handler.needs(cfg), CallState()
    batches = model_batches(calibration, tokenizer=tokenizer, seq_len=seq_len, n_seqs=n_seqs,
                            batch_size=batch_size, min_seqs=2) if needs else []
    model.eval()
    stats = _statistics(model, batches, targets, needs, stats, progress, grad_batches)
    curves = [_curve(cfg, handler, n, m, stats.get(n, LayerStats()), state)
              for n, m in targets.items()]
    ranks = allocate(curves, allocation, ratio, multiple)
    losses = {c.name: c.loss() for c in curves}
    _replace_linears(model, (cfg, handler, state), batches, targets, stats, ranks,
                     n_held=_heldout_batches(len(batches), heldout), progress=progress)
    plan = _plan(targets, ranks, losses, state.notes)
    plan.attrs.update(_totals(model, plan), method=repr(cfg), allocation=str(allocation),
                      ratio=ratio, seconds=time.perf_counter() - t0, stats=stats)
    return model, plan


def _replace_linears(model, call, batches, targets, stats, ranks, *, n_held, progress):
    """Factorise every target at its rank: block by block on the compressed stream's inputs
    (sequential methods, with a held-out slice), else each from the original statistics."""
    cfg, handler, _ = call
    if handler.sequential(cfg) and find_blocks(model) and n_held:
        def one(name, lin, pair):
            st = stats.get(name, LayerStats()).sequential(pair)
            return _factorise(call, name, lin, st, ranks[name])
        sequential_compress(model, batches, targets, one, heldout=n_held, progress=progress)
        return
    for name, lin in targets.items():
        new = _factorise(call, name, lin, stats.get(name, LayerStats()), ranks[name])
        if new is not None:
            set_module(model, name, new)


def _statistics(model, batches, targets, needs, stats, progress, grad_batches):
    if stats is not None:
        return stats
    stats = {}
    if needs & {"gram", "absmean"}:
        stats = collect_stats(model, batches, targets, absmean="absmean" in needs, progress=progress)
    if needs & {"fisher_w", "d_out"}:
        # gradients cost 3 forwards; per-channel means settle on fewer tokens than Gram matrices
        collect_fisher(model, batches[:grad_batches], targets, stats, weights="fisher_w" in needs,
                       outputs="d_out" in needs, progress=progress)
    return stats


def _heldout_batches(n: int, heldout: float) -> int:
    return min(max(int(round(n * heldout)), 1), n - 1) if heldout > 0 and n > 1 else 0


def _curve(cfg, handler, name, lin, st, state) -> Curve:
    W = lin.weight.detach()
    key = repr(cfg)
    s = st.cache[key] if key in st.cache else handler.spectrum(cfg, W, st, layer=name, state=state)
    st.cache[key] = s
    return Curve(name, W.shape[0], W.shape[1], s, normalise=not handler.loss_units(cfg))


def _factorise(call, name, lin: nn.Linear, st, rank):
    """LowRankLinear of the given rank in the Linear's dtype/device; None keeps it dense."""
    if rank is None:
        return None
    cfg, handler, state = call
    W = lin.weight.detach()
    B, A = handler.factors(cfg, W, st, rank, layer=name, state=state)
    if not (torch.isfinite(B).all() and torch.isfinite(A).all()):
        raise EigenscopeError(f"{name}: factorisation produced NaN/inf (check the calibration statistics)")
    bias = None if lin.bias is None else lin.bias.detach()
    return LowRankLinear.from_factors(B.to(W), A.to(W), bias)


def _plan(targets, ranks, losses, notes) -> pd.DataFrame:
    rows = []
    for name, lin in targets.items():
        m, n = lin.weight.shape
        r, nb = ranks[name], (0 if lin.bias is None else m)
        rows.append(dict(layer=name, shape=(m, n), rank=r, params_before=m * n + nb,
                         params_after=(m * n if r is None else r * (m + n)) + nb,
                         predicted_loss=0.0 if r is None else float(losses[name][r]),
                         **notes.get(name, {})))
    plan = pd.DataFrame(rows)
    plan["rank"] = plan["rank"].astype("Int64")  # <NA>: the matrix stays dense
    return plan


def _totals(model, plan) -> dict:
    kept = sum(p.numel() for p in model.parameters())
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    before, after = int(plan.params_before.sum()), int(plan.params_after.sum())
    return dict(target_params_before=before, target_params_after=after,
                removed_fraction=1 - after / max(before, 1), model_params=kept, model_bytes=nbytes)
