"""What every model source offers: a list of tensors (metadata only) and reading one tensor."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import SourceError


@dataclass(frozen=True)
class TensorInfo:
    """Metadata of one stored tensor, known before any weights are read.

    name   -- Hugging Face style name ("model.layers.3.self_attn.q_proj.weight"); GGUF names
              are mapped to these so that rows of the same model match across formats.
    shape  -- shape as it will be returned by `Source.read` (already in out x in layout for GGUF).
    dtype  -- stored type as a string: "float32", "bfloat16", "Q4_1", ...
    layout -- how a matrix is made of it: "linear" (out, in), "conv1d_gpt2" (in, out: transpose),
              "conv" (out, in, *k: reshape to (out, in*k)), "moe" (experts, out, in), "vector" (1-D).
    tied_to -- name of the tensor this one shares storage with, when known from metadata.
    problem -- (status, warning) when the source knows it cannot read the tensor (a file cut
               short, a type it cannot decode): the tensor gets a row with that status and is
               never read. A status of analysis/schema.STATUSES.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    layout: str = "linear"
    tied_to: str | None = None
    problem: tuple[str, str] | None = None


def error_line(e: BaseException) -> str:
    """An underlying library's exception as a short single line (for SourceError messages)."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:100] if text else ''}"


def regular_file(path) -> Path:
    """`path` if it is a regular file (symlinks followed); else a SourceError naming it. A FIFO,
    socket or device is never opened: reading one would block or never end."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise SourceError(f"{path}: {'no such file' if not path.exists() else e.strerror}") from None
    if not stat.S_ISREG(mode):
        raise SourceError(f"{path}: not a regular file")
    return path


class Source:
    """Base class of model sources. Subclasses read lazily: `tensors()` reads no weights."""

    description: str = "model"

    def tensors(self) -> list[TensorInfo]:
        """Metadata of every stored tensor; reads no weights."""
        raise NotImplementedError

    def read(self, name: str) -> torch.Tensor:
        """Return the tensor `name` (any float dtype; callers upcast)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release files and handles (the source is not used afterwards)."""
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
