"""A Hugging Face model folder: sharded or single safetensors, or pytorch_model.bin (weights only)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import SourceError
from .base import Source, TensorInfo
from .layout import layout_from_name
from .safetensors_file import SafetensorsSource

_HEADS = ("lm_head.weight",)


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SourceError(f"{path}: unreadable config ({e})") from None


def open_folder(folder: Path) -> Source:
    config = read_config(folder)
    gpt2 = config.get("model_type") == "gpt2"
    skip = set(_HEADS) if config.get("tie_word_embeddings") else set()
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, json.JSONDecodeError, KeyError) as e:
            raise SourceError(f"{index}: unreadable shard index ({e})") from None
        return SafetensorsSource([folder / s for s in shards], gpt2=gpt2, skip=skip)
    single = sorted(folder.glob("*.safetensors"))
    if single:
        return SafetensorsSource(single, gpt2=gpt2, skip=skip)
    bins = sorted(folder.glob("pytorch_model*.bin"))
    if bins:
        return TorchBinSource(bins, gpt2=gpt2, skip=skip)
    ggufs = sorted(folder.glob("*.gguf"))
    if len(ggufs) == 1:
        from .gguf_file import GGUFSource
        return GGUFSource(ggufs[0])
    raise SourceError(f"{folder}: no model weights found (*.safetensors, pytorch_model*.bin, *.gguf)")


class TorchBinSource(Source):
    """pytorch_model.bin shards, loaded memory-mapped with weights_only=True (never unpickled)."""

    def __init__(self, files: list[Path], *, gpt2: bool = False, skip: set[str] = frozenset()):
        self.description = str(files[0].parent)
        self._state, self._infos = {}, []
        for path in files:
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as e:
                raise SourceError(f"{path}: cannot load as a weights-only checkpoint "
                                  f"({type(e).__name__})") from None
            for name, t in sd.items():
                if name in skip or not isinstance(t, torch.Tensor):
                    continue
                self._state[name] = t
                self._infos.append(TensorInfo(name, tuple(t.shape), str(t.dtype).replace("torch.", ""),
                                              layout_from_name(name, t.ndim, gpt2=gpt2)))

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def read(self, name: str) -> torch.Tensor:
        return self._state[name]

    def close(self) -> None:
        self._state.clear()
