"""compress_quality.py --bytes: perplexity and KL against model bytes, one line per method.

Every variant starts from the same float32 SmolLM2-135M and changes only the Linears inside the
decoder layers (the targets of `compress`); bytes = parameters + buffers of the whole model, so
the float32 embedding (tied with the head, 113 MB) is in every figure alike.
"""
from __future__ import annotations

import copy
import time

import pandas as pd

import eigenscope
from eigenscope.compression import StatsCache, statistics
from eigenscope.compression.quantize import quantize_
from eigenscope.compression.targets import find_blocks
from eigenscope.inputs import default_text, token_ids
from eigenscope.evaluation import evaluate
from eigenscope.models import load_model
from eigenscope.nn.quant import model_nbytes

# method -> [(setting, recipe)]; a recipe says what to apply to which starting model
# torchao's affine (min-max) codes for the combinations: HQQ's fitted zeros cost ~1-3 s per
# matrix on this CPU (x 210 matrices per point), torchao's 0.04 s; HQQ's points come last
METHODS = {  # in the order that answers "at int4's size, does eigenscope win?" first
    "int8/int4 torchao": [("int4 g64", dict(q=(4, 64, "torchao"))), ("int8", dict(q=(8, None, "torchao")))],
    "low rank + int4 factors": [("ratio 0.2", dict(lr=0.2, q=(4, 64, "torchao")))],
    # g128 r4, g256 r7 and per-row r9: the ranks whose float16 factors fit in the scales saved
    # against int4 g64, so these points are no larger than int4 g64 (576 inputs take 96 and 192)
    "int4 + QERA correction": [("g128 r4", dict(q=(4, 128, "torchao"), rank=4)),
                               ("g256 r7", dict(q=(4, 256, "torchao"), rank=7)),
                               ("row r9", dict(q=(4, None, "torchao"), rank=9)),
                               ("g128 r16", dict(q=(4, 128, "torchao"), rank=16)),
                               ("g64 r32", dict(q=(4, 64, "torchao"), rank=32))],
    "low rank + int8 factors": [("ratio 0.4", dict(lr=0.4, q=(8, None, "torchao"))),
                                ("ratio 0.2", dict(lr=0.2, q=(8, None, "torchao")))],
    "low rank (eigenscope)": [("ratio 0.2", dict(lr=0.2)), ("ratio 0.4", dict(lr=0.4))],
    "int8/int4 HQQ": [("int4 g64", dict(q=(4, 64, "hqq"))), ("int8", dict(q=(8, None, "hqq")))],
}
EXTRA = {"int8/int4 torchao": [("int4 g128", dict(q=(4, 128, "torchao")))],     # --all: more points
         "int4 + QERA correction": [("g64 r16", dict(q=(4, 64, "torchao"), rank=16))]}


def bytes_comparison(args):
    base, tok = load_model("smollm2-135m")
    flat = token_ids(default_text(), tok)
    n_calib = args.calib_seqs * args.seq_len
    calib = flat[:n_calib].view(args.calib_seqs, args.seq_len)
    ev = dict(inputs=default_text(), tokenizer=tok, seq_len=args.seq_len, max_tokens=args.eval_tokens,
              skip_tokens=n_calib)
    stats = _stats(base, calib, args)
    methods = {k: v + (EXTRA.get(k, []) if args.all else []) for k, v in METHODS.items()}
    lowrank = _lowrank(base, calib, stats, args)
    rows = [_row("dense float32", "-", base, base, ev)]
    print(_fmt(pd.DataFrame(rows)), flush=True)
    for method, points in methods.items():
        for setting, recipe in points:
            start = lowrank.get(recipe.get("lr")) if "lr" in recipe else base
            if start is None:
                continue
            model = copy.deepcopy(start)
            if "q" in recipe:
                bits, group, backend = recipe["q"]
                quantize_(model, bits=bits, group=group, backend=backend, rank=recipe.get("rank", 0),
                          stats=stats)
            rows.append(_row(method, setting, model, base, ev))
            print(_fmt(pd.DataFrame(rows[-1:])), flush=True)
            _plot(pd.DataFrame(rows), args.plot)  # after each point: a long run can be cut short
    table = pd.DataFrame(rows)
    print("\n" + _fmt(table))
    print(_verdict(table))


