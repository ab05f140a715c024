"""How a stored tensor becomes one or more 2-D matrices (methods.md notation: m x n = out x in)."""
from __future__ import annotations

import dataclasses
import re
from ..errors import ArgumentError

_GPT2_CONV1D = re.compile(r"(?:^|\.)(?:attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")


def layout_from_name(name: str, ndim: int, *, gpt2: bool = False) -> str:
    """Layout of a tensor known only by name and rank (files): see TensorInfo.layout."""
    if ndim <= 1:
        return "vector"
    if ndim == 2:
        return "conv1d_gpt2" if gpt2 and _GPT2_CONV1D.search(name) else "linear"
    if ndim == 3 and "expert" in name:
        return "moe"
    return "conv"


def is_weight_name(name: str) -> bool:
    """Weights count; biases, norms' scales (1-D anyway) and buffers do not.

    Fused MoE expert parameters often lack "weight" ("mlp.experts.gate_up_proj"), so any
    parameter under "expert" counts too, except expert biases ("gate_up_proj_bias", 2-D).
    """
    last = name.rsplit(".", 1)[-1]
    if "bias" in last:
        return False
    return "weight" in last or "expert" in name


def to_matrix(t, layout: str, expert: int = -1):
    """The 2-D (out, in) matrix of one stored tensor (of one expert for "moe")."""
    if layout == "linear":
        return t
    if layout == "conv1d_gpt2":
        return t.T  # GPT-2 Conv1D stores (in, out)
    if layout == "conv":
        return t.reshape(t.shape[0], -1)  # (out, in, *k) -> (out, in * prod(k))
    if layout == "moe":
        return t[expert]  # (experts, out, in) -> (out, in)
    raise ArgumentError(f"layout {layout!r} makes no matrix")


def matrix_shape(shape: tuple[int, ...], layout: str) -> tuple[int, int] | None:
    """(rows, cols) of each matrix made from a tensor of `shape`, or None when it makes none."""
    if layout == "linear":
        return shape[0], shape[1]
    if layout == "conv1d_gpt2":
        return shape[1], shape[0]
    if layout == "conv":
        k = 1
        for d in shape[1:]:
            k *= d
        return shape[0], k
    if layout == "moe":
        return shape[1], shape[2]
    return None


_TIED_HEAD = re.compile(r"(?:^|\.)(?:lm_head|embed_out)\.weight$"
                        r"|cls\.predictions\.decoder\.weight$")
_WORD_EMBED = re.compile(r"embed_tokens|word_embeddings|(?:^|\.)wte\.|token_embd|shared\.weight$")


def file_infos(raw: list[tuple[str, tuple[int, ...], str]], *, gpt2: bool | None = None,
               tie: bool = False) -> list:
    """TensorInfos of a file's (name, shape, dtype) list. gpt2=None (no config): guess GPT-2
    from its fused attention, c_attn stored (d, 3d) as Conv1D does."""
    from .base import TensorInfo

    if gpt2 is None:
        gpt2 = any(name.endswith("attn.c_attn.weight") and len(shape) == 2
                   and shape[1] == 3 * shape[0] for name, shape, _ in raw)
    infos = [TensorInfo(name, tuple(shape), dtype, layout_from_name(name, len(shape), gpt2=gpt2))
             for name, shape, dtype in raw]
    return mark_tied(infos, tie)


def mark_tied(infos: list, tie: bool) -> list:
    """With tie_word_embeddings, mark the output head as tied to the word embedding of the same
    shape (TensorInfo.tied_to), so it is neither planned nor read. Without an embedding of that
    shape in the file the head stays a matrix of its own."""
    if not tie:
        return infos
    embeds: dict = {}
    for i in infos:
        if _WORD_EMBED.search(i.name) and len(i.shape) == 2:
            embeds.setdefault(i.shape, i.name)
    return [dataclasses.replace(i, tied_to=embeds[i.shape])
            if _TIED_HEAD.search(i.name) and i.shape in embeds else i for i in infos]
