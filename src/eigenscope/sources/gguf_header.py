"""A bounds-checked reader of GGUF headers (llama.cpp's format, versions 2 and 3).

Every count and length is checked against the bytes that remain before anything is read or
looped over, so a crafted or damaged header fails with one line instead of hanging or
allocating what the file does not hold. Tensor data is not read here: each tensor gets its byte
range, and a tensor the file does not wholly hold (an interrupted download) or whose type
cannot be decoded gets a `problem` (a row status and its warning) instead of failing the file.

Layout: "GGUF", version u32, tensor count u64, key-value count u64; key-value pairs (key string,
type u32, value); tensor infos (name string, n_dims u32, dims u64 x n_dims (ne0 first), type u32,
offset u64 from the data start); the data start is the end of the infos rounded up to
`general.alignment` (default 32). Strings are a u64 length and UTF-8 bytes.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from ..errors import SourceError

MAX_DIMS = 4                 # GGML_MAX_DIMS
MAX_NAME = 65_536            # bytes of a key or tensor name
KEPT_STRING = 4096           # string values longer than this are skipped, not kept
MAX_ARRAY_NESTING = 4
# value type id -> struct code (scalars); 8 = string, 9 = array
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
STRING, ARRAY = 8, 9


class _Short(Exception):
    """The header asks for bytes past the end of the file."""


@dataclass
class TensorEntry:
    """One tensor of the file: name, dims (ne0 first), type name, absolute byte range, and a
    (status, warning) problem when it cannot be read."""
    name: str
    dims: tuple
    type_name: str
    type_id: int
    start: int
    n_bytes: int | None
    problem: tuple | None = None


@dataclass
class GGUFHeader:
    """Metadata values (scalars and short strings; arrays are skipped), tensors, data start."""
    version: int
    fields: dict = field(default_factory=dict)
    tensors: list = field(default_factory=list)
    data_offset: int = 0
    file_size: int = 0

    @property
    def missing_bytes(self) -> int:
        """Bytes the file lacks to hold every tensor (0 when complete)."""
        ends = [t.start + t.n_bytes for t in self.tensors if t.n_bytes is not None]
        return max(0, max(ends, default=0) - self.file_size)


class _Cursor:
    def __init__(self, buf, order: str):
        self.buf, self.pos, self.order, self.size = buf, 0, order, len(buf)

    def take(self, code: str):
        fmt = self.order + code
        n = struct.calcsize(fmt)
        if self.pos + n > self.size:
            raise _Short
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return v

    def skip(self, n: int):
        if n < 0 or self.pos + n > self.size:
            raise _Short
        self.pos += n

    def string(self, keep: int = KEPT_STRING):
        """A string value, or None (skipped) when longer than `keep` bytes."""
        n = self.take("Q")
        start = self.pos
        self.skip(n)
        return None if n > keep else bytes(self.buf[start:start + n]).decode("utf-8", "replace")

    def remaining(self) -> int:
        return self.size - self.pos


def read_header(path, buf) -> GGUFHeader:
    """Parse the header of GGUF file `path` held in `buf` (bytes-like, e.g. a np.memmap)."""
    if len(buf) < 24 or bytes(buf[:4]) != b"GGUF":
        raise SourceError(f"{path}: not a GGUF file (bad magic or too short)")
    (version,) = struct.unpack_from("<I", buf, 4)
    order = "<"
    if version & 0xFFFF == 0:       # written on a machine of the other byte order
        order, version = ">", struct.unpack_from(">I", buf, 4)[0]
    if version not in (2, 3):
        raise SourceError(f"{path}: GGUF version {version} is not supported (2 and 3 are)")
    cur = _Cursor(buf, order)
    cur.skip(8)
    try:
        header = GGUFHeader(version, file_size=len(buf))
        n_tensors, n_kv = cur.take("Q"), cur.take("Q")
        _bounded(path, n_kv, cur.remaining() // 13, "key-value pairs")
        for _ in range(n_kv):
            key = _name(path, cur)
            value = _value(path, cur, cur.take("I"), 0)
            header.fields.setdefault(key, value)
        _bounded(path, n_tensors, cur.remaining() // 24, "tensors")
        infos = [_tensor_info(path, cur) for _ in range(n_tensors)]
    except _Short:
        raise SourceError(f"{path}: truncated or corrupt GGUF header (it ends before the "
                          "metadata and tensor list do)") from None
    align = header.fields.get("general.alignment", 32)
    if not isinstance(align, int) or align <= 0 or align & (align - 1) or align > 2**16:
        raise SourceError(f"{path}: corrupt GGUF header (alignment {align!r})")
    header.data_offset = -(-cur.pos // align) * align
    header.tensors = _entries(path, infos, header)
    _mark_truncated(header)
    return header


def _bounded(path, count: int, most: int, what: str) -> None:
    if count > most:
        raise SourceError(f"{path}: corrupt GGUF header ({count:,} {what} cannot fit in the file)")


def _name(path, cur: _Cursor) -> str:
    name = cur.string(MAX_NAME)
    if name is None:
        raise SourceError(f"{path}: corrupt GGUF header (a name longer than {MAX_NAME:,} bytes)")
    return name


def _value(path, cur: _Cursor, vtype: int, nesting: int):
    """A scalar or a short string; arrays are skipped (their length checked) and give None."""
    if vtype in SCALARS:
        v = cur.take(SCALARS[vtype])
        return v if not isinstance(v, float) else float(v)
    if vtype == STRING:
        return cur.string()
    if vtype != ARRAY or nesting >= MAX_ARRAY_NESTING:
        raise SourceError(f"{path}: corrupt GGUF header (value type {vtype})")
    itype, count = cur.take("I"), cur.take("Q")
    if itype in SCALARS:
        cur.skip(count * struct.calcsize(SCALARS[itype]))
        return None
    _bounded(path, count, cur.remaining() // (8 if itype == STRING else 12), "array items")
    for _ in range(count):
        if itype == STRING:
            cur.skip(cur.take("Q"))
        else:
            _value(path, cur, itype, nesting + 1)
    return None


def _tensor_info(path, cur: _Cursor) -> tuple:
    name = _name(path, cur)
    n_dims = cur.take("I")
    if n_dims > MAX_DIMS:
        raise SourceError(f"{path}: corrupt GGUF header (tensor {name} has {n_dims} dimensions)")
    dims = tuple(cur.take("Q") for _ in range(n_dims))
    return name, dims, cur.take("I"), cur.take("Q")


def _entries(path, infos, header: GGUFHeader) -> list[TensorEntry]:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    out, seen = [], set()
    for name, dims, type_id, offset in infos:
        if name in seen:
            raise SourceError(f"{path}: corrupt GGUF header (tensor {name} listed twice)")
        seen.add(name)
        try:
            qtype = GGMLQuantizationType(type_id)
        except ValueError:
            out.append(TensorEntry(name, dims, f"type{type_id}", type_id, 0, None, (
                "unsupported", f"GGUF type id {type_id} is unknown; not analysed")))
            continue
        block, size = GGML_QUANT_SIZES[qtype]
        n = int(np.prod(dims, dtype=object)) if dims else 1
        entry = TensorEntry(name, dims, qtype.name, type_id, header.data_offset + offset,
                            n // block * size)
        if dims and dims[0] % block:
            entry.n_bytes, entry.problem = None, ("unsupported", (
                f"rows of {dims[0]} values are not whole {qtype.name} blocks of {block}; "
                "the file is corrupt"))
        out.append(entry)
    return out


def _mark_truncated(header: GGUFHeader) -> None:
    """The problem "truncated" for every tensor the file does not wholly hold."""
    missing = header.missing_bytes
    for t in header.tensors:
        if t.problem is None and t.start + t.n_bytes > header.file_size:
            short = min(t.n_bytes, t.start + t.n_bytes - header.file_size)
            t.problem = ("truncated", f"{short:,} of its {t.n_bytes:,} bytes are missing; the "
                                      f"file is {missing:,} bytes short (interrupted download?)")
