"""Inference speed of compressed SmolLM2-135M against the dense model, side by side in one run.

For each mode (eager; compiled: the whole model compiled by torch.compile with static shapes,
decoding into a static KV cache, the recipe transformers documents for fast generation) and each
weight layout (row: as nn.Linear stores it; col: eigenscope.column_major_, W^T contiguous, which
speeds up matrix-vector products on CPU for dense and factorised weights alike) every model runs
the same way and rounds alternate between the models. Speeds are the best of --repeats rounds;
each ratio is the median over rounds of the ratio within a round (the two sides ran seconds
apart, so a busy spell of the shared machine slows both), steadier than a ratio of two bests.
Printed per model: prefill tokens/s (batch 4 x 256 tokens, no cache; the logits of the last
position only, as `generate` prefills a prompt, unless --prefill-logits all), greedy decode
tokens/s at batch 1 and batch 8 (KV cache, --new-tokens steps after a 32-token prompt), each with
a ratio `x` to the dense model in the same mode and layout (and `x b1 row` to the dense model as
shipped: row layout, same mode); `bytes cap`, the dense model's Linear weight bytes over this
model's (what a batch-1 step streams from memory: the decode speed-up if nothing but those bytes
took time); peak RSS of a child process that loads the saved model and runs a prefill; bytes on
disk of the eigenscope save. Compressed models are fused (fuse_lowrank_: one `down` GEMM for
q/k/v and gate/up) unless --no-fuse.

    python benchmarks/inference_speed.py [--ratios 0.1,0.2,0.4] [--modes eager,compiled]
        [--layouts row,col] [--load 0.2=out/c02,lat0.2=out/l02]
        [--objective params|latency|params-fast] [--prefill-logits last|all]
        [--device cuda]

--load KEY=DIR adds a saved model: a numeric KEY stands for that ratio (not compressed again),
any other KEY is a label of its own (e.g. the same ratio compressed with objective="latency").
"""
from __future__ import annotations

import argparse
import copy
import inspect
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# transformers 5.x renames the cache argument (`cache`); the old name, which older releases need,
# still works
warnings.filterwarnings("ignore", message=".*past_key_values.*deprecated", category=FutureWarning)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import eigenscope  # noqa: E402
from eigenscope.compression.latency import OBJECTIVES  # noqa: E402
from eigenscope.models import load_model  # noqa: E402
from eigenscope.nn.fuse import fuse_lowrank_  # noqa: E402
from eigenscope.nn.layout import column_major_  # noqa: E402
from scale import measure  # noqa: E402  (benchmarks/ is the script's folder)

PROMPT = 32


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratios", default="0.1,0.2,0.4")
    ap.add_argument("--modes", default="eager,compiled")
    ap.add_argument("--layouts", default="row,col", help="weight layouts: row (as shipped), col")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--calib-seqs", type=int, default=32, help="compress's default calibration")
    ap.add_argument("--objective", default="params", choices=OBJECTIVES)
    ap.add_argument("--load", default="", help="KEY=DIR,... saved compressed models (see above)")
    ap.add_argument("--no-fuse", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--prefill-logits", default="last", choices=["last", "all"],
                    help="last: one position's logits, as generate() prefills a prompt (default); "
                         "all: every position's, as scoring a text does")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("device cuda: skipped (no GPU on this machine)")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    models, tok = _models(args)
    tmp = Path(tempfile.mkdtemp(prefix="es-speed-"))
    disk = {name: _save(m, tmp / name, tok) for name, m in models.items()}
    rss = {name: _child_rss(tmp / name, args.prefill_logits) for name in models}
    streamed = {name: _streamed_bytes(m) for name, m in models.items()}
    for name, m in models.items():
        if name != "dense" and not args.no_fuse:
            fuse_lowrank_(m)
        m.to(args.device)
    models = _layouts(models, args.layouts.split(","))
    for mode in args.modes.split(","):
        table = _run_mode(mode, models, args, disk, rss, streamed)
        print(f"\n== {mode} (best of {args.repeats}, median ratios, {torch.get_num_threads()} threads) ==")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"), flush=True)


