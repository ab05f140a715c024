"""How a stored tensor becomes one or more 2-D matrices (methods.md notation: m x n = out x in)."""
from __future__ import annotations

import re

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
    """Weights count; biases, norms' scales (1-D anyway) and buffers do not."""
    last = name.rsplit(".", 1)[-1]
    return "weight" in last or "expert" in name


def to_matrices(t, layout: str):
    """Yield (expert index, 2-D tensor (out, in)) for one stored tensor."""
    if layout == "linear":
        yield -1, t
    elif layout == "conv1d_gpt2":
        yield -1, t.T  # GPT-2 Conv1D stores (in, out)
    elif layout == "conv":
        yield -1, t.reshape(t.shape[0], -1)  # (out, in, *k) -> (out, in * prod(k))
    elif layout == "moe":
        for e in range(t.shape[0]):
            yield e, t[e]  # (experts, out, in) -> (out, in) per expert


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
