"""What a model spec names, decided in one place: a built-in name, a folder, a file, and of
which format. `open_source` (tensor by tensor) and `load_model` (a whole model) both dispatch on
`detect`, and "is this an eigenscope save?" is answered only here (`save_metadata`). A new file
format is its Source class plus its entries here (SUFFIXES or MAGIC, and `_open_path`).

    >>> from pathlib import Path
    >>> detect_suffix(Path("m.gguf")), detect_suffix(Path("w.safetensors")), detect_suffix(Path("x.txt"))
    ('gguf', 'safetensors', None)
"""
from __future__ import annotations

import os
from pathlib import Path

from .._json import read_json
from ..errors import SourceError
from .base import Source, regular_file
from .builtin import BUILTINS, resolve_builtin

SAVE_KEY = "eigenscope_format"        # metadata key present in every eigenscope save
SAVE_FILE = "model.safetensors"       # a single-file save inside its folder
SAVE_INDEX = "model.safetensors.index.json"
GGUF_MAGIC, ZIP_MAGIC = b"GGUF", b"PK\x03\x04"
SUFFIXES = {".safetensors": "safetensors", ".gguf": "gguf", ".bin": "torch", ".pt": "torch",
            ".pth": "torch"}
MAGIC = {GGUF_MAGIC: "gguf", ZIP_MAGIC: "torch"}


def locate(spec) -> Path:
    """The path a spec names: a built-in name resolves to its installed file; a missing path
    fails with one line (and the built-in names when it looks like a name)."""
    if isinstance(spec, str) and spec in BUILTINS:
        return resolve_builtin(spec)
    if not isinstance(spec, (str, os.PathLike)):
        raise SourceError(f"cannot open a {type(spec).__name__}: give an nn.Module, a path or "
                          f"one of {', '.join(BUILTINS)}")
    path = Path(spec)
    if not path.exists():
        hint = f" (built-in names: {', '.join(BUILTINS)})" if len(path.parts) == 1 else ""
        raise SourceError(f"{path}: no such file or folder{hint}")
    if not path.is_dir():
        regular_file(path)   # a FIFO or a device is never opened: reading would block
    return path


def protected_paths(spec) -> list[Path]:
    """What reading `spec` reads, as paths no output may write over (`_io.guard_output`): a
    folder source whole; a file source and the config.json beside it (read for its flags); for
    an index or config.json, its folder. [] for in-memory models and paths that do not exist."""
    if isinstance(spec, str) and spec in BUILTINS:
        try:
            path = resolve_builtin(spec)
        except SourceError:
            return []
    elif isinstance(spec, (str, os.PathLike)) and str(spec):
        path = Path(spec)
    else:
        return []
    try:
        if not path.exists():
            return []
    except OSError:   # a name too long to be a path: nothing there to protect
        return []
    if path.is_dir() or path.name.endswith(".index.json") or path.name == "config.json":
        return [path if path.is_dir() else path.parent]
    config = path.parent / "config.json"
    return [path] + ([config] if config.is_file() else [])


def detect(path: Path) -> str:
    """"save" (written by eigenscope.save), "hf" (a folder with weights), "safetensors",
    "gguf" or "torch" (a weights-only torch file); a SourceError for anything else."""
    if save_metadata(path) is not None:
        return "save"
    if path.is_dir():
        return "hf"
    if path.name.endswith(".index.json") or path.name == "config.json":
        return "hf"
    kind = detect_suffix(path) or _detect_magic(path)
    if kind is None:
        raise SourceError(f"{path}: unknown model format; give a folder, .safetensors, .gguf "
                          "or a weights-only torch .bin/.pt file")
    return kind


def detect_suffix(path: Path) -> str | None:
    """The format a file's suffix names, or None."""
    return SUFFIXES.get(path.suffix.lower())


def _detect_magic(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(4)
    return MAGIC.get(head)


def save_metadata(path) -> dict | None:
    """The metadata of an eigenscope save at `path` (its folder, its index, or its single
    .safetensors file), or None when `path` is not one. Reads headers only."""
    path = Path(path)
    if path.is_dir():
        index = path / SAVE_INDEX
        if index.is_file():
            return _index_metadata(index)
        path = path / SAVE_FILE
    elif path.name.endswith(".index.json"):
        return _index_metadata(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    meta = _safetensors_metadata(path)
    return meta if SAVE_KEY in meta else None


def _safetensors_metadata(path: Path) -> dict:
    from safetensors import safe_open
    try:
        with safe_open(str(path), "pt") as fh:
            return dict(fh.metadata() or {})
    except BaseException as e:  # not ours to diagnose here: the readers give the one-line error
        if isinstance(e, (KeyboardInterrupt, SystemExit)):   # (a Rust panic is a BaseException)
            raise
        return {}


def _index_metadata(index: Path) -> dict | None:
    try:
        data = read_json(index)
    except SourceError:
        return None
    meta = data.get("metadata") if isinstance(data, dict) else None
    return meta if isinstance(meta, dict) and SAVE_KEY in meta else None


def open_source(spec) -> Source:
    """Open `spec` (a Source, nn.Module, path or built-in name) as a lazily read Source.

    >>> import torch
    >>> [t.name for t in open_source(torch.nn.Linear(3, 2)).tensors()]
    ['weight', 'bias']
    """
    import torch

    if isinstance(spec, Source):
        return spec
    if isinstance(spec, torch.nn.Module):
        from .module import ModuleSource
        return ModuleSource(spec)
    path = locate(spec)
    return _open_path(path, detect(path))


def _open_path(path: Path, kind: str) -> Source:
    if kind in ("hf", "save") and (path.is_dir() or path.name.endswith(".json")):
        from .hf_folder import open_folder
        return open_folder(path if path.is_dir() else path.parent)
    if kind in ("safetensors", "save"):
        from .hf_folder import config_flags
        from .safetensors_file import SafetensorsSource
        return SafetensorsSource([path], **config_flags(path.parent))
    if kind == "gguf":
        from .gguf_file import GGUFSource
        return GGUFSource(path)
    from .hf_folder import TorchBinSource, config_flags
    return TorchBinSource([path], **config_flags(path.parent))
