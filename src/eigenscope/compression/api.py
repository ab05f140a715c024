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

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from torch import nn

from .._memory import memory_budget
from ..inputs import DEFAULT_CALIB_SEQS, DEFAULT_SEQ_LEN, model_batches, tokenizer_for
from ..validate import check_args
from .allocate import allocate
from .latency import add_predicted_time, objective_cost
from .methods import resolve
from .registry import CallState
from .spill import Spill


@dataclass(frozen=True)
class Job:
    """What one compress call decided before running: the method and the settings."""

    cfg: object
    handler: object
    state: CallState
    layers: str | None
    heldout: int            # held-out calibration batches (sequential settings)
    grad_batches: int       # batches used for gradient statistics
    progress: bool
    convs: bool | None = None   # also factorise Conv2d layers (None: only in CNNs)


def compress(model, *, ratio: float | None = None, method="whiten", allocation="global",
             calibration=None, layers: str | None = None, tokenizer=None,
             seq_len: int = DEFAULT_SEQ_LEN, n_seqs: int = DEFAULT_CALIB_SEQS, batch_size: int = 8,
             heldout: float = 0.25, multiple: int = 8, grad_batches: int = 4, convs: bool | None = None,
             out=None, max_memory=None, offload_dir=None, cache=None, objective: str = "params",
             latency_tokens: int = 1, progress: bool = False):
    """Replace targeted nn.Linear layers by LowRankLinear; return (model, plan).

    model       -- an nn.Module (changed in place), or a model on disk: a Hugging Face folder
                   (single or sharded safetensors), a .gguf file, or a built-in name. A model on
                   disk is never loaded whole: its blocks are read, calibrated and compressed one
                   at a time, and with `out` each compressed block is written as it is done.
    ratio       -- fraction in (0, 1) of the targeted matrices' parameters REMOVED
    method      -- a registered name (`eigenscope.compression.names()`; default "whiten",
                   which weighs outputs by the loss gradient on causal LMs) or a config instance,
                   e.g. WhitenConfig(sequential=False)
    allocation  -- "global" (greedy), "knapsack" (exact), "uniform", "gd_rank", "energy:0.9", an int
                   rank, a float energy fraction, or {layer: rank}
    calibration -- model inputs (eigenscope.inputs: text, token ids, tensors, dicts, a
                   DataLoader) or None (Python's pydoc topics text)
    heldout     -- fraction of calibration batches kept apart to choose settings (sequential)
    grad_batches-- calibration batches used for gradient statistics (fwsvd, output weighting)
    convs       -- also factorise Conv2d layers (a kh x kw conv to r channels, then a 1 x 1 conv);
                   None (default): only in models with no Linear layer to compress (CNNs)
    out         -- also save the result to this folder (eigenscope.load reads it back); for a
                   model on disk the blocks go straight there and (out, plan) is returned
    max_memory  -- bytes (or "2GiB"): an eighth holds what waits between passes (activations,
                   gradients, Gram matrices); the rest goes to `offload_dir` (default: system temp)
    cache       -- a StatsCache: filled by the first call, reused by later calls on the same
                   (uncompressed) model and calibration, e.g. to compress at several ratios
    objective   -- "params", or "latency": `ratio` removes predicted time at `latency_tokens`
                   rows per call (compression/latency.py, measured on this device and cached);
                   slower factorisations stay dense; the plan gets predicted_us per layer;
                   "params-fast": `ratio` removes parameters, over only the ranks that the
                   latency table finds faster than dense (the same table, the same column)

    The plan (DataFrame): layer, shape, rank (None: dense), params_before, params_after,
    predicted_loss, and any note a method leaves per layer (e.g. whiten's chosen blend);
    plan.attrs holds the totals (kept parameters and bytes), the settings and the seconds spent
    per block.
    """
    opts = {k: v for k, v in locals().items() if k not in ("model", "method")}
    # every option, before any work; `out` is checked as an output that must not be a source
    check_args("compress", opts | {"method": method}, source=model,
               **({"out_model": out} if out is not None else {}))
    t0 = time.perf_counter()
    cfg, handler = resolve(method)
    onloader = _onloader(model)
    try:
        return _run(onloader, cfg, handler, t0, **opts)
    finally:
        onloader.close()


