"""Spectra of activations on SmolLM2-135M: model scores, their speed, the live trace, the filter.

1. scores: Matrix Entropy and Matrix Nuclear-Norm of the final representations (evaluate) for
   the model and its compressed versions, against perplexity and KL on held-out pydoc text.
2. speed: the two scores computed side by side on the same hidden states (metric alone, and
   with the forward pass that produces the states), as ratios.
3. trace: ActivationTrace features while the model reads a prompt and generates; a detector is
   fitted on one half of the inputs and scored (AUROC) on the other half: in-domain pydoc
   prose against the same windows with shuffled tokens, and against random tokens.
4. filter: SpectralFilter (MP spikes of the residual stream, fitted on calibration text) at a
   few layers: held-out perplexity, with a random subspace of the same size as a control.

    python benchmarks/activations.py [--ratios 0.1,0.2,0.3,0.4] [--parts scores,speed,trace,filter]
"""
from __future__ import annotations

import argparse
import copy
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from eigenscope.hidden_states.runner import collect  # noqa: E402
from eigenscope.hidden_states.sites import find_sites  # noqa: E402
from eigenscope.compression import StatsCache, compress  # noqa: E402
from eigenscope.evaluation import evaluate  # noqa: E402
from eigenscope.inputs import HELD_OUT_SKIP, text_windows  # noqa: E402
from eigenscope.maths.activations import matrix_entropy, matrix_nuclear_norm, normalize_tokens  # noqa: E402
from eigenscope.models import load_model  # noqa: E402
from eigenscope.monitor import ActivationTrace  # noqa: E402
from eigenscope.nn import SpectralFilter  # noqa: E402

