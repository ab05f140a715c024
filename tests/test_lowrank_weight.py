"""LowRankLinear.weight: shape, dtype and device without the dense matrix; values refused."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from eigenscope.errors import EigenscopeError
from eigenscope.nn.lowrank import LowRankLinear
from eigenscope.nn.weight_view import WeightView


def _layer(rank=3, bias=True):
    torch.manual_seed(0)
    return LowRankLinear.from_linear(nn.Linear(8, 6, bias=bias), rank=rank)


def test_weight_has_the_dense_metadata_and_follows_the_factors():
    lr = _layer()
    w = lr.weight
    assert isinstance(w, torch.Tensor) and isinstance(w, WeightView)
    assert w.shape == (6, 8) and w.size() == torch.Size([6, 8]) and w.ndim == 2 and w.dim() == 2
    assert w.dtype == torch.float32 and w.device == lr.up.weight.device
    assert not w.requires_grad and not isinstance(w, nn.Parameter)
    lr.to(torch.float16)
    assert lr.weight.dtype == torch.float16
    assert lr.weight.shape == lr.dense_weight().shape


def test_weight_adds_no_parameter_and_no_state():
    lr = _layer()
    assert [n for n, _ in lr.named_parameters()] == ["down.weight", "up.weight", "up.bias"]
    assert list(lr.state_dict()) == ["down.weight", "up.weight", "up.bias"]
    clone = copy.deepcopy(lr)  # the view is made on access, never stored
    assert torch.equal(clone.dense_weight(), lr.dense_weight())


@pytest.mark.parametrize("use", [
    lambda w: w + 1,
    lambda w: w @ torch.ones(8),
    lambda w: torch.nn.functional.linear(torch.ones(2, 8), w),
    lambda w: w[0],
    lambda w: w.clone(),
    lambda w: w.to(torch.float16),
    lambda w: w.sum(),
    lambda w: w.data.normal_(),
    lambda w: w.numpy(),
])
def test_values_are_refused_with_one_clear_line(use):
    with pytest.raises(EigenscopeError, match=r"LowRankLinear\.weight \(6x8\) has no values"):
        use(_layer().weight)


def test_repr_needs_no_values():
    assert repr(_layer().weight).startswith("WeightView(shape=(6, 8), dtype=torch.float32")


class _ReadsWeightDtype(nn.Module):
    """T5's feed-forward pattern: cast the input to the output layer's weight dtype."""

    def __init__(self, wo):
        super().__init__()
        self.wo = wo

    def forward(self, x):
        if isinstance(self.wo.weight, torch.Tensor) and x.dtype != self.wo.weight.dtype:
            x = x.to(self.wo.weight.dtype)
        return self.wo(x) + self.wo.weight.shape[0]


def test_model_code_reading_weight_dtype_runs_and_casts():
    m = _ReadsWeightDtype(_layer())
    x = torch.randn(4, 8, dtype=torch.float64)
    expected = x.float() @ m.wo.dense_weight().T + m.wo.up.bias + 6
    torch.testing.assert_close(m(x), expected)


def test_torch_compile_fullgraph_reads_the_metadata():
    m = _ReadsWeightDtype(_layer())
    x = torch.randn(4, 8, dtype=torch.float64)
    compiled = torch.compile(m, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), m(x))


def test_t5_runs_with_low_rank_feed_forward_outputs():
    """T5 reads `self.wo.weight.dtype`; full-rank factors must give the dense model's output."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_layers=2,
                                num_heads=4, decoder_start_token_id=0)
    model = transformers.T5ForConditionalGeneration(cfg).eval()
    ids = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        before = model(input_ids=ids, decoder_input_ids=ids).logits
        for stack in (model.encoder, model.decoder):
            for block in stack.block:
                ff = block.layer[-1].DenseReluDense
                ff.wo = LowRankLinear.from_linear(ff.wo)  # full rank: exact
        after = model(input_ids=ids, decoder_input_ids=ids).logits
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
