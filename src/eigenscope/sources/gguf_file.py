"""GGUF files (llama.cpp), memory-mapped; each tensor dequantised on its own when read.

The header is parsed by our own bounds-checked reader (gguf_header.py), so a damaged file fails
with one line, never hangs; a file cut short gives rows for the tensors it wholly holds and the
status "truncated" for the rest, and a tensor of a type we cannot decode gets "unsupported".

Names are mapped to the same model's Hugging Face checkpoint names (gguf_names: llama.cpp's own
name table applied to the checkpoint names of the model the metadata describes; names.gguf_to_hf
when transformers cannot describe it), so rows of a GGUF file match the checkpoint's; a stacked
3-D expert tensor becomes the checkpoint's per-expert 2-D tensors when those are its names.
GGUF lists dimensions ne0 (the contiguous, "in" axis)
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
from .base import Source, TensorInfo, error_line, regular_file
from .gguf_header import read_header
from .layout import layout_from_name
from .gguf_names import gguf_checkpoint_names
from .names import gguf_to_hf

# Types read here (tested against gguf's own quantiser); a tensor of another type gets the row
# status "unsupported" and the rest of the file is analysed.
SUPPORTED = {"F32", "F16", "BF16", "F64", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K",
             "Q6_K", "Q2_K", "Q3_K"}
_PLAIN = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64",
          "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64"}
_NUMPY = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I8": np.int8,
          "I16": np.int16, "I32": np.int32, "I64": np.int64}
GGUF_MAGIC = b"GGUF"
ROPE_PERMUTED = {"llama", "mistral"}  # architectures whose q/k rows llama.cpp's converter permutes


class GGUFSource(Source):
    """`header` is the parsed GGUF header (gguf_header.GGUFHeader: fields, tensors with byte
    ranges); tensor bytes are read from a read-only memory map of the file."""

    def __init__(self, path: Path):
        self.path = regular_file(path)
        self.description = str(self.path)
        try:
            import gguf  # noqa: F401  (its quantisation tables and decoders)
        except ImportError:
            raise SourceError(f"{path}: reading GGUF needs the gguf package: "
                              "pip install 'eigenscope[hf]'") from None
        with open(self.path, "rb") as f:
            if f.read(4) != GGUF_MAGIC:
                raise SourceError(f"{self.path}: not a GGUF file (bad magic)")
        try:
            buf = np.memmap(self.path, dtype=np.uint8, mode="r")   # for the header only
        except (OSError, ValueError) as e:
            raise SourceError(f"{self.path}: cannot map the file ({error_line(e)})") from None
        self.header = read_header(self.path, buf)
        del buf
        self.arch = _architecture(self.header.fields)
        self._heads = _rope_heads(self.header.fields, self.arch)
        experts = _int(self.header.fields.get(f"{self.arch}.expert_count"))
        names = gguf_checkpoint_names(self.header.fields, [t.name for t in self.header.tensors],
                                      self.arch, experts) or {}
        self._by_name, self._infos, self._last = {}, [], (None, None)
        for t in self.header.tensors:
            self._add(t, names.get(t.name))

    def _add(self, t, known) -> None:
        """List entry `t` under its checkpoint name(s); `known`: gguf_checkpoint_names' value."""
        shape = tuple(int(d) for d in reversed(t.dims))  # (ne1, ne0) = (out, in)
        qtype = _PLAIN.get(t.type_name, t.type_name)
        problem = t.problem or _unsupported(t.type_name)
        if isinstance(known, list) and len(shape) == 3 and len(known) == shape[0]:
            for e, (expert, _) in enumerate(known):  # stacked experts: one tensor each
                self._by_name[expert] = (t, e, shape[1:])
                self._infos.append(TensorInfo(expert, shape[1:], qtype, "linear", problem=problem))
            return
        name, stored = known if isinstance(known, tuple) else (gguf_to_hf(t.name, self.arch), shape)
        if math.prod(stored) != math.prod(shape):
            stored = shape
        # read in the checkpoint's shape: a (1, hidden) router is a vector in GGUF
        self._by_name[name] = (t, None, stored)
        self._infos.append(TensorInfo(name, stored, qtype, layout_from_name(name, len(stored)),
                                      problem=problem))

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def raw(self, name: str) -> np.ndarray:
        """The stored bytes of tensor `name` (a checkpoint name), shaped (rows..., bytes per row)."""
        return self._bytes(self._by_name[name][0])

    def _bytes(self, t) -> np.ndarray:
        """The stored bytes of header entry `t`, shaped (rows..., bytes per row). Read from the
        file, not the map: pages of a map stay resident once touched (the whole model, after
        one pass), a read's buffer is freed with the tensor."""
        with open(self.path, "rb") as f:
            f.seek(t.start)
            arr = np.frombuffer(f.read(t.n_bytes), dtype=np.uint8)
        if arr.size != t.n_bytes:
            raise SourceError(f"{self.path}: the file ends inside tensor {t.name}")
        rows = tuple(int(d) for d in reversed(t.dims[1:]))
        return arr.reshape(*rows, -1) if t.n_bytes else arr.reshape(*rows, 0)

    def read(self, name: str) -> torch.Tensor:
        t, expert, shape = self._by_name[name]
        if expert is not None:  # one expert of a stacked tensor: decode it once for all experts
            if self._last[0] is not t:
                self._last = (t, self._decode(t, name))
            return self._last[1][expert]
        return self._decode(t, name).reshape(shape)

    def _decode(self, t, name: str) -> torch.Tensor:
        from gguf.constants import GGMLQuantizationType
        from gguf.quants import dequantize

        problem = t.problem or _unsupported(t.type_name)
        if problem:
            raise SourceError(f"{self.path}: tensor {name}: {problem[1]}")
        shape = tuple(int(d) for d in reversed(t.dims))
        try:
            raw = self._bytes(t)                     # only this tensor's bytes are decoded
            if t.type_name in _NUMPY:
                arr = raw.view(_NUMPY[t.type_name]).astype(np.float32)
            else:   # BF16 and the block quantisations
                arr = dequantize(raw, GGMLQuantizationType[t.type_name])
            arr = np.ascontiguousarray(arr, dtype=np.float32).reshape(shape)
            if not arr.flags.writeable:  # still a view of the read-only map
                arr = arr.copy()
        except Exception as e:
            raise SourceError(f"{self.path}: cannot dequantise {name} ({t.type_name}): "
                              f"{error_line(e)}") from None
        return _unpermute(torch.from_numpy(arr), name, self._heads)

    def close(self) -> None:
        self._by_name.clear()
        self._last = (None, None)