def _onloader(model):
    from .onload import FromSource, InMemory

    if isinstance(model, nn.Module):
        return InMemory(model)
    from ..errors import EigenscopeError
    from ..sources.formats import detect, locate

    path = locate(model)
    kind = detect(path)
    if kind == "save":
        raise EigenscopeError(f"{path}: already compressed by eigenscope; compress the original")
    if kind == "hf" and path.is_dir() and not (path / "config.json").exists():
        ggufs = sorted(path.glob("*.gguf"))
        path = ggufs[0] if len(ggufs) == 1 else path
    return FromSource(path)


def _run(onloader, cfg, handler, t0, *, ratio, allocation, calibration, layers, tokenizer,
         seq_len, n_seqs, batch_size, heldout, multiple, grad_batches, convs, out, max_memory,
         offload_dir, cache, progress, objective, latency_tokens):
    from .onload import FromSource
    from .pipeline import Pipeline

    model = onloader.model
    tokenizer = tokenizer or onloader.tokenizer or tokenizer_for(model)
    cfg = handler.prepare(cfg, model)
    batches = model_batches(calibration, tokenizer=tokenizer, seq_len=seq_len, n_seqs=n_seqs,
                            batch_size=batch_size, min_seqs=2) if handler.needs(cfg) else []
    job = Job(cfg, handler, CallState(), layers, _heldout_batches(len(batches), heldout),
              grad_batches, progress, convs)
    budget = memory_budget(max_memory)
    writer = _writer(out, onloader, budget) if out is not None and isinstance(onloader, FromSource) else None
    # what waits between passes (activations, gradients, Gram matrices kept for the factors)
    # stays in memory up to an eighth of the budget: the rest is for the block at work, whose
    # eigendecompositions (several float64 copies of its largest Gram matrix) set the peak
    spill = Spill(budget // 8, offload_dir)
    try:
        with _no_param_grads(model):
            pipe = Pipeline(onloader, job, batches, spill, writer=writer, cache=cache)
            curves = pipe.curves()
            cost, table = _objective(objective, pipe, onloader, multiple, latency_tokens, progress)
            ranks = allocate([curves[n] for n in pipe.targets], allocation, ratio, multiple, cost=cost)
            pipe.factorise(ranks, keep=writer is None)
    finally:
        spill.close()
    plan = _plan(pipe, ranks, curves, job.state.notes)
    if table is not None:   # a timed objective: the predicted time of each layer
        add_predicted_time(plan, table)
    plan.attrs.update(method=repr(cfg), allocation=str(allocation), ratio=ratio,
                      objective=objective, block_seconds=dict(pipe.seconds))
    return _finish(onloader, plan, writer, out, tokenizer, t0)


def _finish(onloader, plan, writer, out, tokenizer, t0):
    """Totals into the plan; the frame and the save written; (model or out folder, plan)."""
    from .io import dedup, metadata, save

    model = onloader.model
    if writer is not None:   # the blocks are written: the frame, then the index, last
        onloader.load("frame")
        filler = onloader.filler
        frame = {a: filler.get(n) for n in filler.names(exclude=onloader.blocks)
                 for a in filler.aliases[n]}
        tensors, tied = dedup(frame)
        writer.add(tensors)
        onloader.unload("frame")
        writer.finish(metadata(model, plan=plan, tied=tied))
        if tokenizer is not None:
            tokenizer.save_pretrained(out)
        plan.attrs.update(_totals(model, plan, nbytes=writer.total),
                          seconds=time.perf_counter() - t0)
        return Path(out), plan
    if hasattr(onloader, "filler"):   # a model from disk, wanted in memory: its frame too
        onloader.load("frame")
    plan.attrs.update(_totals(model, plan), seconds=time.perf_counter() - t0)
    if out is not None:
        save(model, out, plan=plan, tokenizer=tokenizer)
    return model, plan


def _objective(objective, pipe, onloader, multiple, tokens, progress):
    """(allocation cost, latency table) for `objective`, timed in the dtype the model runs in."""
    import torch

    from .targets import target_weight
    shapes = [tuple(target_weight(m).shape) for m in pipe.targets.values()]
    w = target_weight(next(iter(pipe.targets.values())))
    dtype = onloader.source_dtype or w.dtype
    device = w.device if w.device.type != "meta" else torch.device("cpu")
    return objective_cost(objective, shapes, device=device, dtype=dtype, multiple=multiple,
                          tokens=tokens, progress=progress)


def _writer(out, onloader, budget):
    from .io import SHARD_BYTES, ShardWriter
    # shards are held in memory until written: a thirty-second of the budget (128 MiB by default)
    return ShardWriter(out, dtype=onloader.source_dtype,
                       shard_bytes=min(SHARD_BYTES, max(budget // 32, 2**20)))


@contextlib.contextmanager
def _no_param_grads(model: nn.Module):
    """No parameter gradients while compressing (activations still get them); restored after."""
    was = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in was:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, w in was:
            p.requires_grad_(w)


def _heldout_batches(n: int, heldout: float) -> int:
    return min(max(int(round(n * heldout)), 1), n - 1) if heldout > 0 and n > 1 else 0


def _plan(pipe, ranks, curves, notes) -> pd.DataFrame:
    """One row per target (rank <NA>: kept dense) and per tensor kept dense with a reason."""
    from .targets import target_bias, target_weight

    rows = []
    for name, layer in pipe.targets.items():
        (m, n), bias = target_weight(layer).shape, target_bias(layer)
        r, nb = ranks[name], (0 if bias is None else bias.numel())
        rows.append(dict(layer=name, shape=(m, n), rank=r, params_before=m * n + nb,
                         params_after=(m * n if r is None else r * (m + n)) + nb,
                         predicted_loss=0.0 if r is None else float(curves[name].loss()[r]),
                         reason="", **notes.get(name, {})))
    for name, why in pipe.dense.items():
        p = pipe.model.get_parameter(name)
        rows.append(dict(layer=name, shape=tuple(p.shape), rank=None, params_before=p.numel(),
                         params_after=p.numel(), predicted_loss=0.0, reason=why))
    plan = pd.DataFrame(rows)
    plan["rank"] = plan["rank"].astype("Int64")  # <NA>: the matrix stays dense
    return plan


def _totals(model, plan, nbytes: int | None = None) -> dict:
    kept = sum(p.numel() for p in model.parameters())
    if nbytes is None:
        nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    targeted = plan[plan["reason"] == ""]
    before, after = int(targeted.params_before.sum()), int(targeted.params_after.sum())
    return dict(target_params_before=before, target_params_after=after,
                removed_fraction=1 - after / max(before, 1), model_params=kept, model_bytes=nbytes)


def statistics(model: nn.Module, calibration=None, *, method="whiten", tokenizer=None,
               seq_len: int = DEFAULT_SEQ_LEN, n_seqs: int = DEFAULT_CALIB_SEQS,
               batch_size: int = 8, grad_batches: int = 4, progress: bool = False) -> dict:
    """{target name: LayerStats} with every statistic `method` reads (whiten on a causal LM:
    Gram matrices and output-gradient weights), gathered by compress's own calibration passes
    without compressing: e.g. the statistics of quantize_'s activation-aware correction."""
    from dataclasses import replace

    from .onload import InMemory
    from .pipeline import Pipeline

    cfg, handler = resolve(method)
    cfg = handler.prepare(cfg, model)
    if hasattr(cfg, "sequential"):   # keep the statistics: no compressed stream will replace them
        cfg = replace(cfg, sequential=False)
    batches = model_batches(calibration, tokenizer=tokenizer or tokenizer_for(model),
                            seq_len=seq_len, n_seqs=n_seqs, batch_size=batch_size, min_seqs=2)
    job = Job(cfg, handler, CallState(), None, 0, grad_batches, progress)
    spill = Spill(memory_budget(None))
    try:
        with _no_param_grads(model):
            pipe = Pipeline(InMemory(model), job, batches, spill)
            pipe.curves()
            return {name: pipe.unstashed(name) for name in pipe.targets}
    finally:
        spill.close()


class StatsCache:
    """Statistics and loss curves one compress call computed, reused by later calls on the same
    (uncompressed) model and calibration — e.g. to compress at several ratios without gathering
    them again. Big statistics live in memory up to `max_memory`, then in `offload_dir`."""

    def __init__(self, *, max_memory=None, offload_dir=None):
        self.curves: dict = {}
        self.stats: dict = {}
        self.key = None          # (method config, layers) the statistics belong to
        self.spill = Spill(memory_budget(max_memory), offload_dir)

    def close(self) -> None:
        """Drop everything (and the offload files)."""
        self.curves, self.stats = {}, {}
        self.spill.close()