def _layouts(models: dict, layouts: list[str]) -> dict:
    """Each model in each layout: "row" as loaded, "col" a column-major copy (name + " col")."""
    out = {}
    for layout in layouts:
        if layout not in ("row", "col"):
            raise SystemExit(f"--layouts: {layout!r} is not row or col")
        for name, m in models.items():
            if layout == "col":
                m = copy.deepcopy(m)
                column_major_(m)
            out[name if layout == "row" else f"{name} col"] = m
    return out


def _models(args):
    """Dense, each --load folder (labelled "ratio R" when its key is a number, else by its key),
    and each --ratios entry no --load key equals, compressed here with --objective."""
    base, tok = load_model("smollm2-135m")
    models = {"dense": base}
    saved = dict(kv.split("=") for kv in args.load.split(",") if kv)
    for key, folder in saved.items():
        models[_label(key)] = eigenscope.load(folder)
    cache = eigenscope.compression.StatsCache()
    for r in [float(x) for x in args.ratios.split(",") if x]:
        if _label(str(r)) in models:
            continue
        t = time.perf_counter()
        m, plan = eigenscope.compress(copy.deepcopy(base), ratio=r, tokenizer=tok, cache=cache,
                                      n_seqs=args.calib_seqs, objective=args.objective)
        print(f"compressed ratio {r} in {time.perf_counter() - t:.0f}s", flush=True)
        models[_label(str(r))] = m
    return models, tok


def _label(key: str) -> str:
    try:
        return f"ratio {float(key)}"
    except ValueError:
        return key


def _save(model, folder, tok) -> int:
    """Bytes of the model's files in the save (its safetensors shards and index; not the
    tokenizer)."""
    path = eigenscope.save(model, folder, tokenizer=tok)
    files = [path] if path.is_file() else list(path.glob("*.safetensors*"))
    return sum(f.stat().st_size for f in files)


def _child_rss(folder, logits: str) -> float:
    """Peak RSS (MiB) of a fresh process that loads the save and runs one prefill (measured as
    scale.py measures: a child of this big process would start with its peak RSS)."""
    keep = ", logits_to_keep=1" if logits == "last" else ""
    code = ("import torch, eigenscope; torch.set_num_threads(1); "
            f"m = eigenscope.load({str(folder)!r}); "
            f"torch.no_grad().__enter__(); m(torch.zeros(4, 256, dtype=torch.long){keep})")
    res = measure([sys.executable, "-c", code], env=os.environ)
    return res["rss"] / 2**20 if res["rc"] == 0 else float("nan")


def _streamed_bytes(model) -> int:
    """Bytes of the matrices one decoded token multiplies by: every Linear's weight (factors and
    the head included; a tied head once); an embedding lookup reads one row, not counted. At
    batch 1 a step streams these from memory: dense/compressed bytes bound the decode speed-up."""
    seen = {id(m.weight): m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)}
    return sum(w.numel() * w.element_size() for w in seen.values())


def _run_mode(mode, models, args, disk, rss, streamed) -> pd.DataFrame:
    kind = _Compiled if mode == "compiled" else _Eager
    runners = {name: kind(m, args.device, args.prefill_logits) for name, m in models.items()}
    g = torch.Generator().manual_seed(0)
    prefill_ids = torch.randint(0, 40000, (4, 256), generator=g).to(args.device)
    prompts = {b: torch.randint(0, 40000, (b, PROMPT), generator=g).to(args.device) for b in (1, 8)}
    rounds = {name: [] for name in models}  # name -> one dict of speeds per counted round
    for rep in range(args.repeats + 1):  # round 0 warms up (and compiles) and is not counted
        for name, run in runners.items():
            got = {"prefill": run.prefill(prefill_ids),
                   "decode b1": run.decode(prompts[1], args.new_tokens),
                   "decode b8": run.decode(prompts[8], args.new_tokens)}
            if rep:
                rounds[name].append(got)
    return pd.DataFrame([_row(name, rounds, models, disk, rss, streamed) for name in rounds])


