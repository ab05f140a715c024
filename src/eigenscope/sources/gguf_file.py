"""GGUF files (llama.cpp), memory-mapped; each tensor dequantised on its own when read.

Names are mapped to Hugging Face names (names.gguf_to_hf). llama.cpp permutes the rows of the
q and k projections for its rotary layout; a row permutation leaves singular values unchanged,
so the spectra of a GGUF file match those of the Hugging Face checkpoint without undoing it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import SourceError
from .base import Source, TensorInfo
from .layout import layout_from_name
from .names import gguf_to_hf

SUPPORTED = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K",
             "Q2_K", "Q3_K", "Q8_K"}
GGUF_MAGIC = b"GGUF"


class GGUFSource(Source):
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
            self._reader = GGUFReader(str(self.path), "r")
        except Exception as e:
            raise SourceError(f"{self.path}: truncated or corrupt GGUF file "
                              f"({type(e).__name__}: {str(e)[:80]})") from None
        self._by_name, self._infos = {}, []
        for t in self._reader.tensors:
            name = gguf_to_hf(t.name)
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))  # GGUF lists ne0 (in) first
            self._by_name[name] = t
            self._infos.append(TensorInfo(name, shape, t.tensor_type.name,
                                          layout_from_name(name, len(shape))))

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def read(self, name: str) -> torch.Tensor:
        from gguf.quants import dequantize

        t = self._by_name[name]
        qtype = t.tensor_type.name
        if qtype not in SUPPORTED:
            raise SourceError(f"{self.path}: tensor {name} has unsupported type {qtype}")
        try:
            arr = dequantize(t.data, t.tensor_type)
        except Exception as e:
            raise SourceError(f"{self.path}: cannot dequantise {name} ({qtype}): {e}") from None
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32).reshape(shape))

    def close(self) -> None:
        self._by_name.clear()
