"""Memory and time of `analyze` and `compress` on synthetic Llama-shaped models, in child processes.

Writes, seeded and deterministic, a Llama-shaped model (hidden 2048, FFN 5632, 16 query / 4
key-value heads, vocab 32000) as bf16 sharded safetensors with config.json and a tokenizer
(a byte-level BPE trained here on the pydoc text), into a temporary folder. Weights are random
plus a planted low-rank part, so spectra are not pure noise. Then it runs, each in its own child
process (`eigenscope` CLI, as a user would):
    analyze DIR --metrics norms,powerlaw       (and, with --full, every metric)
    compress DIR --ratio 0.2 --calib-seqs 8 --seq-len 128 --out OUT
and prints peak RSS (getrusage of the child), the same minus a bare
`import eigenscope, torch, transformers`, its ratio to the model's float32 size and to its
largest matrix, and wall time. Targets (the issue "Models larger than memory"): analyze at most
1.0 GiB over the bare interpreter on both sizes; compress at most 2.5 GiB over it on the 24-block
model, and the 24-block peak within 25 % of the 8-block peak.

    python benchmarks/scale.py [--blocks 8,24] [--steps analyze,compress] [--full] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPE = dict(hidden_size=2048, intermediate_size=5632, num_attention_heads=16,
             num_key_value_heads=4, vocab_size=32000)
PLANTED_RANK = 32
_WRAP = ("import resource, subprocess, sys, json, time; t = time.perf_counter(); "
         "r = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT); "
         "print(json.dumps(dict(rc=r.returncode, seconds=time.perf_counter() - t, "
         "rss=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, "
         "out=r.stdout.decode(errors='replace')[-3000:])))")


def measure(cmd: list[str], env=None) -> dict:
    """Run `cmd` in a fresh wrapper process; its peak RSS is the wrapper's RUSAGE_CHILDREN."""
    out = subprocess.run([sys.executable, "-c", _WRAP, *cmd], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout)


def synth(shape, g):
    """bf16 weights: N(0, 0.02^2) noise plus a planted rank-32 part with decaying strengths."""
    import torch
    if len(shape) == 1:
        return torch.ones(shape, dtype=torch.bfloat16)
    m, n = shape
    k = min(PLANTED_RANK, m, n)
    U = torch.randn(m, k, generator=g) / m ** 0.5
    V = torch.randn(k, n, generator=g) / n ** 0.5
    edge = 0.02 * (m ** 0.5 + n ** 0.5)                          # top of the noise's spectrum
    s = 3.0 * edge * 0.9 ** torch.arange(k, dtype=torch.float32)  # strongest well above it
    W = torch.randn(m, n, generator=g).mul_(0.02)
    return W.addmm_(U * s, V).to(torch.bfloat16)


def write_model(folder: Path, blocks: int, *, seed: int = 0, shard_bytes: int = 2**30) -> dict:
    """The synthetic model in `folder`; returns its sizes."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    from eigenscope.sources.skeleton import build

    folder.mkdir(parents=True, exist_ok=True)
    config = LlamaConfig(**SHAPE, num_hidden_layers=blocks, tie_word_embeddings=False,
                         torch_dtype="bfloat16", architectures=["LlamaForCausalLM"])
    config.save_pretrained(folder)
    shapes = {n: tuple(p.shape) for n, p in build(config).named_parameters()}
    g = torch.Generator().manual_seed(seed)
    shard, weight_map, params, largest = {}, {}, 0, 0
    for name, shape in shapes.items():
        shard[name] = synth(shape, g)
        params += shard[name].numel()
        largest = max(largest, shard[name].numel())
        if sum(t.numel() * 2 for t in shard.values()) >= shard_bytes or name == list(shapes)[-1]:
            file = f"model-{len(set(weight_map.values())) + 1:05d}.safetensors"
            save_file(shard, str(folder / file), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, file))
            shard = {}
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": params * 2}, "weight_map": weight_map}))
    write_tokenizer(folder)
    return dict(params=params, fp32_bytes=4 * params, largest_bytes=4 * largest)


def write_tokenizer(folder: Path) -> None:
    """A byte-level BPE trained on the pydoc text (vocab below the model's 32000)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from eigenscope.inputs import default_text

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([default_text()], trainers.BpeTrainer(vocab_size=8000,
                                                                  show_progress=False))
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(folder)


def report(name: str, res: dict, bare: dict, sizes: dict) -> dict:
    over = res["rss"] - bare["rss"]
    row = dict(step=name, rc=res["rc"], peak_gib=res["rss"] / 2**30, over_bare_gib=over / 2**30,
               x_fp32_model=res["rss"] / sizes["fp32_bytes"],
               over_x_fp32_model=over / sizes["fp32_bytes"],
               x_largest_matrix=over / sizes["largest_bytes"], seconds=res["seconds"])
    print("  " + "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in row.items()), flush=True)
    if res["rc"] != 0:
        print(res["out"])
    return row


def run_size(blocks: int, root: Path, steps, full: bool) -> list[dict]:
    folder = root / f"llama-{blocks}"
    t0 = time.perf_counter()
    sizes = write_model(folder, blocks)
    print(f"\n{blocks} blocks: {sizes['params'] / 1e9:.3f} B parameters, "
          f"{sizes['fp32_bytes'] / 2**30:.2f} GiB as float32, largest matrix "
          f"{sizes['largest_bytes'] / 2**20:.0f} MiB; written in {time.perf_counter() - t0:.0f} s",
          flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    bare = measure([sys.executable, "-c", "import eigenscope, torch, transformers"], env)
    print(f"  bare interpreter: {bare['rss'] / 2**30:.3f} GiB", flush=True)
    cli = [sys.executable, "-m", "eigenscope"]
    rows = []
    if "analyze" in steps:
        rows.append(report("analyze norms,powerlaw", measure(
            cli + ["analyze", str(folder), "--metrics", "norms,powerlaw", "--rows", "0"], env),
            bare, sizes))
        if full:
            rows.append(report("analyze (every metric)", measure(
                cli + ["analyze", str(folder), "--rows", "0"], env), bare, sizes))
    if "compress" in steps:
        res = measure(cli + ["compress", str(folder), "--ratio", "0.2", "--calib-seqs", "8",
                             "--seq-len", "128", "--out", str(root / f"out-{blocks}")], env)
        rows.append(report("compress ratio 0.2", res, bare, sizes))
        print("  " + "\n  ".join(l for l in res["out"].splitlines()
                                 if l.startswith(("time per block", "model:"))), flush=True)
        shutil.rmtree(root / f"out-{blocks}", ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    return [dict(blocks=blocks, **r) for r in rows]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", default="8,24")
    ap.add_argument("--steps", default="analyze,compress")
    ap.add_argument("--full", action="store_true", help="also analyze with every metric")
    ap.add_argument("--keep", type=Path, help="work in this folder instead of a temporary one")
    args = ap.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="eigenscope-scale-"))
    rows = []
    try:
        for b in [int(x) for x in args.blocks.split(",")]:
            rows += run_size(b, root, args.steps.split(","), args.full)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    comp = {r["blocks"]: r for r in rows if r["step"].startswith("compress")}
    if len(comp) == 2:
        lo, hi = sorted(comp)
        print(f"\ncompress peak, {hi} vs {lo} blocks: "
              f"{comp[hi]['peak_gib'] / comp[lo]['peak_gib']:.3f}x (target <= 1.25)")


if __name__ == "__main__":
    main()
