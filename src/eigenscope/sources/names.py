"""Names: block index and role of a matrix, and GGUF tensor names mapped to Hugging Face names."""
from __future__ import annotations

import re

_BLOCK = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|blk|block|encoder\.layer)\.(\d+)\.")

# Ordered: the first pattern that matches a name gives its role (specific before generic).
_ROLES = [
    ("embed", r"embed|wte\.|wpe\.|word_embeddings|position_embeddings|token_type_embeddings|token_embd"),
    ("head", r"(?:^|\.)lm_head\.|(?:^|\.)output\.weight$|(?:^|\.)classifier\."),
    ("q", r"q_proj|\.query\.|attn_q\.|\.wq\.|q_lin"),
    ("k", r"k_proj|\.key\.|attn_k\.|\.wk\.|k_lin"),
    ("v", r"v_proj|\.value\.|attn_v\.|\.wv\.|v_lin"),
    ("o", r"o_proj|out_proj|attention\.output\.dense|attn_output|\.wo\.|attn\.c_proj|out_lin"),
    ("gate", r"gate_proj|\.w1\.|ffn_gate(?!_inp)"),
    ("up", r"up_proj|\.w3\.|intermediate\.dense|\.fc1\.|c_fc|ffn_up|lin1"),
    ("down", r"down_proj|\.w2\.|output\.dense|\.fc2\.|mlp\.c_proj|ffn_down|lin2"),
]
_ROLE_RE = [(role, re.compile(p)) for role, p in _ROLES]


def block_index(name: str) -> int:
    m = _BLOCK.search(name)
    return int(m.group(1)) if m else -1


def role_of(name: str) -> str:
    for role, pat in _ROLE_RE:
        if pat.search(name):
            return role
    return "other"


# GGUF (llama.cpp) names -> Hugging Face names, for Llama-family and BERT-family files.
_GGUF_TOP = {
    "token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head",
    "token_types": "embeddings.token_type_embeddings", "position_embd": "embeddings.position_embeddings",
    "token_embd_norm": "embeddings.LayerNorm",
}
_GGUF_BLOCK = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "ffn_gate_inp": "mlp.gate",
    "ffn_gate_exps": "mlp.experts.gate_proj", "ffn_up_exps": "mlp.experts.up_proj",
    "ffn_down_exps": "mlp.experts.down_proj",
    "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
}
_GGUF_NAME = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")


def gguf_to_hf(name: str) -> str:
    """'blk.3.attn_q.weight' -> 'model.layers.3.self_attn.q_proj.weight'; unknown names unchanged."""
    m = _GGUF_NAME.match(name)
    if m:
        block, part, kind = m.groups()
        if part in _GGUF_BLOCK:
            return f"model.layers.{block}.{_GGUF_BLOCK[part]}.{kind}"
        return name
    stem, _, kind = name.rpartition(".")
    if stem in _GGUF_TOP:
        return f"{_GGUF_TOP[stem]}.{kind}"
    return name
