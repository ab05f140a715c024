"""Which tensors count as matrices, and the rows they make. Filter first, read each tensor once."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterator

import torch

from .base import Source, TensorInfo
from .layout import is_weight_name, matrix_shape, to_matrices
from .names import block_index, role_of



@dataclass(frozen=True)
class MatrixMeta:
    name: str
    tensor: str
    expert: int
    block: int
    role: str
    rows: int
    cols: int
    shape: str
    dtype: str
    numel: int


def plan_matrices(source: Source, *, layers: str | None = None) -> list[MatrixMeta]:
    """Rows the source will give, from metadata alone (no weight is read)."""
    return [meta for _, metas in _selected(source, layers) for meta in metas]


def iter_matrices(source: Source, *, layers: str | None = None) -> Iterator[tuple[MatrixMeta, torch.Tensor]]:
    """Yield (meta, 2-D float32 matrix) per row; each selected tensor is read exactly once.

    Tied weights are analysed once: an nn.Module shares one Parameter, a folder's config says
    tie_word_embeddings, and identical embedding/head tensors under two names (seen by a hash of
    their bytes at read time) are yielded under the first name only.
    """
    seen: set[bytes] = set()
    for info, metas in _selected(source, layers):
        t = source.read(info.name)
        if metas[0].role in ("embed", "head"):
            digest = _digest(t)
            if digest in seen:
                continue
            seen.add(digest)
        for meta, (_, W) in zip(metas, to_matrices(t, info.layout)):
            yield meta, W.to(torch.float32)


def _selected(source: Source, layers: str | None):
    pattern = re.compile(layers) if layers else None
    for info in source.tensors():
        metas = _metas(info)
        if not metas:
            continue
        if pattern is not None:
            metas = [m for m in metas if pattern.search(m.name)]
            if not metas:
                continue
        yield info, metas


def _metas(info: TensorInfo) -> list[MatrixMeta]:
    if info.layout == "vector" or not is_weight_name(info.name) or info.tied_to:
        return []
    if info.dtype.startswith(("int", "uint", "bool")):
        return []
    rc = matrix_shape(info.shape, info.layout)
    if rc is None:
        return []
    rows, cols = rc
    experts = range(info.shape[0]) if info.layout == "moe" else [-1]
    return [MatrixMeta(
        name=info.name if e < 0 else f"{info.name}.expert{e}", tensor=info.name, expert=e,
        block=block_index(info.name), role=role_of(info.name), rows=rows, cols=cols,
        shape="x".join(map(str, info.shape)), dtype=info.dtype, numel=rows * cols)
        for e in experts]


def _digest(t: torch.Tensor) -> bytes:
    data = t.detach().contiguous().view(torch.uint8) if t.dtype != torch.bool else t.contiguous()
    h = hashlib.blake2b(digest_size=16)
    h.update(str((tuple(t.shape), t.dtype)).encode())
    h.update(data.numpy().tobytes() if data.device.type == "cpu" else data.cpu().numpy().tobytes())
    return h.digest()