def _stats(base, calib, args) -> dict:
    """Gram matrices and output-gradient weights of every target: QERA's whitening (the same
    statistics `compress` uses), gathered once (and kept in --stats-cache, a safetensors file)."""
    from pathlib import Path

    from safetensors.torch import load_file, save_file

    from eigenscope.compression.registry import LayerStats
    if args.stats_cache and Path(args.stats_cache).exists():
        flat = load_file(args.stats_cache)
        names = {k.rsplit(":", 1)[0] for k in flat}
        return {n: LayerStats(gram=flat[f"{n}:gram"], d_out=flat.get(f"{n}:d_out")) for n in names}
    t = time.perf_counter()
    stats = statistics(base, calib, grad_batches=args.grad_batches)
    print(f"calibration statistics: {time.perf_counter() - t:.0f}s", flush=True)
    if args.stats_cache:
        save_file({f"{n}:{k}": getattr(st, k).clone() for n, st in stats.items()
                   for k in ("gram", "d_out") if getattr(st, k) is not None}, args.stats_cache)
    return stats


def _lowrank(base, calib, stats, args) -> dict:
    """{ratio: model compressed with the defaults}, loaded from --load or compressed here."""
    saved = dict(kv.split("=") for kv in args.load.split(",") if kv)
    out, cache = {}, StatsCache()
    for r in (0.2, 0.4):
        key = next((k for k in saved if float(k) == r), None)
        if key is not None:
            out[r] = eigenscope.load(saved[key])
            continue
        out[r], _ = eigenscope.compress(copy.deepcopy(base), ratio=r, calibration=calib, cache=cache,
                                        grad_batches=args.grad_batches)
    return out


def _row(method, setting, model, base, ev) -> dict:
    res = evaluate(model, reference=base if model is not base else None, **ev)
    nbytes = model_nbytes(model)
    # the decoder layers only, found on the dense model: a quantized block holds no Linear left
    # for find_blocks to recognise it by
    blocks = sum(model_nbytes(model.get_submodule(n)) for n, _ in find_blocks(base))
    return dict(method=method, setting=setting, MB=nbytes / 2**20, blocks_MB=blocks / 2**20,
                ppl=res["perplexity"], kl=res.get("kl", 0.0), top1=res.get("top1_agreement", 1.0))


def _verdict(table) -> str:
    """At int4's size: best eigenscope combination vs int4 alone; the same at int8's size."""
    lines = [""]
    ours = table[table.method.str.contains("low rank|QERA")]
    for label, size in (("int4", "int4 g64"), ("int8", "int8")):
        ref = table[(table.method == "int8/int4 torchao") & (table.setting == size)]
        if ref.empty:
            continue
        ref = ref.iloc[0]
        fit = ours[ours.MB <= ref.MB * 1.0001]
        if fit.empty:
            lines.append(f"at {label}'s size ({ref.MB:.1f} MB): no eigenscope variant that small")
            continue
        best = fit.loc[fit.ppl.idxmin()]
        lines.append(f"at {label}'s size ({ref.MB:.1f} MB, ppl {ref.ppl:.2f}): best eigenscope "
                     f"{best.method} {best.setting} {best.MB:.1f} MB ppl {best.ppl:.2f} "
                     f"({100 * (best.ppl / ref.ppl - 1):+.1f} %)")
    return "\n".join(lines)


def _plot(table, path):
    from pathlib import Path

    from eigenscope.plot._mpl import new_figure
    fig, ax = new_figure(figsize=(7, 4.4))
    for method, g in table[table.method != "dense float32"].groupby("method", sort=False):
        g = g.sort_values("MB")
        ax.plot(g.MB, g.ppl, marker="o", label=method)
    d = table[table.method == "dense float32"].iloc[0]
    ax.axhline(d.ppl, color="grey", lw=0.8, ls="--")
    ax.scatter([d.MB], [d.ppl], color="black", zorder=3, label="dense float32")
    from matplotlib.ticker import FormatStrFormatter
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # plain numbers on both log axes, not powers of ten
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set_xlabel("model bytes (MB; float32 embedding included)")
    ax.set_ylabel("perplexity (held-out pydoc)")
    ax.set_title("SmolLM2-135M: perplexity vs bytes")
    ax.legend(fontsize=7)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def _fmt(df) -> str:
    return df.to_string(index=False, float_format=lambda v: f"{v:.4g}")
