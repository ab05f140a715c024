"""eigenscope.load gives back the class that was saved, ties restored, or one clear line."""
from __future__ import annotations

import json

import pytest
import torch

import eigenscope
from _fixtures_architectures import BY_NAME
from eigenscope.errors import EigenscopeError

transformers = pytest.importorskip("transformers")


def _save(model, path):
    model, plan = eigenscope.compress(model, ratio=0.2, method="svd", allocation="uniform")
    eigenscope.save(model, path, plan=plan)
    return model


def _rewrite_metadata(path, **changes):
    """Change (None: drop) entries of a save's metadata, in its index."""
    index = path / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    for k, v in changes.items():
        if v is None:
            data["metadata"].pop(k)
        else:
            data["metadata"][k] = v
    index.write_text(json.dumps(data))


@pytest.mark.parametrize("cls", ["T5ForConditionalGeneration", "T5Model", "T5EncoderModel"])
def test_each_t5_class_comes_back_as_itself(cls, tmp_path):
    config = BY_NAME["t5"].model().config
    torch.manual_seed(0)
    model = getattr(transformers, cls)(config).eval()
    model = _save(model, tmp_path)
    loaded = eigenscope.load(tmp_path)
    assert type(loaded).__name__ == cls
    if cls == "T5ForConditionalGeneration":  # its head is tied to the shared embedding
        assert loaded.lm_head.weight is loaded.shared.weight
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_a_save_without_its_class_rebuilds_the_default_class(tmp_path):
    _save(BY_NAME["llama-gqa"].model(), tmp_path)
    _rewrite_metadata(tmp_path, hf_class=None)
    assert type(eigenscope.load(tmp_path)).__name__ == "LlamaForCausalLM"


@pytest.mark.parametrize("hf_class, match", [
    ("BertModel", "class 'BertModel' is not a transformers class for model type 'llama'"),
    ("os.system", "class 'os.system' is not a transformers class"),
])
def test_a_class_the_config_does_not_allow_is_one_clear_line(hf_class, match, tmp_path):
    _save(BY_NAME["llama-gqa"].model(), tmp_path)
    _rewrite_metadata(tmp_path, hf_class=hf_class)
    with pytest.raises(EigenscopeError, match=match) as err:
        eigenscope.load(tmp_path)
    assert "\n" not in str(err.value)


def test_a_config_that_cannot_be_rebuilt_is_one_clear_line(tmp_path):
    _save(BY_NAME["llama-gqa"].model(), tmp_path)
    _rewrite_metadata(tmp_path, hf_config=json.dumps({"model_type": "no-such-model"}))
    with pytest.raises(EigenscopeError) as err:
        eigenscope.load(tmp_path)
    assert "\n" not in str(err.value) and "no-such-model" in str(err.value)
