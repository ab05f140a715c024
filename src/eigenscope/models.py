"""Load a whole model and its tokenizer from a source spec.

Accepted: an nn.Module (passed through, tokenizer None); a built-in name (smollm2-135m,
minilm-l6); a Hugging Face folder (config.json); a .gguf file or a folder holding one
(dequantised to float32); a folder or .safetensors written by `eigenscope.save`.
"""
from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from .errors import EigenscopeError
from .sources.builtin import BUILTINS, resolve_builtin

def load_model(source, *, dtype="float32"):
    """(model in eval mode, tokenizer or None)."""
    if isinstance(source, nn.Module):
        return source, None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = resolve_builtin(source) if str(source) in BUILTINS else Path(source)
    if not path.exists():
        raise EigenscopeError(f"{path}: no such file or folder (nor a built-in name: {', '.join(BUILTINS)})")
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
