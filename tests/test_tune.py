"""singular_values_ / merge_: exact wrap, only s trainable, merge restores the module types."""
import pytest
import torch
from torch import nn

from eigenscope.nn.lowrank import LowRankLinear
from eigenscope.tune import SVLinear, merge_, singular_values_


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(30, 16)
        self.fc = nn.Linear(16, 24)
        self.low = LowRankLinear.from_linear(nn.Linear(24, 20), rank=6)
        self.mid = nn.Linear(20, 12, bias=False)
        self.lm_head = nn.Linear(12, 30)

    def forward(self, idx):
        h = torch.tanh(self.fc(self.embed_tokens(idx)))
        return self.lm_head(self.mid(torch.tanh(self.low(h))))


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 30, (16, 6), generator=g)


@pytest.mark.parametrize("k", [0, 3])
def test_wrap_is_exact_and_freezes(k):
    torch.manual_seed(0)
    net, idx = Net(), _data()
    ref = net(idx).detach()
    names = singular_values_(net, top_k_couplings=k)
    assert names == ["fc", "low", "mid"]
    assert isinstance(net.low, SVLinear) and net.low.rank == 6 and net.fc.rank == 16
    assert torch.allclose(net(idx), ref, atol=1e-5)
    trainable = {n: p.numel() for n, p in net.named_parameters() if p.requires_grad}
    expect = {"fc.s": 16, "low.s": 6, "mid.s": 12}
    if k:
        expect |= {"fc.couplings": 9, "low.couplings": 9, "mid.couplings": 9}
    assert trainable == expect
    # the wrapped factors are the SVD: U, V orthonormal, s descending, U diag(s) V^T = W
    W = net.low.dense_weight().double()
    assert torch.allclose(torch.linalg.svdvals(W)[:6], net.low.s.double(), rtol=1e-5)
    eye = torch.eye(6, dtype=torch.float32)
    assert torch.allclose(net.low.U.T @ net.low.U, eye, atol=1e-5)


def test_layers_regex_and_type_errors():
    net = Net()
    assert singular_values_(net, layers=r"^(fc|lm_head)$") == ["fc", "lm_head"]
    assert isinstance(net.low, LowRankLinear)


def test_training_then_merge_matches():
    torch.manual_seed(1)
    net, idx = Net(), _data()
    target = _data(1)
    singular_values_(net, top_k_couplings=2)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=5e-2)
    frozen = {n: p.detach().clone() for n, p in net.named_parameters() if not p.requires_grad}

    def loss():
        return nn.functional.cross_entropy(net(idx).reshape(-1, 30), target.reshape(-1))

    first = loss().item()
    for _ in range(30):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < first - 0.1
    assert net.low.couplings.abs().sum() > 0
    for n, p in net.named_parameters():              # frozen really frozen
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    before = net(idx).detach()
    assert merge_(net) == ["fc", "low", "mid"]
    assert type(net.fc) is nn.Linear and type(net.mid) is nn.Linear
    assert isinstance(net.low, LowRankLinear) and net.low.rank == 6
    assert torch.allclose(net(idx), before, atol=1e-5)
    # merged dense weight equals the SVLinear's product
    assert net.mid.bias is None and net.fc.weight.requires_grad


def test_wrap_dtype_and_exact_on_wide_and_tall():
    for m, n in [(7, 19), (19, 7)]:
        lin = nn.Linear(n, m).double()
        x = torch.randn(5, n, dtype=torch.float64)
        model = nn.Sequential(lin)
        y = model(x)
        singular_values_(model)
        assert model[0].U.dtype == torch.float64
        assert torch.allclose(model(x), y, atol=1e-12)
        merge_(model)
        assert torch.allclose(model[0].weight, lin.weight, atol=1e-12)