DESCRIPTORS = ("entropy", "top_share", "mp_ks")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="scores,speed,trace,filter")
    ap.add_argument("--ratios", default="0.1,0.2,0.3,0.4")
    ap.add_argument("--calib-seqs", type=int, default=16,
                    help="calibration windows of 256 tokens (compress; the filter uses half)")
    ap.add_argument("--eval-tokens", type=int, default=2048)
    ap.add_argument("--speed-repeats", type=int, default=2)
    ap.add_argument("--trace-inputs", type=int, default=20, help="inputs per class (half to fit)")
    ap.add_argument("--prompt-len", type=int, default=48)
    ap.add_argument("--new-tokens", type=int, default=6)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--trace-layers", default="0,4,8,12,16,20,24,28")
    ap.add_argument("--filter-layers", default="2,14,28")
    ap.add_argument("--filter-eval-tokens", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    t0 = time.perf_counter()
    base, tok = load_model("smollm2-135m")
    print(f"loaded SmolLM2-135M in {time.perf_counter() - t0:.0f} s; torch threads {torch.get_num_threads()}")
    ev = dict(tokenizer=tok, max_tokens=args.eval_tokens)
    if "scores" in parts:
        scores(base, tok, args, ev)
    if "speed" in parts:
        speed(base, tok, args)
    if "trace" in parts:
        trace(base, tok, args)
    if "filter" in parts:
        spectral_filter(base, tok, args, ev)
    print(f"total {time.perf_counter() - t0:.0f} s")


def _table(title: str, df: pd.DataFrame) -> None:
    print(f"\n## {title}\n")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def _spearman(a, b) -> float:
    ra, rb = pd.Series(a).rank(), pd.Series(b).rank()
    return float(np.corrcoef(ra, rb)[0, 1])


# ---------- 1. scores against perplexity and KL ----------

def scores(base, tok, args, ev) -> None:
    rows = [{"ratio": 0.0, **_scores(evaluate(base, **ev)), "compress_s": 0.0}]
    cache = StatsCache()                     # statistics of the first call, reused by the others
    for r in [float(x) for x in args.ratios.split(",") if x]:
        t = time.perf_counter()
        model, plan = compress(copy.deepcopy(base), ratio=r, calibration=None, tokenizer=tok,
                               n_seqs=args.calib_seqs, cache=cache)
        rows.append({"ratio": r, **_scores(evaluate(model, reference=base, **ev)),
                     "compress_s": time.perf_counter() - t})
        del model
    df = pd.DataFrame(rows)
    _table(f"scores vs compression (held-out pydoc, {args.eval_tokens} tokens; calibration "
           f"{args.calib_seqs} x 256 tokens, statistics reused across ratios)", df)
    print("\nSpearman rank correlation over the models:")
    for col in ("matrix_entropy", "matrix_nuclear_norm"):
        print(f"  {col:20s} vs perplexity {_spearman(df[col], df['perplexity']):+.2f}   "
              f"vs KL {_spearman(df[col][1:], df['kl'][1:]):+.2f} (compressed only)")


def _scores(res: dict) -> dict:
    return {"perplexity": res["perplexity"], "kl": res.get("kl", 0.0),
            "matrix_entropy": res["matrix_entropy"], "matrix_nuclear_norm": res["matrix_nuclear_norm"]}


# ---------- 2. speed: Matrix Nuclear-Norm vs Matrix Entropy ----------

def _me_paper(h: torch.Tensor) -> torch.Tensor:
    """Matrix Entropy as its authors compute it: the d x d covariance of the normalised tokens
    and a full SVD of it, one sequence at a time."""
    out = []
    for R in h:
        Z = normalize_tokens(R)
        S = Z.T @ Z / Z.shape[0]
        lam = torch.linalg.svdvals(S / torch.trace(S))
        out.append(-(lam * torch.log(lam.clamp_min(1e-300))).sum() / np.log(S.shape[0]))
    return torch.stack(out)


def _best(fn, repeats: int) -> tuple[float, object]:
    best, val = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        val = fn()
        best = min(best, time.perf_counter() - t)
    return best, val


def speed(base, tok, args) -> None:
    ids = text_windows(None, tok, seq_len=256, max_seqs=args.eval_tokens // 256, skip=HELD_OUT_SKIP)
    backbone = base.base_model

    def forward():
        with torch.no_grad():
            return torch.cat([backbone(input_ids=b).last_hidden_state for b in ids.split(4)])

    fwd_s, h = _best(forward, args.speed_repeats)
    me_s, me = _best(lambda: matrix_entropy(h), args.speed_repeats)
    mep_s, mep = _best(lambda: _me_paper(h), args.speed_repeats)
    mnn_s, mnn = _best(lambda: matrix_nuclear_norm(h), args.speed_repeats)
    assert torch.allclose(me, mep, rtol=1e-6, atol=1e-9), "the two Matrix Entropy paths disagree"
    n = h.shape[0]
    rows = [{"score": "Matrix Nuclear-Norm", "metric_s": mnn_s, "with_forward_s": fwd_s + mnn_s,
             "value": float(mnn.mean())},
            {"score": "Matrix Entropy (ours: eigh of the smaller Gram)", "metric_s": me_s,
             "with_forward_s": fwd_s + me_s, "value": float(me.mean())},
            {"score": "Matrix Entropy (paper: SVD of the d x d covariance)", "metric_s": mep_s,
             "with_forward_s": fwd_s + mep_s, "value": float(mep.mean())}]
    df = pd.DataFrame(rows)
    df["metric_speedup_of_mnn"] = df["metric_s"] / mnn_s
    df["with_forward_speedup_of_mnn"] = df["with_forward_s"] / (fwd_s + mnn_s)
    _table(f"speed on {n} windows x 256 tokens x {h.shape[-1]} dims (best of "
           f"{args.speed_repeats}; forward pass {fwd_s:.2f} s)", df)


# ---------- 3. the live trace: in-domain vs shuffled / random tokens ----------

def _inputs(tok, args) -> dict[str, torch.Tensor]:
    n, P = args.trace_inputs, args.prompt_len
    ids = text_windows(None, tok, seq_len=P, max_seqs=n, skip=HELD_OUT_SKIP + 16384, min_seqs=n)
    g = torch.Generator().manual_seed(0)
    shuffled = torch.stack([row[torch.randperm(P, generator=g)] for row in ids])
    random = torch.randint(0, len(tok), (n, P), generator=g)
    return {"pydoc": ids, "shuffled": shuffled, "random": random}


def _features(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per phase: the mean of each descriptor over the steps, for every traced layer."""
    out = {}
    for phase in ("prompt", "generated"):
        part = df[df["phase"] == phase]
        out[phase] = part.groupby("layer")[list(DESCRIPTORS)].mean().to_numpy().ravel()
    out["both"] = np.concatenate([out["prompt"], out["generated"]])
    return out


def auroc(pos, neg) -> float:
    """P(score of a positive > score of a negative), ties counting one half (Mann-Whitney)."""
    pos, neg = np.asarray(pos, float)[:, None], np.asarray(neg, float)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def _one_class(train_in: np.ndarray):
    """Score = squared z-distance to the in-domain training inputs (diagonal Gaussian): fitted on
    in-domain inputs only, no out-of-domain example is seen."""
    mu, sd = train_in.mean(0), train_in.std(0) + 1e-9
    return lambda X: (((X - mu) / sd) ** 2).mean(1)


def _best_feature(train_in: np.ndarray, train_out: np.ndarray):
    """The single feature and sign with the best AUROC on the training half."""
    best = max(((auroc(s * train_out[:, j], s * train_in[:, j]), j, s)
                for j in range(train_in.shape[1]) for s in (1, -1)))
    _, j, s = best
    return (lambda X: s * X[:, j]), j


def trace(base, tok, args) -> None:
    layers = [int(x) for x in args.trace_layers.split(",")]
    inputs = _inputs(tok, args)
    feats: dict[str, dict[str, list]] = {}
    t = time.perf_counter()
    tr = ActivationTrace(base, layers=layers, window=args.window)
    for cls, ids in inputs.items():
        for row in ids:
            tr.reset()
            df = tr.run(row[None], max_new_tokens=args.new_tokens, do_sample=False,
                        pad_token_id=tok.eos_token_id)
            for phase, v in _features(df).items():
                feats.setdefault(phase, {}).setdefault(cls, []).append(v)
    elapsed = time.perf_counter() - t
    half = args.trace_inputs // 2
    names = [f"L{la}.{d}" for la in layers for d in DESCRIPTORS]
    rows = []
    for phase, by_cls in feats.items():
        X = {c: np.stack(v) for c, v in by_cls.items()}
        score = _one_class(X["pydoc"][:half])
        for ood in ("shuffled", "random"):
            pick, j = _best_feature(X["pydoc"][:half], X[ood][:half])
            rows.append({
                "features": phase, "ood": ood,
                "one_class_auroc": auroc(score(X[ood][half:]), score(X["pydoc"][half:])),
                "best_feature": (names + names)[j] if phase == "both" else names[j],
                "best_feature_auroc": auroc(pick(X[ood][half:]), pick(X["pydoc"][half:]))})
    _table(f"trace: AUROC on held-out inputs ({args.trace_inputs - half} per class; detectors "
           f"fitted on the other {half}); prompt {args.prompt_len} tokens, {args.new_tokens} "
           f"generated, window {args.window}, layers {layers}; {elapsed:.0f} s for "
           f"{3 * args.trace_inputs} traced inputs", pd.DataFrame(rows))


# ---------- 4. SpectralFilter at a few layers ----------

def spectral_filter(base, tok, args, ev) -> None:
    layers = [int(x) for x in args.filter_layers.split(",")]
    sites = find_sites(base, "residual", layers=layers)
    calib = text_windows(None, tok, seq_len=256, max_seqs=max(1, args.calib_seqs // 2))
    stats = collect(base, list(calib.split(8)), sites, max_tokens=calib.numel(),
                    sequence_scores=False)
    ev = dict(ev, max_tokens=args.filter_eval_tokens)
    rows = [{"layer": "none", "mode": "-", "kept": 576, "perplexity": evaluate(base, **ev)["perplexity"]}]
    g = torch.Generator().manual_seed(0)
    for site in sites:
        st = stats[site.name]
        cov, mean = st.covariance(), st.mean()
        for mode in ("denoise", "project"):
            f = SpectralFilter.from_covariance(cov, mean, tokens=st.n, keep="spikes", mode=mode)
            rows.append(_filtered(base, site, f, ev, site.layer, mode))
        k = f.rank
        Q = torch.linalg.qr(torch.randn(cov.shape[0], k, generator=g, dtype=torch.float64))[0]
        rows.append(_filtered(base, site, SpectralFilter(Q, mean, mode="denoise"), ev,
                              site.layer, f"random {k}-dim, denoise"))
    _table(f"SpectralFilter on the residual stream (MP spikes of {calib.numel()} calibration "
           f"tokens), held-out perplexity on {ev['max_tokens']} tokens", pd.DataFrame(rows))


def _filtered(model, site, f: SpectralFilter, ev, layer, mode) -> dict:
    f.attach(site.module, where=site.where)
    try:
        ppl = evaluate(model, **ev)["perplexity"]
    finally:
        f.remove()
    return {"layer": layer, "mode": mode, "kept": f.rank, "perplexity": ppl}


if __name__ == "__main__":
    main()
