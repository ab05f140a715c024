"""Save / load compressed models: safetensors shards and an index, everything else in JSON.

A save is a folder: shards `model-00001.safetensors`, ... (each written atomically) and
`model.safetensors.index.json` (written last, atomically: a folder without it is not a save).
The index's "metadata" holds eigenscope_format, ranks {module: rank}, plan (records), tied
{alias: kept name}, hf_config (the original config JSON) and hf_class (the saved transformers
class). Loading builds a weightless skeleton from the config (never code named by a file),
swaps in LowRankLinear of the stored ranks and assigns the tensors shard by shard as they are
read: it needs eigenscope and transformers, never the original weights, and never holds a
second copy of the model. Single-file saves (`x.safetensors`, metadata in its header) load too.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from .._io import atomic_write
from .._json import loads_bounded
from ..errors import EigenscopeError
from ..nn.surgery import is_lowrank_host, lowrank_like, lowrank_types, set_module
from ..nn.surgery import matrix_shape as _matrix_shape
from ..sources.formats import SAVE_FILE, SAVE_INDEX, SAVE_KEY, save_metadata
from ..sources.skeleton import Filler, build
from ..validate import check, model_origin
from .quantize import quant_metadata, restore_quant
from .save_check import check_save, file_shapes

FORMAT = "eigenscope-lowrank-1"
SHARD = "model-{:05d}.safetensors"
_SHARD_RE = re.compile(r"^model-\d{5}\.safetensors$")
SHARD_BYTES = 2 * 2**30


class ShardWriter:
    """Writes tensors into shards of at most `shard_bytes` (each atomically), then the index.

    dtype -- floating tensors are cast to it when written (None: as they are)
    """

    def __init__(self, folder, *, dtype=None, shard_bytes: int = SHARD_BYTES):
        self.folder, self.dtype, self.shard_bytes = Path(folder), dtype, int(shard_bytes)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise EigenscopeError(f"{self.folder}: cannot create the output folder "
                                  f"({e.strerror or e})") from None
        self.pending: dict[str, torch.Tensor] = {}
        self.weight_map: dict[str, str] = {}
        self.total = 0

    def add_block(self, prefix: str, module: nn.Module) -> None:
        """Every tensor of `module`'s state dict, named under `prefix`."""
        self.add({f"{prefix}.{k}" if prefix else k: v for k, v in module.state_dict().items()})

    def add(self, tensors: dict[str, torch.Tensor]) -> None:
        """Queue tensors; a shard is written whenever the queue reaches shard_bytes."""
        for name, t in tensors.items():
            t = t.detach()
            if self.dtype is not None and t.is_floating_point():
                t = t.to(self.dtype)
            self.pending[name] = t.contiguous()
        if sum(t.numel() * t.element_size() for t in self.pending.values()) >= self.shard_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        from safetensors.torch import save_file

        name = SHARD.format(len(set(self.weight_map.values())) + 1)
        tensors, self.pending = self.pending, {}
        _write(self.folder / name, lambda tmp: save_file(tensors, tmp))
        self.weight_map.update(dict.fromkeys(tensors, name))
        self.total += sum(t.numel() * t.element_size() for t in tensors.values())

    def finish(self, metadata: dict[str, str]) -> Path:
        """Write the last shard and the index (last of all); remove shards of an older save."""
        self._flush()
        index = {"metadata": {**metadata, "total_size": str(self.total)},
                 "weight_map": self.weight_map}
        path = _write(self.folder / SAVE_INDEX,
                      lambda tmp: Path(tmp).write_text(json.dumps(index), encoding="utf-8"))
        mine = set(self.weight_map.values())
        for old in self.folder.iterdir():
            if _SHARD_RE.match(old.name) and old.name not in mine:
                old.unlink(missing_ok=True)
        (self.folder / SAVE_FILE).unlink(missing_ok=True)   # a single-file save from before
        return path


def _write(path: Path, write) -> Path:
    try:
        return atomic_write(path, write)
    except OSError as e:
        raise EigenscopeError(f"{path}: cannot write ({e.strerror or e}); nothing of this "
                              "save is complete until its index is written") from None


def metadata(model: nn.Module, *, plan=None, tied: dict | None = None, config=None,
             cls_name: str | None = None) -> dict[str, str]:
    """The save's metadata (all values are strings, as safetensors and the index want)."""
    meta = {SAVE_KEY: FORMAT, "tied": json.dumps(tied or {}),
            "ranks": json.dumps({n: m.rank for n, m in model.named_modules()
                                 if isinstance(m, lowrank_types())})}
    meta.update(quant_metadata(model))   # quantized layers: their specs (compression/quantize.py)
    if plan is not None:
        meta["plan"] = plan.to_json(orient="records")
    config = config if config is not None else getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        cfg = config.to_dict()
        cfg.pop("quantization_config", None)  # the GGUF quantisation does not apply to the factors
        meta["hf_config"] = json.dumps(cfg)
        meta["hf_class"] = cls_name or type(model).__name__
    return meta


