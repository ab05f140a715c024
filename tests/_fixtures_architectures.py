"""Tiny random models (seeded) of the architectures people use, their inputs and their folders.

Every transformers model is built from its own config class at toy sizes (hidden 32, 2 blocks,
vocabulary 64) so the whole table runs in minutes on one thread; the plain MLP and the small
CNN are in-file torch modules. `Case.inputs()` is what the model is fed (eigenscope.inputs
forms: token ids, float tensors).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

H, V, L, SEQ = 32, 64, 2, 8


def _lm(**kw):
    return dict(vocab_size=V, hidden_size=H, intermediate_size=48, num_hidden_layers=L,
                num_attention_heads=4, **kw)


class MLP(nn.Module):
    """A plain MLP on 16 features: three Linear layers."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 48), nn.ReLU(), nn.Linear(48, 48), nn.ReLU(),
                                 nn.Linear(48, 10))

    def forward(self, x):
        return self.net(x)


class CNN(nn.Module):
    """A small CNN on 3x8x8 images: a stack of 3x3 Conv2d blocks and a Linear classifier."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(c, 16, 3, padding=1), nn.ReLU())
                                    for c in (3, 16, 16))
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(dim=(2, 3)))


def _hf(name: str, config: str, **kw):
    def build():
        import transformers as tf
        return getattr(tf, name)(getattr(tf, config)(**kw))
    return build


@dataclass(frozen=True)
class Case:
    """One architecture: how to build it and what it eats."""

    name: str
    build: Callable[[], nn.Module]
    kind: str  # "lm", "seq2seq", "encoder", "vision", "features", "images"

    def model(self) -> nn.Module:
        torch.manual_seed(0)
        return self.build().eval()

    def inputs(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(1)
        if self.kind in ("lm", "seq2seq", "encoder"):
            return torch.randint(0, V, (2, SEQ), generator=g)
        if self.kind == "vision":
            return torch.randn(2, 3, 16, 16, generator=g)
        if self.kind == "images":
            return torch.randn(2, 3, 8, 8, generator=g)
        return torch.randn(4, 16, generator=g)


CASES = [
    Case("llama-gqa", _hf("LlamaForCausalLM", "LlamaConfig", **_lm(num_key_value_heads=2)), "lm"),
    Case("mistral", _hf("MistralForCausalLM", "MistralConfig", **_lm(num_key_value_heads=2)), "lm"),
    Case("qwen2", _hf("Qwen2ForCausalLM", "Qwen2Config", **_lm(num_key_value_heads=2)), "lm"),
    Case("qwen3", _hf("Qwen3ForCausalLM", "Qwen3Config", **_lm(num_key_value_heads=2, head_dim=8)),
         "lm"),
    Case("gemma2", _hf("Gemma2ForCausalLM", "Gemma2Config",
                       **_lm(num_key_value_heads=2, head_dim=8)), "lm"),
    Case("phi3", _hf("Phi3ForCausalLM", "Phi3Config",
                     **_lm(num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2)),
         "lm"),
    Case("gpt2", _hf("GPT2LMHeadModel", "GPT2Config", vocab_size=V, n_embd=H, n_layer=L, n_head=4,
                     n_positions=64, bos_token_id=1, eos_token_id=2), "lm"),
    Case("gpt-neox", _hf("GPTNeoXForCausalLM", "GPTNeoXConfig", **_lm()), "lm"),
    Case("opt", _hf("OPTForCausalLM", "OPTConfig", vocab_size=V, hidden_size=H, ffn_dim=48,
                    num_hidden_layers=L, num_attention_heads=4, word_embed_proj_dim=H,
                    max_position_embeddings=64), "lm"),
    Case("falcon", _hf("FalconForCausalLM", "FalconConfig", vocab_size=V, hidden_size=H,
                       num_hidden_layers=L, num_attention_heads=4), "lm"),
    Case("mixtral", _hf("MixtralForCausalLM", "MixtralConfig",
                        **_lm(num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2)),
         "lm"),
    Case("qwen2-moe", _hf("Qwen2MoeForCausalLM", "Qwen2MoeConfig",
                          **_lm(num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                                moe_intermediate_size=24, shared_expert_intermediate_size=48)),
         "lm"),
    Case("bert", _hf("BertModel", "BertConfig", **_lm()), "encoder"),
    Case("t5", _hf("T5ForConditionalGeneration", "T5Config", vocab_size=V, d_model=H, d_kv=8,
                   d_ff=48, num_layers=L, num_heads=4, decoder_start_token_id=0), "seq2seq"),
    Case("vit", _hf("ViTModel", "ViTConfig", hidden_size=H, num_hidden_layers=L,
                    num_attention_heads=4, intermediate_size=48, image_size=16, patch_size=4),
         "vision"),
    Case("mlp", MLP, "features"),
    Case("cnn", CNN, "images"),
]
BY_NAME = {c.name: c for c in CASES}


def save_folder(model: nn.Module, folder) -> None:
    """A transformers model's own save_pretrained; a plain module's state dict as safetensors."""
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(folder)
        return
    from safetensors.torch import save_file
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "model.safetensors"))


def main_output(out) -> torch.Tensor:
    """The tensor a model call returns first: logits, last hidden state, or the tensor itself."""
    if isinstance(out, torch.Tensor):
        return out
    for key in ("logits", "last_hidden_state"):
        if getattr(out, key, None) is not None:
            return getattr(out, key)
    raise AssertionError(f"no main output in {type(out).__name__}")


class ByteTokenizer:
    """Text -> ids: each byte modulo the toy vocabulary (evaluate's text needs a tokenizer)."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [b % V for b in text.encode()]}
