"""Names: block index and role of a matrix, and GGUF tensor names mapped to Hugging Face names."""
from __future__ import annotations

import re

_BLOCK = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|blk|block)\.(\d+)\.")

# Ordered: the first pattern that matches a name gives its role (specific before generic).
# Families: Llama/Mistral/Qwen (q_proj ... down_proj), Meta/Mixtral (wq, w1 gate, w3 up, w2 down),
# BERT (query/key/value, attention.output.dense o, intermediate.dense up, output.dense down),
# DistilBERT (q_lin, lin1/lin2), GPT-2 (c_attn -> other: fused qkv, attn.c_proj o, c_fc up,
# mlp.c_proj down), T5 (DenseReluDense.wi/wo before the attention "o"), GGUF names unmapped.
_ROLES = [
    ("head", r"(?:^|\.)lm_head\.|(?:^|\.)embed_out\.|(?:^|\.)output\.weight$|(?:^|\.)classifier\."
             r"|predictions\.decoder\."),
    ("embed", r"embed|(?:^|\.)wte\.|(?:^|\.)wpe\.|word_embeddings|position_embeddings"
              r"|token_type_embeddings|(?:^|\.)(?:token_embd|position_embd|token_types)\."
              r"|shared\.weight$"),
    ("gate", r"DenseReluDense\.wi_0\."),
    ("up", r"DenseReluDense\.wi(?:_1)?\."),
    ("down", r"DenseReluDense\.wo\."),
    ("q", r"q_proj|\.query\.|attn_q\.|\.wq\.|q_lin|SelfAttention\.q\.|EncDecAttention\.q\."),
    ("k", r"k_proj|\.key\.|attn_k\.|\.wk\.|k_lin|SelfAttention\.k\.|EncDecAttention\.k\."),
    ("v", r"v_proj|\.value\.|attn_v\.|\.wv\.|v_lin|SelfAttention\.v\.|EncDecAttention\.v\."),
    ("o", r"o_proj|out_proj|attention\.output\.dense|attn_output|\.wo\.|attn\.c_proj|out_lin"
          r"|SelfAttention\.o\.|EncDecAttention\.o\."),
    ("gate", r"gate_proj|\.w1\.|ffn_gate(?!_inp)"),
    # fused gate+up of MoE experts ("experts.gate_up_proj") counts as up
    ("up", r"up_proj|\.w3\.|intermediate\.dense|\.fc1\.|c_fc|ffn_up|\.lin1\."),
    ("down", r"down_proj|\.w2\.|output\.dense|\.fc2\.|mlp\.c_proj|ffn_down|\.lin2\."),
]
_ROLE_RE = [(role, re.compile(p)) for role, p in _ROLES]


def block_index(name: str) -> int:
    """'model.layers.3.mlp...' -> 3 (also layer.N, h.N, blocks.N, blk.N); -1 outside blocks."""
    m = _BLOCK.search(name)
    return int(m.group(1)) if m else -1


_EXPERT = re.compile(r"(?:^|\.)experts\.(\d+)\.")


def expert_index(name: str) -> int:
    """Expert of a per-expert 2-D tensor ('...experts.5.w1.weight' -> 5, Mixtral files); -1."""
    m = _EXPERT.search(name)
    return int(m.group(1)) if m else -1


def role_of(name: str) -> str:
    """One of q k v o gate up down embed head other (analysis/schema.py ROLES)."""
    for role, pat in _ROLE_RE:
        if pat.search(name):
            return role
    return "other"


# GGUF (llama.cpp) names -> Hugging Face names, Llama family (the default) and BERT family.
_LLAMA_TOP = {
    "token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head",
}
_LLAMA_BLOCK = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "ffn_gate_inp": "mlp.gate",
    "ffn_gate_exps": "mlp.experts.gate_proj", "ffn_up_exps": "mlp.experts.up_proj",
    "ffn_down_exps": "mlp.experts.down_proj",
    "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
}
_BERT_TOP = {
    "token_embd": "embeddings.word_embeddings", "token_types": "embeddings.token_type_embeddings",
    "position_embd": "embeddings.position_embeddings", "token_embd_norm": "embeddings.LayerNorm",
}
_BERT_BLOCK = {
    "attn_q": "attention.self.query", "attn_k": "attention.self.key",
    "attn_v": "attention.self.value", "attn_output": "attention.output.dense",
    "attn_output_norm": "attention.output.LayerNorm", "ffn_up": "intermediate.dense",
    "ffn_down": "output.dense", "layer_output_norm": "output.LayerNorm",
}
_BERT_ARCHS = {"bert", "nomic-bert", "jina-bert-v2", "modern-bert"}
_GGUF_NAME = re.compile(r"^blk\.(\d+)\.([a-z0-9_]+)\.(weight|bias)$")


def gguf_to_hf(name: str, arch: str = "llama") -> str:
    """'blk.3.attn_q.weight' -> 'model.layers.3.self_attn.q_proj.weight' (BERT archs: ->
    'encoder.layer.3.attention.self.query.weight'); names without a mapping are returned as is."""
    bert = arch in _BERT_ARCHS
    top, blocks = (_BERT_TOP, _BERT_BLOCK) if bert else (_LLAMA_TOP, _LLAMA_BLOCK)
    prefix = "encoder.layer" if bert else "model.layers"
    m = _GGUF_NAME.match(name)
    if m:
        block, part, kind = m.groups()
        return f"{prefix}.{block}.{blocks[part]}.{kind}" if part in blocks else name
    stem, _, kind = name.rpartition(".")
    return f"{top[stem]}.{kind}" if stem in top else name
