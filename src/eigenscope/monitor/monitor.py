"""SpectralMonitor: spectral metrics of every 2-D weight during training, within a time budget."""
from __future__ import annotations

import json
import math
import os
import re
import time

import torch
from torch import nn

from eigenscope.monitor.estimate import alpha_of, cheap_metrics, exact_metrics, top_singular
from ..errors import ArgumentError

METRICS = ("alpha", "stable_rank", "spectral_norm", "top_sv")


class SpectralMonitor:
    """Record spectral metrics of the model's 2-D parameters every `every` steps.

    Use as a hook: `monitor.step()` after `optimizer.step()`, or `monitor.attach(optimizer)`
    (torch's register_step_post_hook), or `monitor.as_trainer_callback()` for a Hugging Face
    Trainer. Rows go to `.dataframe()` and, with `path`, are appended to a JSONL file (one line
    per matrix and measurement; appending keeps a log readable while training runs).

    method "randomized": top-k singular values from a warm-started randomised range finder
    (`top_singular`), spectral_norm = its s1, stable_rank = ||W||_F^2 / s1^2. alpha needs the
    whole ESD, so it is computed (Gram eigenvalues + power-law fit) only when the remaining
    budget of that measurement exceeds its expected cost (the last cost measured for that
    shape, or 10x the cheap metrics' cost before the first); otherwise it is NaN.
    method "exact": every metric from the full ESD (eigvalsh of the Gram matrix).
    budget: the monitor's own time may be at most this fraction of the time between steps
    (training time). A due measurement gets the allowance budget * train_time - own_time and
    walks the matrices round-robin until it is used up (thinning: the rest are measured at the
    next due step); with no allowance left the measurement is skipped. budget=None: no limit.
    `.overhead()` is own_time / (own_time + train_time).
    """

    def __init__(self, model: nn.Module, *, every: int = 10, metrics=METRICS,
                 layers: str | None = None, path: str | os.PathLike | None = None,
                 budget: float | None = 0.05, method: str = "randomized", top_k: int = 8,
                 niter: int = 2, seed: int = 0):
        bad = set(metrics) - set(METRICS)
        if bad:
            raise ArgumentError(f"unknown metrics {sorted(bad)}; choose from {METRICS}")
        if method not in ("randomized", "exact"):
            raise ArgumentError(f"method must be 'randomized' or 'exact', not {method!r}")
        pattern = re.compile(layers) if layers else None
        self.matrices = [(n, p) for n, p in model.named_parameters()
                         if p.ndim == 2 and (pattern is None or pattern.search(n))]
        self.every, self.metrics, self.method = int(every), tuple(metrics), method
        self.path, self.budget, self.top_k, self.niter = path, budget, int(top_k), int(niter)
        self.gen = torch.Generator().manual_seed(seed)
        self.rows: list[dict] = []
        self.steps = self.measured = self.skipped = self.thinned = 0
        self.own_time = self.train_time = 0.0
        self._last: float | None = None
        self._cursor = 0
        self._subspace: dict[str, torch.Tensor] = {}
        self._alpha_cost: dict[tuple, float] = {}

    # -- hooks ----------------------------------------------------------------------------
    def step(self, step: int | None = None) -> None:
        """Count one training step; measure when due. step: an explicit step number to log."""
        t0 = time.perf_counter()
        if self._last is not None:
            self.train_time += t0 - self._last
        self.steps += 1
        if self.steps % self.every == 0:
            self._measure(self.steps if step is None else int(step), t0)
        self._last = time.perf_counter()
        self.own_time += self._last - t0

    def attach(self, optimizer):
        """Call `step()` after every optimizer.step(); returns the removable handle."""
        return optimizer.register_step_post_hook(lambda opt, args, kwargs: self.step())

    def as_trainer_callback(self):
        """A transformers.TrainerCallback calling `step(global_step)` at each step end."""
        from eigenscope.monitor.hf import make_callback
        return make_callback(self)

    def overhead(self) -> float:
        """Share of the training time spent in the monitor so far."""
        total = self.own_time + self.train_time
        return self.own_time / total if total > 0 else 0.0

    def dataframe(self):
        """Every recorded measurement, one row per (step, matrix)."""
        import pandas as pd
        return pd.DataFrame(self.rows)

    # -- measurement ------------------------------------------------------------------------
    def _allowance(self) -> float:
        if self.budget is None:
            return math.inf
        return self.budget * self.train_time - self.own_time

    def _measure(self, step: int, t0: float) -> None:
        allowance = self._allowance()
        if allowance <= 0 or not self.matrices:
            self.skipped += 1
            return
        rows, n = [], len(self.matrices)
        for i in range(n):
            if i > 0 and time.perf_counter() - t0 >= allowance:
                self.thinned += 1                                  # rest: next time
                break
            name, W = self.matrices[(self._cursor + i) % n]
            rows.append(self._row(step, name, W, t0, allowance))
        self._cursor = (self._cursor + len(rows)) % n
        self.measured += 1
        self.rows.extend(rows)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)

    @torch.no_grad()
    def _row(self, step: int, name: str, W: torch.Tensor, t0: float, allowance: float) -> dict:
        m, n = W.shape
        row = {"step": step, "name": name, "m": m, "n": n, "method": self.method}
        k = min(self.top_k, m, n)
        if self.method == "exact":
            row.update(exact_metrics(W, k, self.metrics))
            return row
        t1 = time.perf_counter()
        s, V = top_singular(W, k, self._subspace.get(name), niter=self.niter, generator=self.gen)
        self._subspace[name] = V
        row.update(cheap_metrics(W, s, self.metrics))
        if "alpha" in self.metrics:
            row["alpha"] = self._alpha_if_affordable(W, time.perf_counter() - t1, t0, allowance)
        return row

    def _alpha_if_affordable(self, W, cheap_cost: float, t0: float, allowance: float) -> float:
        """alpha from the exact ESD if the remaining allowance covers its expected cost."""
        shape = tuple(W.shape)
        expected = self._alpha_cost.get(shape, 10 * cheap_cost)
        if time.perf_counter() - t0 + expected > allowance:
            return math.nan
        t = time.perf_counter()
        from eigenscope.maths.spectrum import eigvals
        a = alpha_of(eigvals(W.detach()))
        self._alpha_cost[shape] = time.perf_counter() - t
        return a
