"""GGUF tensor names -> the checkpoint names of the same model, from the tables that made them.

llama.cpp's converter names GGUF tensors with gguf-py's `TensorNameMap` (Hugging Face checkpoint
name -> "blk.N.attn_q" ...), and stacks the per-expert 2-D tensors of a mixture of experts into
one 3-D "ffn_gate_exps". Going back: the file's metadata gives a transformers config (through
transformers' own table of GGUF keys), `naming.checkpoint_map` gives that model's checkpoint names, and
each of them is put through `TensorNameMap` forwards; matching GGUF names map back. Per-expert
names ("...block_sparse_moe.experts.3.w1.weight") are looked up without their expert index and
come back as a list, one name per expert of the stacked tensor.

Files transformers cannot describe (unknown architecture, missing metadata) give None and are
named by the small fallback tables of names.gguf_to_hf.
"""
from __future__ import annotations

import re

_EXPERT = re.compile(r"\.experts\.(\d+)\.")
_SUFFIX = (".weight", ".bias")


def gguf_checkpoint_names(fields: dict, tensors: list[str], arch: str,
                          experts: int | None = None) -> dict | None:
    """{GGUF name: (checkpoint name, checkpoint shape), or a list of them, one per expert of a
    stacked tensor}; None when unknown. Shapes come from the config and may be wrong where
    transformers' table misses a key: use one only when its number of elements agrees.
    fields: the header's metadata values (arrays as None); tensors: the file's tensor names.
    `experts`: the file's "<arch>.expert_count" (transformers does not read it for "llama")."""
    try:
        import gguf

        from .naming import checkpoint_map
        config = _config(fields, tensors, arch, experts)
        arch_id = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        name_map = gguf.get_tensor_name_map(arch_id, int(text.num_hidden_layers))
        pieces = checkpoint_map(config).pieces
    except Exception:  # any failure to describe the file: the fallback tables name it
        return None
    out: dict = {}
    for piece in pieces:
        name = piece.checkpoint
        stem, suffix = _split_suffix(name)
        m = _EXPERT.search(stem)
        base = stem[: m.start()] + ".experts." + stem[m.end():] if m else stem
        g = name_map.get_name(base)
        if g is None:
            continue
        if m:
            out.setdefault(g + suffix, {})[int(m.group(1))] = (name, piece.shape)
        else:
            out[g + suffix] = (name, piece.shape)
    return {k: [v[e] for e in sorted(v)] if isinstance(v, dict) else v for k, v in out.items()}


def _split_suffix(name: str) -> tuple[str, str]:
    """'a.b.weight' -> ('a.b', '.weight'); names without .weight/.bias keep an empty suffix."""
    for suffix in _SUFFIX:
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


# GGUF architecture -> transformers model_type, where they differ (llama.cpp's names)
_MODEL_TYPES = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss",
                "minimax-m2": "minimax_m2", "command-r": "cohere", "gemma3": "gemma3_text"}


def _config(fields: dict, tensors: list[str], arch: str, experts: int | None):
    """The transformers config the GGUF metadata describes, through transformers' own table of
    GGUF keys (GGUF_CONFIG_MAPPING); array fields (the tokenizer's) are never parsed."""
    from transformers.integrations.ggml import GGUF_CONFIG_DEFAULTS_MAPPING, GGUF_CONFIG_MAPPING

    from .skeleton import config_from_dict
    model_type = _MODEL_TYPES.get(arch, arch)
    table = GGUF_CONFIG_MAPPING[model_type]
    cfg = dict(GGUF_CONFIG_DEFAULTS_MAPPING.get(model_type, {}))
    for key, value in fields.items():
        target = table.get(key[len(arch) + 1:]) if key.startswith(arch + ".") else None
        if target and target != -1 and value is not None:
            cfg[target] = value
    cfg["tie_word_embeddings"] = "output.weight" not in tensors
    # llama.cpp writes Mixtral as a "llama" with experts; transformers reads it as a plain llama
    if model_type == "llama" and experts:
        model_type = "mixtral"
        cfg["num_local_experts"] = experts
    return config_from_dict({**cfg, "model_type": model_type})
