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
from .data import calibration_batches
from .fisher import collect_fisher
from .latency import add_predicted_time, objective_cost
from .registry import LayerStats, handler_for
from .sequential import sequential_compress, set_module


def compress(model, *, ratio: float | None = None, method="whiten", allocation="global",
             calibration=None, layers: str | None = None, tokenizer=None, seq_len: int = 256,
             n_seqs: int = 32, batch_size: int = 8, heldout: float = 0.25, multiple: int = 8,
             grad_batches: int = 4, stats: dict | None = None, progress: bool = False,
             objective: str = "params", latency_tokens: int = 1):
    """Replace targeted nn.Linear layers by LowRankLinear; return (model, plan).

    model       -- nn.Module (changed in place) or a source: built-in name, HF folder, .gguf file
    ratio       -- fraction in (0, 1) of the targeted matrices' parameters REMOVED
    method      -- "svd", "asvd", "fwsvd", "whiten" or a config (e.g. WhitenConfig(sequential=False));
                   "whiten" weighs outputs by the loss gradient (output_fisher) on causal LMs
    allocation  -- "global" (greedy), "knapsack" (exact), "uniform", "gd_rank", "energy:0.9", an int
                   rank, a float energy fraction, or {layer: rank}
    calibration -- text, a LongTensor of token ids (N, T), or None (Python's pydoc topics text)
    heldout     -- fraction of calibration sequences kept apart to choose settings (sequential)
    grad_batches-- calibration batches used for gradient statistics (fwsvd, output_fisher)
    stats       -- statistics from a previous call's plan.attrs["stats"] (reused, not recomputed;
                   only valid for the same, uncompressed model and calibration)
    objective   -- "params", or "latency": ratio removes predicted time at latency_tokens rows per
                   call (compression.latency); slower factorisations stay dense; plan.predicted_us

    The plan (DataFrame): layer, shape, rank (None: dense), params_before, params_after,
    predicted_loss; plan.attrs holds the totals (kept parameters and bytes) and the settings.
    """
    from ..models import load_model

    t0 = time.perf_counter()
    if not isinstance(model, nn.Module):
        model, tokenizer = load_model(model)
    if isinstance(allocation, str) and allocation in ("global", "knapsack", "uniform"):
        from .allocate import check_ratio
        check_ratio(ratio)
    cfg, handler = _config(method, model)
    targets = target_linears(model, layers)
    needs = handler.needs | ({"d_out"} if getattr(cfg, "output_fisher", False) else set())
    batches = calibration_batches(calibration, tokenizer, seq_len=seq_len, n_seqs=n_seqs,
                                  batch_size=batch_size, needed=bool(needs))
    model.eval()
    stats = _statistics(model, batches, targets, needs, stats, progress, grad_batches)
    curves = [_curve(cfg, handler, n, m, stats[n] if n in stats else LayerStats(), needs)
              for n, m in targets.items()]
    cost, table = objective_cost(objective, targets, multiple=multiple, tokens=latency_tokens)
    ranks = allocate(curves, allocation, ratio, multiple, cost=cost)
    _replace_linears(model, cfg, handler, batches, targets, stats, ranks,
                     n_held=_heldout_batches(len(batches), heldout), progress=progress)
    plan = _plan(targets, ranks, {c.name: c.loss() for c in curves}, table)
    plan.attrs.update(_totals(model, plan), method=repr(cfg), allocation=str(allocation),
                      ratio=ratio, objective=objective, seconds=time.perf_counter() - t0, stats=stats)
    return model, plan


def _config(method, model):
    """(config, handler) of `method`; output_fisher None (auto) becomes on where a loss exists."""
    cfg, handler = handler_for(method)
    if getattr(cfg, "output_fisher", False) is None:   # auto: loss-unit curves where a loss exists
        from dataclasses import replace

        from .fisher import has_lm_loss
        cfg = replace(cfg, output_fisher=has_lm_loss(model))
    return cfg, handler


def _replace_linears(model, cfg, handler, batches, targets, stats, ranks, *, n_held, progress):
    """Factorise every target at its rank: block by block on the compressed stream's inputs
    (sequential configs, with a held-out slice), else each from the original statistics."""
    if getattr(cfg, "sequential", False) and find_blocks(model) and n_held:
        def one(name, lin, st):
            st.d_out = stats[name].d_out
            return _factorise(cfg, handler, name, lin, st, ranks[name])
        sequential_compress(model, batches, targets, one, heldout=n_held, progress=progress)
        return
    for name, lin in targets.items():
        new = _factorise(cfg, handler, name, lin, stats.get(name, LayerStats()), ranks[name])
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


def _curve(cfg, handler, name, lin, st, needs) -> Curve:
    W = lin.weight.detach()
    key = repr(cfg)
    s = st.cache[key] if key in st.cache else handler.spectrum(cfg, W, st, layer=name)
    st.cache[key] = s
    return Curve(name, W.shape[0], W.shape[1], s, normalise="d_out" not in needs)


def _factorise(cfg, handler, name, lin: nn.Linear, st, rank):
    """LowRankLinear of the given rank in the Linear's dtype/device; None keeps it dense."""
    if rank is None:
        return None
    W = lin.weight.detach()
    B, A = handler.factors(cfg, W, st, rank, layer=name)
    if not (torch.isfinite(B).all() and torch.isfinite(A).all()):
        raise EigenscopeError(f"{name}: factorisation produced NaN/inf (check the calibration statistics)")
    bias = None if lin.bias is None else lin.bias.detach()
    return LowRankLinear.from_factors(B.to(W), A.to(W), bias)


def _plan(targets, ranks, losses, table=None) -> pd.DataFrame:
    rows = []
    for name, lin in targets.items():
        m, n = lin.weight.shape
        r, nb = ranks[name], (0 if lin.bias is None else m)
        rows.append(dict(layer=name, shape=(m, n), rank=r, params_before=m * n + nb,
                         params_after=(m * n if r is None else r * (m + n)) + nb,
                         predicted_loss=0.0 if r is None else float(losses[name][r])))
    plan = pd.DataFrame(rows)
    plan["rank"] = plan["rank"].astype("Int64")  # <NA>: the matrix stays dense
    if table is not None:  # objective="latency": the predicted time of each layer
        add_predicted_time(plan, table)
    return plan


def _totals(model, plan) -> dict:
    kept = sum(p.numel() for p in model.parameters())
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    before, after = int(plan.params_before.sum()), int(plan.params_after.sum())
    return dict(target_params_before=before, target_params_after=after,
                removed_fraction=1 - after / max(before, 1), model_params=kept, model_bytes=nbytes)
