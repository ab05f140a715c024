"""Inference speed of compressed SmolLM2-135M against the dense model, side by side in one run.

For each mode (eager; compiled with torch.compile, each decoder layer compiled with dynamic
shapes) every model runs the same way, rounds alternate between the models (dense, then each
ratio), and the best of --repeats rounds is kept, so a busy moment of the shared machine hits
them all alike. Printed per model: prefill tokens/s (batch 4 x 256 tokens, no cache), greedy
decode tokens/s at batch 1 and batch 8 (KV cache, --new-tokens steps after a 32-token prompt),
each also as a ratio to dense; peak RSS of a child process that loads the saved model and runs a
prefill; bytes on disk of the eigenscope save. Compressed models are fused (fuse_lowrank_: one
`down` GEMM for q/k/v and gate/up) unless --no-fuse.

    python benchmarks/inference_speed.py [--ratios 0.1,0.2,0.4] [--modes eager,compiled]
        [--load 0.2=out/c02,lat0.2=out/l02] [--objective params|latency] [--device cuda]

--load KEY=DIR adds a saved model: a numeric KEY stands for that ratio (not compressed again),
any other KEY is a label of its own (e.g. the same ratio compressed with objective="latency").
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

import eigenscope  # noqa: E402
from eigenscope.models import load_model  # noqa: E402
from eigenscope.nn.fuse import fuse_lowrank_  # noqa: E402
from scale import measure  # noqa: E402  (benchmarks/ is the script's folder)

PROMPT = 32


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratios", default="0.1,0.2,0.4")
    ap.add_argument("--modes", default="eager,compiled")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--calib-seqs", type=int, default=32, help="compress's default calibration")
    ap.add_argument("--objective", default="params", choices=["params", "latency"])
    ap.add_argument("--load", default="", help="KEY=DIR,... saved compressed models (see above)")
    ap.add_argument("--no-fuse", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("device cuda: skipped (no GPU on this machine)")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    models, tok = _models(args)
    tmp = Path(tempfile.mkdtemp(prefix="es-speed-"))
    disk = {name: _save(m, tmp / name, tok) for name, m in models.items()}
    rss = {name: _child_rss(tmp / name) for name in models}
    for name, m in models.items():
        if name != "dense" and not args.no_fuse:
            fuse_lowrank_(m)
        m.to(args.device)
    tables = []
    for mode in sorted(args.modes.split(","), key=lambda m: m != "eager"):  # compiling changes the models
        tables.append(_run_mode(mode, models, args, disk, rss))
        print(f"\n== {mode} (best of {args.repeats}, {torch.get_num_threads()} threads) ==")
        print(tables[-1].to_string(index=False, float_format=lambda v: f"{v:.3g}"), flush=True)


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


def _child_rss(folder) -> float:
    """Peak RSS (MiB) of a fresh process that loads the save and runs one prefill (measured as
    scale.py measures: a child of this big process would start with its peak RSS)."""
    code = ("import torch, eigenscope; torch.set_num_threads(1); "
            f"m = eigenscope.load({str(folder)!r}); "
            "torch.no_grad().__enter__(); m(torch.zeros(4, 256, dtype=torch.long))")
    res = measure([sys.executable, "-c", code], env=os.environ)
    return res["rss"] / 2**20 if res["rc"] == 0 else float("nan")


def _run_mode(mode, models, args, disk, rss) -> pd.DataFrame:
    runners = {name: _compiled(m) if mode == "compiled" else m for name, m in models.items()}
    g = torch.Generator().manual_seed(0)
    prefill_ids = torch.randint(0, 40000, (4, 256), generator=g).to(args.device)
    prompts = {b: torch.randint(0, 40000, (b, PROMPT), generator=g).to(args.device) for b in (1, 8)}
    best = {name: {"prefill": 0.0, "decode b1": 0.0, "decode b8": 0.0} for name in models}
    for rep in range(args.repeats + 1):  # round 0 warms up (and compiles) and is not counted
        for name, run in runners.items():
            got = {"prefill": _prefill(run, prefill_ids, args.device),
                   "decode b1": _decode(run, prompts[1], args.new_tokens, args.device),
                   "decode b8": _decode(run, prompts[8], args.new_tokens, args.device)}
            if rep:
                best[name] = {k: max(best[name][k], v) for k, v in got.items()}
    rows = []
    for name, b in best.items():
        d = best["dense"]
        rows.append({"model": name, "prefill tok/s": b["prefill"], "x": b["prefill"] / d["prefill"],
                     "decode b1 tok/s": b["decode b1"], "x b1": b["decode b1"] / d["decode b1"],
                     "decode b8 tok/s": b["decode b8"], "x b8": b["decode b8"] / d["decode b8"],
                     "peak RSS MiB": round(rss[name]), "disk MiB": round(disk[name] / 2**20, 1),
                     "params M": round(sum(p.numel() for p in models[name].parameters()) / 1e6, 1)})
    return pd.DataFrame(rows)


def _compiled(model):
    """Each decoder layer compiled (dynamic shapes: one graph serves every layer and length);
    the HF glue around the layers stays eager, as it is the same code for every model."""
    m = model
    for layer in m.model.layers:
        layer.compile(dynamic=True)
    return m


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def _prefill(model, ids, device) -> float:
    _sync(device)
    t = time.perf_counter()
    model(ids, use_cache=False)
    _sync(device)
    return ids.numel() / (time.perf_counter() - t)


@torch.no_grad()
def _decode(model, prompt, steps, device) -> float:
    """Greedy decoding with the KV cache; tokens/s over the decode steps only."""
    out = model(prompt, use_cache=True)
    cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        out = model(nxt, past_key_values=cache, use_cache=True)
        cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
    _sync(device)
    return prompt.shape[0] * steps / (time.perf_counter() - t)


if __name__ == "__main__":
    main()
