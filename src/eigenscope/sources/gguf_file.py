"""GGUF files (llama.cpp), memory-mapped; each tensor dequantised on its own when read.

Names are mapped to the same model's Hugging Face checkpoint names (gguf_names: llama.cpp's own
name table applied to the checkpoint names of the model the metadata describes; names.gguf_to_hf
when transformers cannot describe it), so rows of a GGUF file match the checkpoint's; a stacked
3-D expert tensor becomes the checkpoint's per-expert 2-D tensors when those are its names. GGUF lists dimensions ne0 (the contiguous, "in" axis)
first; tensors are returned in PyTorch (out, in) order. llama.cpp's converter also permutes the
rows of the q and k projections of Llama-family models for its rotary layout; that is undone
here (as transformers does when it loads a GGUF), so the matrices themselves, not only their
spectra, equal the Hugging Face checkpoint's and `compare` can match their subspaces.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import SourceError
from .base import Source, TensorInfo, error_line
from .layout import layout_from_name
from .gguf_names import gguf_checkpoint_names
from .names import gguf_to_hf

SUPPORTED = {"F32", "F16", "BF16", "F64", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K",
             "Q6_K", "Q2_K", "Q3_K", "Q8_K"}
_PLAIN = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64",
          "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64"}
GGUF_MAGIC = b"GGUF"
ROPE_PERMUTED = {"llama", "mistral"}  # architectures whose q/k rows llama.cpp's converter permutes


class GGUFSource(Source):
    """`reader` is the memory-mapped gguf.GGUFReader (metadata fields, raw tensor blocks)."""

    def __init__(self, path: Path):
        try:
            from gguf import GGUFReader
        except ImportError:
            raise SourceError(f"{path}: reading GGUF needs the gguf package: "
                              "pip install 'eigenscope[hf]'") from None
        self.path = Path(path)
        self.description = str(self.path)
        with open(self.path, "rb") as f:
            if f.read(4) != GGUF_MAGIC:
                raise SourceError(f"{self.path}: not a GGUF file (bad magic)")
        try:
            self.reader = GGUFReader(str(self.path), "r")
            self.arch = _architecture(self.reader)
            self._heads = _rope_heads(self.reader, self.arch)
            tensors = list(self.reader.tensors)
        except Exception as e:  # gguf raises ValueError/IndexError/... on damaged files
            raise SourceError(f"{self.path}: truncated or corrupt GGUF file "
                              f"({error_line(e)})") from None
        experts = _int_field(self.reader, f"{self.arch}.expert_count")
        names = gguf_checkpoint_names(self.reader, self.arch, experts) or {}
        self._by_name, self._infos, self._last = {}, [], (None, None)
        for t in tensors:
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))  # (ne1, ne0) = (out, in)
            qtype = _PLAIN.get(t.tensor_type.name, t.tensor_type.name)
            known = names.get(t.name)
            if isinstance(known, list) and len(shape) == 3 and len(known) == shape[0]:
                for e, (expert, _) in enumerate(known):  # stacked experts: one tensor each
                    self._by_name[expert] = (t, e, shape[1:])
                    self._infos.append(TensorInfo(expert, shape[1:], qtype, "linear"))
                continue
            name, stored = known if isinstance(known, tuple) else (gguf_to_hf(t.name, self.arch), shape)
            if math.prod(stored) != math.prod(shape):
                stored = shape
            # read in the checkpoint's shape: a (1, hidden) router is a vector in GGUF
            self._by_name[name] = (t, None, stored)
            self._infos.append(TensorInfo(name, stored, qtype, layout_from_name(name, len(stored))))

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def read(self, name: str) -> torch.Tensor:
        t, expert, shape = self._by_name[name]
        if expert is not None:  # one expert of a stacked tensor: decode it once for all experts
            if self._last[0] is not t:
                self._last = (t, self._decode(t, name))
            return self._last[1][expert]
        return self._decode(t, name).reshape(shape)

    def _decode(self, t, name: str) -> torch.Tensor:
        from gguf.quants import dequantize

        qtype = t.tensor_type.name
        if qtype not in SUPPORTED:
            raise SourceError(f"{self.path}: tensor {name} has unsupported type {qtype}")
        try:
            # t.data: memory-mapped (rows, bytes per row) blocks; only this tensor is decoded.
            arr = dequantize(t.data, t.tensor_type)
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            arr = np.ascontiguousarray(arr, dtype=np.float32).reshape(shape)
            if not arr.flags.writeable:  # F32 comes back as the read-only map itself
                arr = arr.copy()
        except Exception as e:
            raise SourceError(f"{self.path}: cannot dequantise {name} ({qtype}): "
                              f"{error_line(e)}") from None
        return _unpermute(torch.from_numpy(arr), name, self._heads)

    def close(self) -> None:
        self._by_name.clear()
        self._last = (None, None)


def _unpermute(w: torch.Tensor, name: str, heads: dict) -> torch.Tensor:
    """Undo llama.cpp's rotary row order. Per head, HF rows [first half; second half] were stored
    interleaved (row 2j = first-half j, row 2j+1 = second-half j): (h, d/2, 2, in) -> (h, 2, d/2, in)."""
    n = heads.get(name.rsplit(".", 2)[-2]) if heads else None  # "q_proj" / "k_proj"
    if n is None or w.ndim != 2 or w.shape[0] % (2 * n):
        return w
    return w.reshape(n, w.shape[0] // n // 2, 2, w.shape[1]).transpose(1, 2).reshape(w.shape)


def _rope_heads(reader, arch: str) -> dict:
    """{"q_proj": heads, "k_proj": kv heads} for permuted architectures, {} when unknown."""
    if arch not in ROPE_PERMUTED:
        return {}
    q = _int_field(reader, f"{arch}.attention.head_count")
    kv = _int_field(reader, f"{arch}.attention.head_count_kv") or q
    return {"q_proj": q, "k_proj": kv} if q else {}


def _int_field(reader, key: str) -> int | None:
    field = reader.fields.get(key)
    if field is None:
        return None
    try:
        return int(field.parts[field.data[0]][0])
    except Exception:  # an array-valued field (per-layer head counts): leave the rows as stored
        return None


def _architecture(reader) -> str:
    field = reader.fields.get("general.architecture")
    if field is None:
        return "llama"
    try:
        return str(field.contents())
    except Exception:  # older gguf: raw parts
        return bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
