"""evaluate()'s model-level Matrix Entropy / Nuclear-Norm against the final hidden states."""
import pytest
import torch

from eigenscope.evaluation import evaluate
from eigenscope.maths.activations import matrix_entropy, matrix_nuclear_norm

V = 40
TEXT = "the quick brown fox jumps over the lazy dog. " * 20


def char_tokenizer(text, **kw):
    return {"input_ids": [ord(c) % V for c in text]}


@pytest.mark.parametrize("kind", ["llama", "bert"])
def test_model_scores_are_the_window_mean_of_the_final_representations(kind):
    import transformers as tf
    torch.manual_seed(0)
    if kind == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=48,
                                                   num_hidden_layers=2, num_attention_heads=4,
                                                   num_key_value_heads=2)).eval()
    else:
        model = tf.BertModel(tf.BertConfig(vocab_size=V, hidden_size=32, intermediate_size=48,
                                           num_hidden_layers=2, num_attention_heads=4,
                                           max_position_embeddings=64)).eval()
    res = evaluate(model, TEXT, tokenizer=char_tokenizer, seq_len=32, max_tokens=256, batch_size=3)
    ids = torch.tensor(char_tokenizer(TEXT)["input_ids"][:256]).view(8, 32)
    with torch.no_grad():
        h = model(input_ids=ids, output_hidden_states=True).hidden_states[-1]   # (8, 32, 32)
    assert res["matrix_entropy"] == pytest.approx(float(matrix_entropy(h).mean()), rel=1e-5)
    assert res["matrix_nuclear_norm"] == pytest.approx(float(matrix_nuclear_norm(h).mean()), rel=1e-5)
    assert 0 < res["matrix_entropy"] < 1
