"""Save / load compressed models: one safetensors file, everything else in its JSON metadata.

Metadata: eigenscope_format, ranks {module: rank}, plan (records), tied {alias: kept name},
hf_config (the original config JSON) and hf_auto (AutoModelForCausalLM / AutoModel). Loading a
HF model rebuilds it from the config, swaps in LowRankLinear of the stored ranks and loads the
tensors: it needs eigenscope and transformers, never the original weights file.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..errors import EigenscopeError
from ..nn.lowrank import LowRankLinear
from .quantize import quant_metadata, restore_quant
from .sequential import set_module

FORMAT = "eigenscope-lowrank-1"
FILENAME = "model.safetensors"


def weights_file(path) -> Path:
    path = Path(path)
    return path if path.suffix == ".safetensors" else path / FILENAME


def save(model: nn.Module, path, *, plan=None, tokenizer=None) -> Path:
    """Write `path` (a .safetensors file, or a folder receiving model.safetensors) atomically."""
    from safetensors.torch import save_file

    from ..analysis.spectra_io import atomic_write

    target = weights_file(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors, tied = _dedup(model.state_dict())
    meta = {"eigenscope_format": FORMAT, "tied": json.dumps(tied),
            "ranks": json.dumps({n: m.rank for n, m in model.named_modules() if isinstance(m, LowRankLinear)})}
    meta.update(quant_metadata(model))  # quantized modules: their specs (compression.quantize)
    if plan is not None:
        meta["plan"] = plan.to_json(orient="records")
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        from ..models import hf_auto_class
        cfg = config.to_dict()
        cfg.pop("quantization_config", None)  # the GGUF quantisation does not apply to the factors
        meta["hf_config"] = json.dumps(cfg)
        meta["hf_auto"] = hf_auto_class(config).__name__
    atomic_write(target, lambda tmp: save_file(tensors, tmp, metadata=meta))
    if tokenizer is not None and target.name == FILENAME:
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
    for non-HF modules (eigenscope cannot rebuild arbitrary Python classes)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    f = weights_file(path)
    if not f.exists():
        raise EigenscopeError(f"{f}: no such file")
    with safe_open(str(f), "pt") as fh:
        meta = fh.metadata() or {}
    if meta.get("eigenscope_format") != FORMAT:
        raise EigenscopeError(f"{f}: not written by eigenscope.save")
    if model is None:
        model = _from_config(meta, f)
    for name, rank in json.loads(meta["ranks"]).items():
        old = model.get_submodule(name)
        if not isinstance(old, (nn.Linear, LowRankLinear)):
            raise EigenscopeError(f"{f}: {name} is a {type(old).__name__}, not a Linear")
        set_module(model, name, LowRankLinear(old.in_features, old.out_features, rank,
                                              bias=_has_bias(old), dtype=_dtype(old)))
    restore_quant(model, meta, str(f))
    sd = load_file(str(f))
    tied = json.loads(meta.get("tied", "{}"))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    bad = [k for k in missing if k not in tied] + list(unexpected)
    if bad:
        raise EigenscopeError(f"{f}: tensors do not match the architecture ({bad[:3]} ...)")
    for alias, kept in tied.items():  # aliases the architecture does not tie itself
        if alias in missing:
            _assign(model, alias, sd[kept])
    return model.eval()


def _from_config(meta, f):
    if "hf_config" not in meta:
        raise EigenscopeError(f"{f}: not a Hugging Face model; pass load(path, model=skeleton)")
    import transformers as tf

    cfg = json.loads(meta["hf_config"])
    config = tf.AutoConfig.for_model(**cfg)
    auto = getattr(tf, meta.get("hf_auto", "AutoModel"))
    return auto.from_config(config, dtype=getattr(torch, str(cfg.get("dtype") or "float32").replace("torch.", "")))


def _has_bias(m):
    return (m.up.bias if isinstance(m, LowRankLinear) else m.bias) is not None


def _dtype(m):
    return (m.up.weight if isinstance(m, LowRankLinear) else m.weight).dtype


def _assign(model, name, tensor):
    mod_name, _, attr = name.rpartition(".")
    with torch.no_grad():
        getattr(model.get_submodule(mod_name), attr).copy_(tensor)