def _unsupported(type_name: str):
    if type_name in SUPPORTED or type_name in _NUMPY:
        return None
    return ("unsupported", f"GGUF type {type_name} is not decoded by eigenscope "
                           f"(supported: {', '.join(sorted(SUPPORTED))}); not analysed")


def _unpermute(w: torch.Tensor, name: str, heads: dict) -> torch.Tensor:
    """Undo llama.cpp's rotary row order. Per head, HF rows [first half; second half] were stored
    interleaved (row 2j = first-half j, row 2j+1 = second-half j): (h, d/2, 2, in) -> (h, 2, d/2, in)."""
    n = heads.get(name.rsplit(".", 2)[-2]) if heads else None  # "q_proj" / "k_proj"
    if n is None or w.ndim != 2 or w.shape[0] % (2 * n):
        return w
    return w.reshape(n, w.shape[0] // n // 2, 2, w.shape[1]).transpose(1, 2).reshape(w.shape)


def _rope_heads(fields: dict, arch: str) -> dict:
    """{"q_proj": heads, "k_proj": kv heads} for permuted architectures, {} when unknown (an
    array-valued head count, per layer, leaves the rows as stored)."""
    if arch not in ROPE_PERMUTED:
        return {}
    q = _int(fields.get(f"{arch}.attention.head_count"))
    kv = _int(fields.get(f"{arch}.attention.head_count_kv")) or q
    return {"q_proj": q, "k_proj": kv} if q else {}


def _int(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def _architecture(fields: dict) -> str:
    arch = fields.get("general.architecture")
    return arch if isinstance(arch, str) and arch else "llama"