def _row(name, rounds, models, disk, rss, streamed) -> dict:
    """One table row: best speeds, median ratios to the dense model of the same layout (and to
    the dense model as shipped), memory and size (of the save both layouts were made from)."""
    base = name.removesuffix(" col")
    ref = "dense col" if name.endswith(" col") else "dense"
    best = {k: max(r[k] for r in rounds[name]) for k in rounds[name][0]}

    def x(key, other=ref):
        if other not in rounds:
            return float("nan")
        return float(np.median([a[key] / b[key] for a, b in zip(rounds[name], rounds[other])]))
    return {"model": name, "prefill tok/s": best["prefill"], "x": x("prefill"),
            "decode b1 tok/s": best["decode b1"], "x b1": x("decode b1"),
            "x b1 row": x("decode b1", "dense"),
            "bytes cap": streamed["dense"] / streamed[base],
            "decode b8 tok/s": best["decode b8"], "x b8": x("decode b8"),
            "peak RSS MiB": round(rss[base]), "disk MiB": round(disk[base] / 2**20, 1),
            "params M": round(sum(p.numel() for p in models[name].parameters()) / 1e6, 1)}


class _Eager:
    """The model as transformers runs it: one forward per step, a dynamic KV cache."""

    def __init__(self, model, device, logits="last"):
        self.model, self.fast, self.device = model, model, device
        # generate() asks for the last position's logits only (`logits_to_keep=1`) where the
        # model's forward takes that argument; a prompt's other 49,152-wide rows are never used
        takes = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.keep = {"logits_to_keep": 1} if logits == "last" and takes else {}

    @torch.no_grad()
    def prefill(self, ids) -> float:
        _sync(self.device)
        t = time.perf_counter()
        self.fast(ids, use_cache=False, **self.keep)
        _sync(self.device)
        return ids.numel() / (time.perf_counter() - t)

    @torch.no_grad()
    def decode(self, prompt, steps) -> float:
        """Greedy decoding with the KV cache; tokens/s over the decode steps only."""
        out = self.model(prompt, use_cache=True)
        cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        _sync(self.device)
        t = time.perf_counter()
        for _ in range(steps):
            out = self.model(nxt, past_key_values=cache, use_cache=True)
            cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        _sync(self.device)
        return prompt.shape[0] * steps / (time.perf_counter() - t)


class _Compiled(_Eager):
    """The whole model compiled with static shapes (prefill, and each decode step: one graph);
    decoding writes into a StaticCache, the prompt runs eagerly into it."""

    def __init__(self, model, device, logits="last"):
        super().__init__(model, device, logits)
        import torch._dynamo.config as dc
        for knob in ("cache_size_limit", "recompile_limit"):  # one graph per model and shape
            if hasattr(dc, knob):
                setattr(dc, knob, max(getattr(dc, knob), 256))
        self.fast = torch.compile(model, dynamic=False)
        self.caches = {}

    @torch.no_grad()
    def decode(self, prompt, steps) -> float:
        from transformers import StaticCache

        b, n = prompt.shape
        if (b, steps) not in self.caches:
            self.caches[b, steps] = StaticCache(config=self.model.config, max_cache_len=n + steps)
        cache = self.caches[b, steps]
        cache.reset()
        pos = torch.arange(n, device=self.device)
        logits = self.model(prompt, past_key_values=cache, cache_position=pos).logits
        nxt = logits[:, -1:].argmax(-1)
        _sync(self.device)
        t = time.perf_counter()
        for i in range(steps):
            pos = torch.tensor([n + i], device=self.device)
            logits = self.fast(nxt, past_key_values=cache, cache_position=pos).logits
            nxt = logits[:, -1:].argmax(-1)
        _sync(self.device)
        return b * steps / (time.perf_counter() - t)


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
