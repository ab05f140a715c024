"""Model inputs (eigenscope.inputs) on the kinds of models people calibrate: T5 (decoder inputs
by shifting, or given), ViT (pixels), a plain MLP (float features, never cast to ids), a small
CNN (images), GPT-2 (ids); dicts and DataLoaders; the tokenizer of a model's own folder."""
from __future__ import annotations

import pytest
import torch

import eigenscope
from _fixtures_architectures import BY_NAME, V, main_output
from eigenscope.errors import EigenscopeError
from eigenscope.inputs import call_model, model_batches, shift_right, tokenizer_for

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("name", ["t5", "vit", "mlp", "cnn", "gpt2"])
def test_every_form_of_the_same_inputs_gives_the_same_outputs(name):
    case = BY_NAME[name]
    model, x = case.model(), case.inputs()
    key = {"vision": "pixel_values"}.get(case.kind, "input_ids")
    forms = [x, list(x.split(1)),
             torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=1)]
    if hasattr(model, "config"):
        forms.append({key: x})
    with torch.no_grad():
        want = main_output(call_model(model, x))
        for form in forms:
            batches = model_batches(form, batch_size=1)
            assert len(batches) == x.shape[0]
            got = torch.cat([main_output(call_model(model, b)) for b in batches])
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize("name", ["mlp", "cnn", "vit"])
def test_float_inputs_stay_float(name):
    x = BY_NAME[name].inputs()
    (batch,) = model_batches(x, batch_size=len(x))
    assert batch.dtype == x.dtype and torch.equal(batch, x)


def test_t5_decoder_inputs_are_the_ids_shifted_right_or_the_given_ones():
    model, ids = BY_NAME["t5"].model(), BY_NAME["t5"].inputs()
    dec = shift_right(ids, model.config)
    assert torch.equal(dec[:, 0], torch.full((ids.shape[0],), model.config.decoder_start_token_id))
    assert torch.equal(dec[:, 1:], ids[:, :-1])
    other = torch.flip(ids, dims=[1])
    with torch.no_grad():
        shifted = model(input_ids=ids, decoder_input_ids=dec).logits
        given = model(input_ids=ids, decoder_input_ids=other).logits
        torch.testing.assert_close(call_model(model, ids).logits, shifted)
        torch.testing.assert_close(
            call_model(model, {"input_ids": ids, "decoder_input_ids": other}).logits, given)


@pytest.mark.parametrize("name, calibration", [
    ("t5", "ids"), ("t5", "dict"), ("vit", "pixels"), ("mlp", "features"), ("llama-gqa", "ids")])
def test_compress_calibrates_on_what_the_model_takes(name, calibration):
    case = BY_NAME[name]
    model, x = case.model(), torch.cat([case.inputs()] * 3)
    if calibration == "dict":
        x = {"input_ids": x, "decoder_input_ids": shift_right(x, model.config)}
    model, plan = eigenscope.compress(model, ratio=0.2, method="whiten", calibration=x,
                                      batch_size=2)
    assert plan["rank"].notna().any()
    with torch.no_grad():
        assert torch.isfinite(main_output(call_model(model, case.inputs()))).all()


def _word_tokenizer(folder):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate("the a of to is and in that it".split())}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    fast.save_pretrained(folder)
    return fast


def test_tokenizer_of_the_models_own_folder(tmp_path):
    pytest.importorskip("tokenizers")
    BY_NAME["llama-gqa"].model().save_pretrained(tmp_path)
    _word_tokenizer(tmp_path)
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    tok = tokenizer_for(model)
    assert tok is not None and tok("the cat is in it")["input_ids"] == [1, 0, 5, 7, 9]
    assert tokenizer_for(BY_NAME["llama-gqa"].model()) is None  # built in memory: no folder
    text = "the a of to is and in that it " * 40
    res = eigenscope.evaluate(model, text, seq_len=8, max_tokens=64)  # no tokenizer given
    assert res["tokens"] == 64 and res["perplexity"] > 1


def test_text_without_any_tokenizer_says_what_to_pass():
    with pytest.raises(EigenscopeError, match="text inputs need a tokenizer: pass tokenizer="):
        eigenscope.evaluate(BY_NAME["llama-gqa"].model(), "some text", seq_len=4)


def test_ids_out_of_a_toy_vocabulary_are_the_callers_business():
    """Inputs are passed as given: ids are not clipped or remapped to the vocabulary."""
    ids = torch.full((2, 4), V - 1)
    (batch,) = model_batches(ids, batch_size=2)
    assert torch.equal(batch, ids)