def save(model: nn.Module, path, *, plan=None, tokenizer=None) -> Path:
    """Write `model` to the folder `path` (shards + index, atomically) and return it; a path
    ending in .safetensors gets one file with the metadata in its header instead."""
    path = Path(path)
    check("save", out_model=path, sources=model_origin(model))   # never over the model's source
    tensors, tied = dedup(model.state_dict())
    meta = metadata(model, plan=plan, tied=tied)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file
        _write(path, lambda tmp: save_file({k: t.contiguous() for k, t in tensors.items()}, tmp,
                                           metadata=meta))
        return path
    writer = ShardWriter(path)
    writer.add(tensors)
    writer.finish(meta)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return path


def dedup(sd: dict) -> tuple[dict, dict]:
    """safetensors refuses shared storage (tied embeddings): keep one name per tensor."""
    seen, out, tied = {}, {}, {}
    for name, t in sd.items():
        key = (t.data_ptr(), t.shape, t.stride()) if t.numel() and t.device.type != "meta" else None
        if key is not None and key in seen:
            tied[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        out[name] = t.detach()
    return out, tied


def load(path, *, model: nn.Module | None = None, dtype=None) -> nn.Module:
    """The compressed model, filled shard by shard into a weightless skeleton.

    model -- a skeleton of the original architecture, needed only for non-Hugging Face modules
             (eigenscope never rebuilds arbitrary Python classes)
    dtype -- convert floating tensors to it as they are read (None: keep the stored dtype)

    Everything the metadata says is checked (save_check) before any weight is allocated.
    """
    meta, files = _read_save(Path(path))
    shapes = {k: s for f in files for k, s in file_shapes(f).items()}   # headers whole
    where = files[0] if len(files) == 1 else _index_of(Path(path))      # where the metadata is
    spec = check_save(where, meta, shapes, model=model,
                      file_bytes=sum(f.stat().st_size for f in files))
    if model is None:
        model = build(spec.config, spec.cls, dtype=spec.dtype)
    _swap_lowrank(model, spec.ranks, where)
    restore_quant(model, meta, str(where))
    filler = Filler(model)
    by_alias = {a: canon for canon, names in filler.aliases.items() for a in names}
    assigned = [t for f in files for t in _fill(filler, by_alias, f, dtype)]
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    for alias, kept in spec.tied.items():
        if alias in by_alias and kept in by_alias:
            for mod, leaf in filler.owners[by_alias[alias]]:
                mod._parameters[leaf] = filler.get(by_alias[kept])
    missing = Filler(model).missing(assigned)
    if missing:
        raise EigenscopeError(f"{where}: tensors missing from the save ({missing[:3]} ...)")
    return model.eval()


def _index_of(path: Path) -> Path:
    return path if path.name.endswith(".index.json") else path / SAVE_INDEX


def _read_save(path: Path) -> tuple[dict, list[Path]]:
    meta = save_metadata(path)
    if meta is None or meta.get(SAVE_KEY) != FORMAT:
        what = "no such file or folder" if not path.exists() else "not written by eigenscope.save"
        raise EigenscopeError(f"{path}: {what}")
    folder = path if path.is_dir() else path.parent
    index = folder / SAVE_INDEX if path.is_dir() or path.name.endswith(".index.json") else None
    if index is None or not index.is_file():
        return meta, [path if path.suffix == ".safetensors" else folder / SAVE_FILE]
    doc = loads_bounded(index.read_bytes(), what=f"{index}")
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise EigenscopeError(f"{index}: the index lists no tensors")
    files = []
    for name in dict.fromkeys(weight_map.values()):
        f = (folder / str(name)).resolve()
        if f.parent != folder.resolve() or not f.is_file():
            raise EigenscopeError(f"{index}: shard {str(name)[:80]!r} is missing or outside the folder")
        files.append(f)
    return meta, files


def _swap_lowrank(model: nn.Module, ranks: dict[str, int], path) -> None:
    """Put a low-rank stand-in of the stored rank (on the layer's device: meta for a skeleton)
    where each compressed layer was."""
    for name, rank in ranks.items():
        try:
            old = model.get_submodule(name)
        except AttributeError:
            raise EigenscopeError(f"{path}: the save names a layer {name!r} the model does not have") from None
        if not is_lowrank_host(old):
            raise EigenscopeError(f"{path}: {name} is a {type(old).__name__}, not a Linear, "
                                  "Conv1D or Conv2d")
        shape = _matrix_shape(old)
        if rank > min(shape):
            raise EigenscopeError(f"{path}: rank {rank} of {name} exceeds its shape {shape}")
        set_module(model, name, lowrank_like(old, rank))


def _fill(filler: Filler, by_alias: dict, f: Path, dtype) -> list:
    """Assign every tensor of shard `f`; returns the parameters made."""
    from safetensors import safe_open

    made = []
    with safe_open(str(f), "pt") as fh:
        for name in fh.keys():
            canon = by_alias.get(name)
            if canon is None:
                raise EigenscopeError(f"{f}: tensor {name} does not belong to the model")
            t = fh.get_tensor(name)
            if tuple(t.shape) != filler.shape(canon):
                raise EigenscopeError(f"{f}: tensor {name} has shape {tuple(t.shape)}, the "
                                      f"model expects {filler.shape(canon)}")
            filler.set(canon, t.to(dtype) if dtype is not None and t.is_floating_point() else t,
                       requires_grad=True)
            made.append(filler.get(canon))
    return made
