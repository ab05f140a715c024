"""Tiny models for the source tests, and writers for every format (HF names -> GGUF names here
are an independent table, not eigenscope's mapping)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eigenscope.sources.base import Source

HIDDEN, INTER, KV, VOCAB, BLOCKS = 64, 96, 32, 40, 2


class Norm(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n) + 0.01 * torch.randn(n))


class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.k_proj = nn.Linear(HIDDEN, KV, bias=False)
        self.v_proj = nn.Linear(HIDDEN, KV, bias=False)
        self.o_proj = nn.Linear(HIDDEN, HIDDEN, bias=False)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate_proj = nn.Linear(HIDDEN, INTER, bias=False)
        self.up_proj = nn.Linear(HIDDEN, INTER, bias=False)
        self.down_proj = nn.Linear(INTER, HIDDEN, bias=False)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn, self.mlp = Attn(), MLP()
        self.input_layernorm, self.post_attention_layernorm = Norm(HIDDEN), Norm(HIDDEN)


class Inner(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, HIDDEN)
        self.layers = nn.ModuleList(Block() for _ in range(BLOCKS))
        self.norm = Norm(HIDDEN)


class TinyLlama(nn.Module):
    """Llama-named: 1 embedding + BLOCKS x 7 Linear matrices; lm_head tied to the embedding."""

    def __init__(self, tied: bool = True, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.model = Inner()
        self.lm_head = nn.Linear(HIDDEN, VOCAB, bias=False)
        if tied:
            self.lm_head.weight = self.model.embed_tokens.weight


def expected_rows(tied: bool = True) -> list[str]:
    """Row names a TinyLlama must give, written out by hand."""
    rows = ["model.embed_tokens.weight"]
    for b in range(BLOCKS):
        rows += [f"model.layers.{b}.self_attn.{p}_proj.weight" for p in "qkvo"]
        rows += [f"model.layers.{b}.mlp.{p}_proj.weight" for p in ("gate", "up", "down")]
    return rows + ([] if tied else ["lm_head.weight"])


def state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter by name (a tied head appears twice, as separate copies)."""
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def config(folder: Path, **kw) -> None:
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", **kw}))


def save_sharded(sd: dict, folder: Path, **cfg) -> Path:
    """HF folder: two safetensors shards + model.safetensors.index.json + config.json."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    names = list(sd)
    half = len(names) // 2
    weight_map = {}
    for i, part in enumerate((names[:half], names[half:])):
        shard = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({k: sd[k] for k in part}, str(folder / shard))
        weight_map.update({k: shard for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    config(folder, **cfg)
    return folder


def save_bin(sd: dict, folder: Path, **cfg) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(sd, folder / "pytorch_model.bin")
    config(folder, **cfg)
    return folder


def save_single(sd: dict, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file(sd, str(path))
    return path


_TO_GGUF = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
            "self_attn.v_proj": "attn_v",
            "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
            "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
            "post_attention_layernorm": "ffn_norm"}
_TOP = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight"}


def gguf_name(hf: str) -> str:
    if hf in _TOP:
        return _TOP[hf]
    parts = hf.split(".")  # model.layers.N.<module path>.weight
    return f"blk.{parts[2]}.{_TO_GGUF['.'.join(parts[3:-1])]}.weight"


def save_gguf(sd: dict, path: Path, qtype: str = "F32", arch: str = "llama",
              names=gguf_name) -> Path:
    """GGUF file: 2-D tensors quantised to `qtype` with gguf.quants.quantize, 1-D kept F32."""
    import gguf
    from gguf import quants

    w = gguf.GGUFWriter(str(path), arch)
    qt = gguf.GGMLQuantizationType[qtype]
    for name, t in sd.items():
        arr = t.detach().float().numpy()
        if arr.ndim == 1 or qt == gguf.GGMLQuantizationType.F32:
            w.add_tensor(names(name), arr)
        else:
            q = quants.quantize(arr, qt)
            w.add_tensor(names(name), q, raw_shape=q.shape, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def gguf_roundtrip(W: torch.Tensor, qtype: str) -> torch.Tensor:
    """What a GGUF reader must return for W stored as `qtype` (quantise, then dequantise)."""
    import gguf
    from gguf import quants

    qt = gguf.GGMLQuantizationType[qtype]
    if qt == gguf.GGMLQuantizationType.F32:
        return W.float()
    arr = quants.dequantize(quants.quantize(W.float().numpy(), qt), qt)
    return torch.from_numpy(np.asarray(arr, dtype=np.float32))


class CountingSource(Source):
    """Wraps a Source and counts reads per tensor name (the filter must read nothing else)."""

    def __init__(self, inner: Source):
        self.inner, self.reads = inner, {}

    def tensors(self):
        return self.inner.tensors()

    def read(self, name):
        self.reads[name] = self.reads.get(name, 0) + 1
        return self.inner.read(name)

    def close(self):
        self.inner.close()
