"""Safetensors files (one, or the shards of a Hugging Face folder), read one tensor at a time."""
from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import torch

from .._json import MAX_BYTES, loads_bounded
from ..errors import SourceError
from .base import Source, TensorInfo, error_line, regular_file
from .layout import file_infos


def check_header(path: Path) -> None:
    """Fail with one line naming the file if its header is truncated or not safetensors JSON.

    safe_open's own errors are Rust panics or long messages; checking first gives a clear line.
    """
    size = regular_file(path).stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SourceError(f"{path}: truncated safetensors file (no header)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > MAX_BYTES:
            raise SourceError(f"{path}: truncated or corrupt safetensors header")
        header = loads_bounded(f.read(n), what=f"{path}: corrupt safetensors header")
    if not isinstance(header, dict):
        raise SourceError(f"{path}: corrupt safetensors header (not a JSON object)")
    try:
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (AttributeError, KeyError, TypeError, IndexError, ValueError, OverflowError):
        raise SourceError(f"{path}: corrupt safetensors header (bad tensor entries)") from None
    if ends and max(ends) > size - 8 - n:
        raise SourceError(f"{path}: truncated safetensors file (data ends early)")


class SafetensorsSource(Source):
    """Safetensors files read one tensor at a time. Each read opens the file, copies the tensor
    out and closes it again: a file kept open stays memory-mapped, and every page a read touched
    would count in the process's resident memory (the whole model, after one pass)."""

    def __init__(self, files: list[Path], *, gpt2: bool | None = None, tie: bool = False):
        if not files:
            raise SourceError("no safetensors file to read")
        self.description = str(files[0].parent if len(files) > 1 else files[0])
        self._where, raw = {}, []
        for path in files:
            check_header(path)
            with _opened(path) as h:
                for name in h.keys():
                    sl = h.get_slice(name)
                    self._where[name] = path
                    raw.append((name, tuple(sl.get_shape()), _dtype_name(sl.get_dtype())))
        self._infos = file_infos(raw, gpt2=gpt2, tie=tie)

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def file_of(self, name: str) -> Path | None:
        """The file holding tensor `name`, None when no file does."""
        return self._where.get(name)

    def read(self, name: str) -> torch.Tensor:
        path = self._where[name]
        with _opened(path) as h:
            try:
                return h.get_tensor(name)
            except BaseException as e:  # a Rust panic is a BaseException
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    raise
                raise SourceError(f"{path}: cannot read tensor {name} ({error_line(e)})") from None


@contextlib.contextmanager
def _opened(path: Path):
    from safetensors import safe_open
    try:
        h = safe_open(str(path), framework="pt")
    except BaseException as e:  # a Rust panic is a BaseException
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise SourceError(f"{path}: cannot open as safetensors ({error_line(e)})") from None
    with h:
        yield h


_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
           "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
           "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def _dtype_name(code: str) -> str:
    return _DTYPES.get(code, code.lower())
