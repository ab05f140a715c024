"""Checkpoint folders for the many-source tests: Llama-named random matrices, one folder per
step (checkpoint-<step>, two safetensors shards each), and broken files."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from _fixtures_sources import save_sharded

ROLES = {"self_attn.q_proj": (1, 1), "self_attn.k_proj": (1, 2), "self_attn.o_proj": (1, 1),
         "mlp.up_proj": (2, 1), "mlp.down_proj": (1, 2)}     # (out, in) in units of `width`


def state(step: int, *, width: int = 48, blocks: int = 2, vocab: int = 40) -> dict:
    """A checkpoint whose matrices drift with the step: W = W0 + step/100 * rank-2 growth."""
    g = torch.Generator().manual_seed(0)
    sd = {"model.embed_tokens.weight": torch.randn(vocab, width, generator=g),
          "lm_head.weight": torch.randn(vocab, width, generator=g)}
    for b in range(blocks):
        for role, (o, i) in ROLES.items():
            W0 = torch.randn(o * width, i * width, generator=g) / (i * width) ** 0.5
            u, v = torch.randn(o * width, 2, generator=g), torch.randn(2, i * width, generator=g)
            sd[f"model.layers.{b}.{role}.weight"] = W0 + step / 100 * (u @ v) / width
        sd[f"model.layers.{b}.input_layernorm.weight"] = torch.ones(width)
    return sd


def checkpoints(root, steps, **kw) -> list:
    """Folders root/checkpoint-<step> (sharded safetensors + config.json)."""
    return [save_sharded(state(s, **kw), root / f"checkpoint-{s}") for s in steps]


def corrupt(root) -> tuple:
    """(a file that is not safetensors at all, a folder whose shard is cut short)."""
    garbage = root / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + bytes(64))
    cut = save_sharded(state(7), root / "checkpoint-7")
    shard = sorted(cut.glob("*.safetensors"))[-1]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    return garbage, cut


def assert_same_bits(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal tables, floats compared bit for bit (NaN equal to NaN)."""
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    for c in a.columns:
        x, y = a[c].to_numpy(), b[c].to_numpy()
        if x.dtype.kind == "f":
            assert y.dtype == x.dtype, c
            assert np.array_equal(x.view(np.int64), y.view(np.int64)), c
        else:
            assert [str(v) for v in x] == [str(v) for v in y], c
