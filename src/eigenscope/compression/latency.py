"""Latency model of dense and factorised Linears, measured on the device and cached on disk.

A rank-r factorisation of an (m, n) Linear runs two GEMMs, x A^T then (x A^T) B^T, on
r (m + n) weights instead of m n. Whether that is faster depends on the shape, the number of
tokens per call (decode at batch 1: T = 1, bandwidth bound; prefill: T in the thousands, compute
bound), the kernels and the per-call overhead, so eigenscope measures it: for each (m, n) one
dense time and the factorised time on a rank grid (multiples of `multiple` up to the rank that
saves parameters), each the best of `repeats` rounds over enough copies of the weights to miss
the caches, as in a model whose weights stream from memory. Weights are timed in the layout
`eigenscope.column_major_` gives them (W^T contiguous: the faster one for CPU matrix-vector
products, nn/layout.py), the layout the README recommends for inference. Pure measurement and
prediction: no model surgery here.

    >>> t = LatencyTable("example", {(64, 64): ShapeLatency(10e-6, [8, 16, 24, 32], [3e-6, 6e-6, 5e-6, 11e-6])})
    >>> t.options(64, 64)     # rank 16 is no faster than 24 (snaps up to it); 32 is slower than dense
    [(8, 3e-06), (24, 5e-06)]
    >>> t.break_even(64, 64), predict(t, 64, 64, None)
    (24, 1e-05)
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..maths.lowrank import useful_rank

COLD_BYTES = 96 * 2**20   # weights cycled per timing round: larger than the last-level caches
MAX_CALLS = 200           # calls per timing round, at most
ROUND_SECONDS = 0.02      # ... and no more calls than fill this time (compute-bound shapes)


def cache_dir() -> Path:
    """$EIGENSCOPE_CACHE, else $XDG_CACHE_HOME/eigenscope, else ~/.cache/eigenscope."""
    env = os.environ.get("EIGENSCOPE_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "eigenscope"
    return base


def device_key(device, dtype, tokens: int) -> str:
    """What a measurement depends on: device model, torch version, threads, dtype, tokens."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_name()
    return f"{device.type}:{name}|torch {torch.__version__}|threads {torch.get_num_threads()}|" \
           f"{str(dtype).replace('torch.', '')}|T {tokens}|column-major"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass
class ShapeLatency:
    """Seconds per call of one (m, n) Linear: dense, and factorised at each grid rank."""

    dense: float
    ranks: list[int]
    times: list[float]

    def lowrank(self, r: int) -> float:
        """Linear interpolation on the grid (and extrapolation through its last two points)."""
        rk, tk = np.asarray(self.ranks, float), np.asarray(self.times, float)
        if len(rk) == 1:
            return float(tk[0] * r / rk[0])
        if r > rk[-1]:
            slope = (tk[-1] - tk[-2]) / (rk[-1] - rk[-2])
            return float(tk[-1] + slope * (r - rk[-1]))
        return float(np.interp(r, rk, tk))


@dataclass
class LatencyTable:
    """Measured latencies by (m, n) for one device key; see `latency_table`."""

    key: str
    shapes: dict = field(default_factory=dict)   # (m, n) -> ShapeLatency

    def dense(self, m: int, n: int) -> float:
        """Seconds per call of the dense (m, n) layer."""
        return self.shapes[(m, n)].dense

    def lowrank(self, m: int, n: int, r: int) -> float:
        """Seconds per call of the (m, n) layer factorised at rank r."""
        return self.shapes[(m, n)].lowrank(r)

    def options(self, m: int, n: int) -> list[tuple[int, float]]:
        """(rank, seconds) of the grid ranks worth offering, time ascending: faster than dense, and
        each strictly slower than the one before (a rank no faster than a larger one is dominated:
        the larger rank loses less for the same time, so ranks snap up to it)."""
        sl = self.shapes[(m, n)]
        mono = np.minimum.accumulate(np.asarray(sl.times)[::-1])[::-1]  # least time at rank >= r
        out = []
        for i, (r, t) in enumerate(zip(sl.ranks, mono)):
            if t >= sl.dense:
                break
            if i + 1 < len(mono) and mono[i + 1] <= t:
                continue  # the next grid rank costs no more: snap up to it
            out.append((r, float(t)))
        return out

    def break_even(self, m: int, n: int) -> int:
        """Largest grid rank whose factorised form is faster than dense (0: never faster)."""
        opts = self.options(m, n)
        return opts[-1][0] if opts else 0


def latency_table(shapes, *, tokens: int = 1, device="cpu", dtype=torch.float32, multiple: int = 8,
                  repeats: int = 5, cache: bool = True, progress: bool = False) -> LatencyTable:
    """Measure (or read from the cache) the latency of every (m, n) in `shapes` at `tokens` rows.

    The cache is `cache_dir()/latency.json`, one entry per device key and shape; `cache=False`
    measures afresh and writes nothing.
    """
    key = device_key(device, dtype, tokens)
    stored = _read_cache() if cache else {}
    table = LatencyTable(key)
    todo = sorted({(int(m), int(n)) for m, n in shapes})
    from .._progress import track
    for m, n in track(todo, "latency", unit="shape", enabled=progress):
        entry = stored.get(key, {}).get(f"{m}x{n}")
        if entry is None or entry.get("multiple") != multiple:
            entry = _measure_shape(m, n, tokens, torch.device(device), dtype, multiple, repeats)
            stored.setdefault(key, {})[f"{m}x{n}"] = entry
        table.shapes[(m, n)] = ShapeLatency(entry["dense"], entry["ranks"], entry["times"])
    if cache:
        _write_cache(stored)
    return table


