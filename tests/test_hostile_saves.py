"""Class 1 (code run from a file) and the tampered saves of class 5: a save is rebuilt only from
allow-listed transformers classes, and everything its metadata says is checked before any
weight is allocated; each bad save is one line naming the file, never a traceback."""
from __future__ import annotations

import json

import pytest
import torch

import eigenscope
from _fixtures_hostile import (assert_user_error, copy_save, edit_json, make_save, read_save,
                               run_cli, tamper)
from eigenscope.errors import EigenscopeError

UP = "model.layers.0.mlp.up_proj"


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return make_save(tmp_path_factory.mktemp("save") / "tiny")


def _evil_code(folder, marker):
    """A folder of Python files that leave `marker` when imported (what auto_map would run)."""
    folder.mkdir()
    body = f"open({str(marker)!r}, 'w').write('ran')\n"
    (folder / "configuration_evil.py").write_text(body + "class EvilConfig: pass\n")
    (folder / "modeling_evil.py").write_text(body + "class EvilModel: pass\n")
    return folder


def _auto_map(folder, cls="EvilModel"):
    def edit(md):
        edit_json(md, "hf_config", lambda c: c.update(
            auto_map={"AutoConfig": "configuration_evil.EvilConfig",
                      "AutoModelForCausalLM": "modeling_evil.EvilModel"},
            _name_or_path=str(folder)))
        md["hf_class"] = cls
    return edit


def _cfg(**kw):
    return lambda md: edit_json(md, "hf_config", lambda c: c.update(**kw))


def _ranks(fn):
    return lambda md: edit_json(md, "ranks", fn)


def _set(key, text):
    return lambda md: md.__setitem__(key, text)


# case -> (metadata edit, tensors edit, words the one-line error holds)
REFUSED = {
    "class_not_allowed": (_set("hf_class", "BertModel"), None, "BertModel"),
    "class_not_in_transformers": (_set("hf_class", "os.system"), None, "os.system"),
    "ranks_invalid_json": (_set("ranks", "{not json"), None, "'ranks'"),
    "ranks_not_a_dict": (_set("ranks", "[1, 2]"), None, "'ranks'"),
    "negative_rank": (_ranks(lambda r: r.update({UP: -3})), None, "-3"),
    "float_rank": (_ranks(lambda r: r.update({UP: 2.5})), None, "2.5"),
    "bool_rank": (_ranks(lambda r: r.update({UP: True})), None, "True"),
    "rank_beyond_shape": (_ranks(lambda r: r.update({UP: 10**6})), None, "1000000"),
    "missing_module": (_ranks(lambda r: r.update({"model.layers.9.mlp.up_proj": 4})), None,
                       "model.layers.9"),
    "not_a_linear": (_ranks(lambda r: r.update({"model.norm": 4})), None, "not a Linear"),
    "wrong_shape": (None, lambda sd: sd.update({f"{UP}.down.weight": torch.zeros(5, 5)}), "(5, 5)"),
    "extra_tensor": (None, lambda sd: sd.update({"evil.weight": torch.zeros(2)}), "evil.weight"),
    "missing_tensor": (None, lambda sd: sd.pop("model.norm.weight"), "model.norm.weight"),
    "tied_to_wrong_shape": (_set("tied", json.dumps({"lm_head.weight": "model.norm.weight"})),
                            lambda sd: sd.pop("lm_head.weight"), "lm_head.weight"),
    "huge_vocab_256_tib": (_cfg(vocab_size=2**40), None, "shape"),
    "a_billion_layers": (_cfg(num_hidden_layers=10**9), None, "num_hidden_layers"),
    "deep_json_config": (_set("hf_config", "[" * 200_000 + "]" * 200_000), None, "nested"),
    "huge_json_config": (_set("hf_config", json.dumps("a" * (17 * 2**20))), None, "larger"),
    "bad_dtype": (_cfg(dtype="save"), None, "dtype"),
    "key_shadows_a_method": (_cfg(to_dict=1), None, "to_dict"),
    "unknown_model_type": (_cfg(model_type="evil"), None, "evil"),
    "hidden_size_text": (_cfg(hidden_size="abc"), None, "config"),
    "negative_hidden_size": (_cfg(hidden_size=-5), None, "config"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_tampered_save_is_one_line_naming_the_file(case, template, tmp_path):
    meta, tensors, needle = REFUSED[case]
    folder = tamper(copy_save(template, tmp_path / "s"), meta=meta, tensors=tensors)
    with pytest.raises(EigenscopeError) as err:
        eigenscope.load(folder)
    msg = str(err.value)
    assert "\n" not in msg and "model.safetensors" in msg and needle in msg, msg


@pytest.mark.parametrize("case", ["negative_rank", "deep_json_config", "missing_module"])
def test_tampered_save_through_the_cli_is_exit_2(case, template, tmp_path):
    meta, tensors, needle = REFUSED[case]
    folder = tamper(copy_save(template, tmp_path / "s"), meta=meta, tensors=tensors)
    assert_user_error(*run_cli("evaluate", folder, "--max-tokens", 64, "--seq-len", 16)[::2],
                      "model.safetensors", needle)


def test_auto_map_never_runs_the_code_it_names(template, tmp_path):
    marker = tmp_path / "ran.txt"
    code = _evil_code(tmp_path / "evil", marker)
    folder = tamper(copy_save(template, tmp_path / "s"), meta=_auto_map(code))
    with pytest.raises(EigenscopeError, match="EvilModel"):
        eigenscope.load(folder)
    # the same auto_map beside an allowed class: dropped, the library's own class is built
    folder2 = tamper(copy_save(template, tmp_path / "s2"), meta=_auto_map(code, "LlamaForCausalLM"))
    model = eigenscope.load(folder2)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not marker.exists()


def test_kernel_and_remote_keys_are_dropped(template, tmp_path):
    folder = tamper(copy_save(template, tmp_path / "s"),
                    meta=_cfg(_attn_implementation="kernels-community/evil",
                              attn_implementation="kernels-community/evil", trust_remote_code=True))
    model = eigenscope.load(folder)
    assert "kernels" not in str(model.config._attn_implementation)


def test_a_tied_alias_of_the_right_shape_loads(template, tmp_path):
    """The checks refuse only what is wrong: a head stored once as the embedding is fine."""
    folder = tamper(copy_save(template, tmp_path / "s"),
                    meta=_set("tied", json.dumps({"lm_head.weight": "model.embed_tokens.weight"})),
                    tensors=lambda sd: sd.pop("lm_head.weight"))
    model = eigenscope.load(folder)
    sd, _ = read_save(folder)
    assert torch.equal(model.lm_head.weight, sd["model.embed_tokens.weight"])


def test_the_untampered_save_still_loads(template, tmp_path):
    model = eigenscope.load(copy_save(template, tmp_path / "s"))
    ids = torch.randint(0, 64, (1, 8))
    assert torch.isfinite(model(ids).logits).all()


def test_a_skeleton_given_by_the_caller_is_checked_too(template, tmp_path):
    from torch import nn

    folder = copy_save(template, tmp_path / "s")
    with pytest.raises(EigenscopeError, match="does not have"):
        eigenscope.load(folder, model=nn.Sequential(nn.Linear(4, 4)))
