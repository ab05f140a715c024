"""Which tensors count as matrices, and the rows they make. Filter first, read each tensor once.

Rules (methods.md: a matrix is m x n = out x in):
- 2-D weights of Linear, Embedding and lm_head layers, as stored;
- GPT-2 Conv1D weights (stored in x out) transposed;
- Conv1d/Conv2d weights (out, in, *k) reshaped to (out, in * prod(k));
- 3-D mixture-of-experts tensors (experts, out, in): one row per expert, named "<tensor>.expert{e}"
  (per-expert 2-D tensors, "experts.5.w1.weight", keep their name and get expert 5; a module's
  fused experts are read under those per-expert names when its checkpoint stores them so);
- 1-D tensors (norms, biases), biases of any rank, buffers and integer tensors are skipped;
- tied weights once (see `iter_matrices`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from typing import Iterator

import torch

from ..errors import EigenscopeError, SourceError
from .base import Source, TensorInfo, error_line
from .layout import is_weight_name, matrix_shape, to_matrix
from .names import block_index, expert_index, role_of


@dataclass(frozen=True)
class MatrixMeta:
    """Identity of one analysed matrix: the ID_COLUMNS of analysis/schema.py but status/warning."""

    name: str     # row name: tensor name, plus ".expert{e}" for MoE experts
    tensor: str   # stored tensor name
    expert: int   # expert index, -1 outside mixture-of-experts layers
    block: int    # block index parsed from the name, -1 outside the blocks
    role: str     # q k v o gate up down embed head other
    rows: int     # m (out) of the analysed matrix
    cols: int     # n (in) of the analysed matrix
    shape: str    # stored shape as text, "576x1536"
    dtype: str    # stored dtype before upcasting ("bfloat16", "Q4_1", ...)
    numel: int    # rows * cols
    problem: tuple[str, str] | None = None  # (status, warning): the source cannot read it


def plan_matrices(source: Source, *, layers: str | None = None) -> list[MatrixMeta]:
    """Rows the source will give, from metadata alone (no weight is read).

    Ties known from metadata are already excluded; identical embedding/head tensors found only
    by reading (see `iter_matrices`) are the one case where the plan lists a row more.
    """
    return [meta for _, metas in _selected(source, layers) for meta in metas]


def iter_matrices(source: Source, *,
                  layers: str | None = None) -> Iterator[tuple[MatrixMeta, torch.Tensor]]:
    """Yield (meta, 2-D float32 matrix (rows, cols)) per row; each selected tensor is read once.
    A tensor the source cannot read (`meta.problem`) is not read: it gives one (meta, empty
    (0, 0) tensor) for its row; callers that need the matrix skip it.

    `layers` is a regular expression searched in the row name and the tensor name; it is applied
    to the metadata, so tensors it leaves out are never read. A float32 matrix of an nn.Module
    is the parameter itself (no copy): read it, do not modify it.

    Tied weights are analysed once: an nn.Module's shared Parameter (or storage) is listed once
    by the source; a folder whose config says tie_word_embeddings marks lm_head as tied to the
    embedding (TensorInfo.tied_to), and a GGUF file without output.weight simply has no head.
    Files that store the same embedding/head matrix under two names without saying so are caught
    at read time (see `read_matrices`).
    """
    seen: set[bytes] = set()
    for _, metas in _selected(source, layers):
        yield from read_matrices(source, metas, seen)


def read_matrices(source: Source, metas: list[MatrixMeta],
                  seen: set[bytes]) -> Iterator[tuple[MatrixMeta, torch.Tensor]]:
    """(meta, float32 matrix) of the given rows, reading each of their tensors once.

    A tensor that has a problem (TensorInfo.problem, or a kind without a real spectrum) is not
    analysed: its first row comes with `problem` set and an empty (0, 0) matrix.
    Each embed/head tensor's bytes are hashed (blake2b, no copy) into `seen`, and a tensor whose
    hash was already seen is skipped: files that store one matrix under two names without saying
    so give one row. Only embed/head tensors are hashed: that is where ties happen, and equal
    blocks elsewhere (e.g. two zero-initialised layers) are distinct matrices. A row of a 3-D
    expert tensor is copied out, so the whole tensor is not kept alive by one expert's matrix.
    """
    by_tensor: dict[str, list[MatrixMeta]] = {}
    for meta in metas:
        by_tensor.setdefault(meta.tensor, []).append(meta)
    infos = {i.name: i for i in source.tensors() if i.name in by_tensor}
    for name, rows in by_tensor.items():
        info = infos[name]
        t, problem = (None, info.problem) if info.problem else _read(source, info)
        if problem:  # not analysed: the row carries the status (analysis.metrics.matrix_status)
            yield dataclasses.replace(rows[0], problem=problem), torch.empty(0, 0)
            continue
        if rows[0].role in ("embed", "head"):
            digest = _digest(t)
            if digest in seen:
                continue
            seen.add(digest)
        for meta in rows:
            W = to_matrix(t, infos[name].layout, meta.expert)
            W = W.to(torch.float32)
            yield meta, (W.clone() if infos[name].layout == "moe" and W.dtype == t.dtype else W)
        del t


def _read(source: Source, info: TensorInfo):
    """(dense real tensor, None), or (None, (status, warning)) for a tensor of a kind that has
    no real spectrum here (complex); a tensor that cannot be read at all is a SourceError."""
    try:
        t = source.read(info.name)
        if t.layout != torch.strided:          # sparse storage: the matrix is the dense one
            t = t.to_dense()
        if t.is_quantized:
            t = t.dequantize()
    except EigenscopeError:
        raise
    except Exception as e:  # whatever the file holds, the error is the file's
        raise SourceError(f"{source.description}: cannot read tensor {info.name} "
                          f"({error_line(e)})") from None
    if t.is_complex() or not (t.is_floating_point() or t.dtype == torch.bool):
        return None, ("unsupported", f"a {str(t.dtype).replace('torch.', '')} tensor has no "
                                     "real spectrum here; not analysed")
    return t, None


def _selected(source: Source, layers: str | None):
    """(TensorInfo, its selected rows) for every tensor giving at least one selected row."""
    try:
        pattern = re.compile(layers) if layers else None
    except re.error as e:
        raise EigenscopeError(f"bad layers regular expression {layers!r}: {e}") from None
    selected = []
    for info in source.tensors():
        metas = _metas(info)
        if pattern is not None:
            metas = [m for m in metas if pattern.search(m.name) or pattern.search(m.tensor)]
        if metas:
            selected.append((info, metas))
    # One order whatever the format (files list tensors alphabetically, modules by definition):
    # the key depends on the name alone.
    keys = [_order_key(metas[0]) for _, metas in selected]
    return [sel for _, sel in sorted(zip(keys, selected), key=lambda ks: ks[0])]


_ROLE_RANK = {r: i for i, r in enumerate(("q", "k", "v", "o", "gate", "up", "down", "other"))}
_STACK = re.compile(r"^(.*?)(?:layers|layer|h|blocks|blk|block)\.\d+\.")


def _order_key(meta: MatrixMeta):
    """Embeddings first, then the blocks (each stack in numeric block order, roles q k v o gate
    up down other; stacks by name, a decoder's after the rest, so an encoder comes first), then
    everything else (head, pooler, ...)."""
    natural = tuple(int(p) if i % 2 else p for i, p in enumerate(re.split(r"(\d+)", meta.name)))
    if meta.block < 0:
        return (0 if meta.role == "embed" else 2, (False, ""), 0, 0, natural)
    m = _STACK.match(meta.tensor)
    stack = m.group(1) if m else ""
    return (1, ("decoder" in stack, stack), meta.block, _ROLE_RANK.get(meta.role, len(_ROLE_RANK)),
            natural)


def _metas(info: TensorInfo) -> list[MatrixMeta]:
    if info.layout == "vector" or info.tied_to or not is_weight_name(info.name):
        return []
    if info.dtype.startswith(("int", "uint", "bool")):  # ids, masks, int8-packed weights
        return []
    rc = matrix_shape(info.shape, info.layout)
    if rc is None:
        return []
    rows, cols = rc
    moe = info.layout == "moe" and not info.problem   # an unreadable tensor is one row
    if moe and 0 in info.shape:                          # no expert holds a matrix
        return []
    experts = range(info.shape[0]) if moe else [expert_index(info.name)]
    block, role = block_index(info.name), role_of(info.name)
    shape = "x".join(map(str, info.shape))
    return [MatrixMeta(name=f"{info.name}.expert{e}" if moe else info.name, tensor=info.name,
                       expert=e, block=block, role=role, rows=rows, cols=cols, shape=shape,
                       dtype=info.dtype, numel=rows * cols, problem=info.problem)
            for e in experts]


def _digest(t: torch.Tensor) -> bytes:
    """Hash of a tensor's shape, dtype and bytes, fed through the buffer protocol (no copy)."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    h = hashlib.blake2b(digest_size=16)
    h.update(str((tuple(t.shape), t.dtype)).encode())
    flat = t.contiguous().reshape(-1)
    h.update(flat.view(torch.uint8).numpy() if flat.numel() else b"")
    return h.digest()