def _measure_shape(m, n, tokens, device, dtype, multiple, repeats) -> dict:
    """Dense and every grid rank timed in turn within each round (so that a busy moment of a
    shared machine hits them all alike), best round kept."""
    ranks = list(range(multiple, max(useful_rank(m, n), multiple) + 1, multiple))
    x = torch.randn(tokens, n, device=device, dtype=dtype)
    # one dense copy at least: a head of 49152 x 576 float32 alone outgrows COLD_BYTES
    numel = max(COLD_BYTES * 8 // torch.finfo(dtype).bits, m * n + m)
    pool = torch.rand(numel, device=device, dtype=dtype) - 0.5
    runs = [_runner(lambda W: F.linear(x, W[0], W[1]), [(m, n), (m,)], pool)]
    runs += [_runner(lambda W: F.linear(F.linear(x, W[0]), W[1], W[2]), [(r, n), (m, r), (m,)], pool)
             for r in ranks]
    best = [float("inf")] * len(runs)
    with torch.no_grad():
        for rep in range(repeats + 1):  # round 0 warms up (allocator, kernels) and is discarded
            for i, run in enumerate(runs):
                t = run(device)
                best[i] = min(best[i], t) if rep else best[i]
    return {"dense": best[0], "ranks": ranks, "times": best[1:], "multiple": multiple}


def _runner(call, shapes, pool, *, column_major: bool = True):
    """A timer of `call` over weight copies carved from `pool` at successive offsets, so each call
    reads memory the previous ones did not (no copy stays in cache between its uses); matrices
    are (m, n) views, column-major (W^T contiguous) unless `column_major=False`."""
    sizes = [int(np.prod(s)) for s in shapes]
    copies = max(1, min(MAX_CALLS, pool.numel() // sum(sizes)))
    ws, off = [], 0
    for _ in range(copies):
        w = []
        for s, k in zip(shapes, sizes):
            if len(s) == 2 and column_major:
                w.append(pool[off:off + k].view(s[::-1]).t())
            else:
                w.append(pool[off:off + k].view(s))
            off += k
        ws.append(w)
    calls = [max(copies, 8)]

    def run(device) -> float:
        _sync(device)
        t0 = time.perf_counter()
        for i in range(calls[0]):
            call(ws[i % copies])
        _sync(device)
        per = (time.perf_counter() - t0) / calls[0]
        # large-T calls are compute bound: a few suffice, caches matter little there
        calls[0] = max(2, min(calls[0], int(ROUND_SECONDS / max(per, 1e-9)) + 1))
        return per
    return run


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _read_cache() -> dict:
    f = cache_dir() / "latency.json"
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return {}  # a missing or damaged cache is measured again


def _write_cache(data: dict) -> None:
    from ..analysis.spectra_io import atomic_write

    f = cache_dir() / "latency.json"
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(f, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=1)))
    except OSError:
        pass  # an unwritable cache only costs a measurement next time


def predict(table: LatencyTable, m: int, n: int, rank: int | None) -> float:
    """Predicted seconds per call of an (m, n) Linear kept dense (rank None) or at `rank`."""
    return table.dense(m, n) if rank is None else table.lowrank(m, n, int(rank))


OBJECTIVES = ("params", "latency", "params-fast")


def objective_cost(objective: str, shapes: list, *, device, dtype, multiple: int,
                   tokens: int = 1, progress=False):
    """(cost for `allocate`, LatencyTable or None) of an allocation objective over the target
    matrices' (m, n) shapes: "params" counts parameters, "latency" predicted seconds per call
    at `tokens` rows, measured on `device` in `dtype`, "params-fast" parameters over the ranks
    that measurement finds faster than dense."""
    from ..errors import EigenscopeError
    from .allocate import fast_param_cost, latency_cost

    if objective not in OBJECTIVES:
        raise EigenscopeError(f"objective {objective!r}: choose from {', '.join(OBJECTIVES)}")
    if objective == "params":
        return None, None
    table = latency_table([tuple(s) for s in shapes], tokens=tokens, device=device, dtype=dtype,
                          multiple=multiple, progress=progress)
    costs = {"latency": latency_cost, "params-fast": fast_param_cost}
    return costs[objective](table), table


def add_predicted_time(plan, table: LatencyTable) -> None:
    """Plan column predicted_us (per call, at the table's tokens) and totals in plan.attrs."""
    import pandas as pd

    dense = [table.dense(*s) for s in plan["shape"]]
    now = [predict(table, *s, None if pd.isna(r) else int(r)) for s, r in zip(plan["shape"], plan["rank"])]
    plan["predicted_us"] = [1e6 * t for t in now]
    plan.attrs.update(predicted_dense_us=1e6 * sum(dense), predicted_us=1e6 * sum(now),
                      latency_key=table.key)
