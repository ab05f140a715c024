"""A Hugging Face model folder: sharded or single safetensors, or pytorch_model.bin (weights
only, memory-mapped), with config.json for GPT-2 layout and tied embeddings."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import SourceError
from .base import Source, TensorInfo, error_line
from .layout import file_infos
from .safetensors_file import SafetensorsSource

# Keys under which some checkpoints nest their state dict.
_NESTED = ("state_dict", "model", "module")


def read_config(folder: Path) -> dict:
    """config.json of a folder, {} when absent."""
    path = folder / "config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SourceError(f"{path}: unreadable config ({type(e).__name__})") from None
    return config if isinstance(config, dict) else {}


def config_flags(folder: Path) -> dict:
    """Options the file sources take from a folder's config: GPT-2 Conv1D naming, tied head.

    Without a config, GPT-2 is guessed from the tensors (gpt2=None) and nothing is assumed tied
    (transformers' default is True, but a bare file may be anything); identical embed/head
    tensors are still caught at read time.
    """
    config = read_config(folder)
    if not config:
        return {"gpt2": None, "tie": False}
    gpt2 = config.get("model_type") == "gpt2"
    return {"gpt2": gpt2, "tie": bool(config.get("tie_word_embeddings", gpt2))}


def open_folder(folder: Path) -> Source:
    """A Source for a Hugging Face folder: its shard index, safetensors, torch .bin files or one GGUF."""
    flags = config_flags(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
                AttributeError) as e:
            raise SourceError(f"{index}: unreadable shard index ({type(e).__name__})") from None
        return SafetensorsSource([folder / s for s in shards], **flags)
    single = sorted(folder.glob("*.safetensors"))
    if single:
        return SafetensorsSource(single, **flags)
    bins = sorted(folder.glob("pytorch_model*.bin"))
    if bins:
        return TorchBinSource(bins, **flags)
    ggufs = sorted(folder.glob("*.gguf"))
    if len(ggufs) == 1:
        from .gguf_file import GGUFSource
        return GGUFSource(ggufs[0])
    raise SourceError(f"{folder}: no model weights found (*.safetensors, pytorch_model*.bin, "
                      "one *.gguf)")


class TorchBinSource(Source):
    """pytorch_model.bin shards, loaded memory-mapped with weights_only=True (never unpickled)."""

    def __init__(self, files: list[Path], *, gpt2: bool | None = None, tie: bool = False):
        self.description = str(files[0].parent if len(files) > 1 else files[0])
        self._state, raw = {}, []
        for path in files:
            for name, t in _load(path).items():
                if isinstance(t, torch.Tensor):
                    self._state[name] = t
                    raw.append((name, tuple(t.shape), str(t.dtype).replace("torch.", "")))
        self._infos = file_infos(raw, gpt2=gpt2, tie=tie)

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def read(self, name: str) -> torch.Tensor:
        return self._state[name]

    def close(self) -> None:
        self._state.clear()


def _load(path: Path) -> dict:
    """The state dict of a weights-only checkpoint, memory-mapped (tensors are read on access)."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise SourceError(f"{path}: cannot load as a weights-only torch checkpoint "
                          f"({error_line(e)})") from None
    for key in _NESTED:
        if isinstance(sd, dict) and len(sd) == 1 and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise SourceError(f"{path}: not a state dict ({type(sd).__name__})")
    return sd
