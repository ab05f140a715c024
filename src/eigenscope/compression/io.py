"""Save / load compressed models: one safetensors file, everything else in its JSON metadata.

Metadata: eigenscope_format, ranks {module: rank}, plan (records), tied {alias: kept name},
hf_config (the original config JSON) and hf_class (the saved transformers class). Loading a
HF model rebuilds it from the config, swaps in LowRankLinear of the stored ranks and loads the
tensors: it needs eigenscope and transformers, never the original weights file.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .._io import atomic_write
from ..errors import EigenscopeError
from ..validate import check, model_origin
from ..nn.lowrank import LowRankLinear
from ..nn.surgery import set_module
from ..sources.formats import SAVE_FILE, SAVE_KEY, save_metadata
from .save_check import check_save, file_shapes

FORMAT = "eigenscope-lowrank-1"


def weights_file(path) -> Path:
    """The single .safetensors file of a save at `path` (a folder or the file itself)."""
    path = Path(path)
    return path if path.suffix == ".safetensors" else path / SAVE_FILE


def save(model: nn.Module, path, *, plan=None, tokenizer=None) -> Path:
    """Write `path` (a .safetensors file, or a folder receiving model.safetensors) atomically."""
    from safetensors.torch import save_file

    target = weights_file(path)
    check("save", out_model=path, sources=model_origin(model))   # never over the model's source
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors, tied = _dedup(model.state_dict())
    meta = {SAVE_KEY: FORMAT, "tied": json.dumps(tied),
            "ranks": json.dumps({n: m.rank for n, m in model.named_modules() if isinstance(m, LowRankLinear)})}
    if plan is not None:
        meta["plan"] = plan.to_json(orient="records")
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        cfg = config.to_dict()
        cfg.pop("quantization_config", None)  # the GGUF quantisation does not apply to the factors
        meta["hf_config"] = json.dumps(cfg)
        meta["hf_class"] = type(model).__name__
    atomic_write(target, lambda tmp: save_file(tensors, tmp, metadata=meta))
    if tokenizer is not None and target.name == SAVE_FILE:
        tokenizer.save_pretrained(target.parent)
    return target


def _dedup(sd: dict) -> tuple[dict, dict]:
    """safetensors refuses shared storage (tied embeddings): keep one name per tensor."""
    seen, out, tied = {}, {}, {}
    for name, t in sd.items():
        key = (t.data_ptr(), t.shape, t.stride()) if t.numel() else None
        if key is not None and key in seen:
            tied[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        out[name] = t.detach().contiguous()
    return out, tied


def load(path, *, model: nn.Module | None = None) -> nn.Module:
    """The compressed model. `model` is a skeleton of the original architecture, required only
    for non-HF modules (eigenscope cannot rebuild arbitrary Python classes). Everything the
    file's metadata says is checked (save_check) before any weight is allocated."""
    from safetensors.torch import load_file

    f = weights_file(path)
    if not f.exists():
        raise EigenscopeError(f"{f}: no such file")
    shapes = file_shapes(f)                      # a damaged header: its own one-line error
    meta = save_metadata(f) or {}
    if meta.get(SAVE_KEY) != FORMAT:
        raise EigenscopeError(f"{f}: not written by eigenscope.save")
    spec = check_save(f, meta, shapes, model=model)
    if model is None:
        model = spec.cls._from_config(spec.config, dtype=spec.dtype)
    for name, rank in spec.ranks.items():
        old = model.get_submodule(name)
        set_module(model, name, LowRankLinear(old.in_features, old.out_features, rank,
                                              bias=_has_bias(old), dtype=_dtype(old)))
    sd = load_file(str(f))
    tied = spec.tied
    missing, unexpected = model.load_state_dict(sd, strict=False)
    bad = [k for k in missing if k not in tied] + list(unexpected)
    if bad:
        raise EigenscopeError(f"{f}: tensors do not match the architecture ({bad[:3]} ...)")
    for alias, kept in tied.items():  # aliases the architecture does not tie itself
        if alias in missing:
            _assign(model, alias, sd[kept])
    return model.eval()


def _has_bias(m):
    return (m.up.bias if isinstance(m, LowRankLinear) else m.bias) is not None


def _dtype(m):
    return (m.up.weight if isinstance(m, LowRankLinear) else m.weight).dtype


def _assign(model, name, tensor):
    mod_name, _, attr = name.rpartition(".")
    with torch.no_grad():
        getattr(model.get_submodule(mod_name), attr).copy_(tensor)
