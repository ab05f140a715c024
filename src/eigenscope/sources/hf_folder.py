"""A Hugging Face model folder: sharded or single safetensors, or pytorch_model.bin (weights
only; memory-mapped when it is a zip checkpoint), with config.json for GPT-2 layout and tied
embeddings. A shard index is checked before any shard is opened: every path it names must lie
inside the folder (no absolute path, no `..`) and be an existing regular file."""
from __future__ import annotations

import pickle
from pathlib import Path, PurePosixPath

import torch

from .._json import read_json
from ..errors import SourceError
from .base import Source, TensorInfo, error_line, regular_file
from .layout import file_infos
from .safetensors_file import SafetensorsSource

ZIP_MAGIC = b"PK\x03\x04"
# Keys under which some checkpoints nest their state dict.
_NESTED = ("state_dict", "model", "module")


def read_config(folder: Path) -> dict:
    """config.json of a folder, {} when absent (size and nesting bounded, see _json)."""
    path = folder / "config.json"
    if not path.is_file():
        return {}
    config = read_json(path, max_bytes=CONFIG_MAX_BYTES)
    return config if isinstance(config, dict) else {}


CONFIG_MAX_BYTES = 16 * 2**20      # configs are kilobytes; a large id2label stays far below


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
        weight_map = shard_map(index)
        src = SafetensorsSource(sorted({folder / s for s in weight_map.values()}), **flags)
        check_index(src, weight_map, folder)
        return src
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


def shard_map(index: Path) -> dict[str, str]:
    """{tensor: shard file} of a shard index, every shard an existing regular file inside the
    index's folder (checked before any shard is opened)."""
    data = read_json(index)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise SourceError(f"{index}: not a shard index (no weight_map of tensor -> file)")
    if not weight_map:
        raise SourceError(f"{index}: the shard index lists no tensors")
    for shard in sorted(set(weight_map.values())):
        rel = PurePosixPath(shard.replace("\\", "/"))
        if not shard or rel.is_absolute() or ".." in rel.parts or ":" in shard:
            raise SourceError(f"{index}: shard path {shard!r} lies outside the folder; refused")
        path = index.parent / rel
        if not path.exists():
            raise SourceError(f"{path}: shard named by {index.name} is missing")
        regular_file(path)
    return weight_map


def check_index(src, weight_map: dict, folder: Path) -> None:
    """Every tensor the index lists must be in the shard it names."""
    for name, shard in weight_map.items():
        found = src.file_of(name)
        if found is None or found.name != PurePosixPath(shard).name:
            raise SourceError(f"{folder / shard}: the index lists tensor {name} in this shard, "
                              "but it is not there")


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
    """The state dict of a weights-only checkpoint: memory-mapped (tensors read on access) when
    it is a zip file (torch >= 1.6); an older, non-zip file is read whole (mmap needs the zip)."""
    regular_file(path)
    with open(path, "rb") as f:
        is_zip = f.read(4) == ZIP_MAGIC
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError:
        raise SourceError(f"{path}: refused: it holds Python objects besides tensors (unpickling "
                          "them could run code); only weights are ever loaded") from None
    except Exception as e:
        raise SourceError(f"{path}: cannot load as a weights-only torch checkpoint "
                          f"({error_line(e)})") from None
    for key in _NESTED:
        if isinstance(sd, dict) and len(sd) == 1 and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise SourceError(f"{path}: not a state dict ({type(sd).__name__})")
    return sd
