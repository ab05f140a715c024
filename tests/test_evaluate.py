"""evaluate(): perplexity against an independent computation; KL/top-1 and encoder cosine."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

import eigenscope
from eigenscope.errors import EigenscopeError
from eigenscope.evaluation import evaluate

V = 40


def char_tokenizer(text, **kw):
    return {"input_ids": [ord(c) % V for c in text]}


TEXT = "the quick brown fox jumps over the lazy dog. " * 20


def tiny_llama(seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    return LlamaForCausalLM(cfg).eval()


def tiny_bert(seed=0):
    from transformers import BertConfig, BertModel
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                     num_attention_heads=4, max_position_embeddings=64)
    return BertModel(cfg).eval()


def test_perplexity_matches_direct_cross_entropy():
    model = tiny_llama()
    res = evaluate(model, TEXT, tokenizer=char_tokenizer, seq_len=32, max_tokens=256)
    ids = torch.tensor(char_tokenizer(TEXT)["input_ids"][:256]).view(8, 32)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    assert res["perplexity"] == pytest.approx(math.exp(float(nll)), rel=1e-5)
    assert res["parameters"] == sum(p.numel() for p in model.parameters())
    assert res["bytes"] == 4 * res["parameters"] and res["tokens"] == 256 and res["tokens_per_s"] > 0


def test_reference_identical_and_different():
    model = tiny_llama()
    same = evaluate(model, TEXT, reference=copy.deepcopy(model), tokenizer=char_tokenizer, seq_len=32, max_tokens=128)
    assert same["kl"] == pytest.approx(0, abs=1e-6) and same["top1_agreement"] == 1.0
    other = evaluate(model, TEXT, reference=tiny_llama(seed=1), tokenizer=char_tokenizer, seq_len=32, max_tokens=128)
    assert other["kl"] > 1e-3 and other["top1_agreement"] < 1.0


def test_encoder_has_nan_perplexity_and_cosine():
    model = tiny_bert()
    res = evaluate(model, TEXT, reference=copy.deepcopy(model), tokenizer=char_tokenizer, seq_len=32, max_tokens=128)
    assert math.isnan(res["perplexity"]) and math.isnan(res["kl"])
    assert res["cosine"] == pytest.approx(1.0, abs=1e-6) and res["rel_error"] == pytest.approx(0, abs=1e-6)
    squeezed, _ = eigenscope.compress(tiny_bert(), ratio=0.5, calibration=torch.randint(0, V, (8, 16)), multiple=1)
    res = evaluate(squeezed, TEXT, reference=tiny_bert(), tokenizer=char_tokenizer, seq_len=32, max_tokens=128)
    assert 0 < res["cosine"] < 1 and res["rel_error"] > 0


def test_text_too_short():
    with pytest.raises(EigenscopeError, match="too short"):
        evaluate(tiny_llama(), "abc", tokenizer=char_tokenizer, seq_len=32)


def test_public_names_are_callable():
    assert callable(eigenscope.evaluate) and callable(eigenscope.compress)
    res = eigenscope.evaluate(tiny_llama(), TEXT, tokenizer=char_tokenizer, seq_len=32, max_tokens=64)
    assert res["perplexity"] > 1
