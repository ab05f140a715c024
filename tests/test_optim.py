"""SpectralClip, Muon and split_param_groups against direct computations."""
import copy

import pytest
import torch
from torch import nn

from eigenscope.nn.lowrank import LowRankLinear
from eigenscope.optim import Muon, SpectralClip, adjusted_lr, make_muon, split_param_groups


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 16)
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = LowRankLinear(32, 24, rank=8)
        self.norm = nn.LayerNorm(24)
        self.lm_head = nn.Linear(24, 20, bias=False)

    def forward(self, idx):
        return self.lm_head(self.norm(self.fc2(torch.relu(self.fc1(self.embed(idx))))))


def _loss(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 20, (8, 5), generator=g)
    out = model(idx)
    return nn.functional.cross_entropy(out.reshape(-1, 20), idx.roll(1, 1).reshape(-1))


def _grads(model, seed=0):
    model.zero_grad()
    _loss(model, seed).backward()


def test_split_param_groups():
    model = Tiny()
    mats, other = split_param_groups(model)
    assert mats["names"] == ["fc1.weight", "fc2.down.weight", "fc2.up.weight"]
    assert set(other["names"]) == {"embed.weight", "fc1.bias", "fc2.up.bias", "norm.weight",
                                   "norm.bias", "lm_head.weight"}
    # tied head: listed once, and not as a matrix
    model.lm_head = nn.Linear(16, 20, bias=False)
    model.lm_head.weight = model.embed.weight
    mats, other = split_param_groups(model)
    assert "lm_head.weight" not in mats["names"] + other["names"]
    assert all(p.ndim == 2 for p in mats["params"])


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_spectral_clip_replaces_update(mode):
    torch.manual_seed(0)
    model, ref = Tiny(), None
    ref = copy.deepcopy(model)
    c = 2e-3
    opt = SpectralClip(torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1),
                       c=c, mode=mode)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.1)
    calls = []
    opt.register_step_post_hook(lambda o, a, k: calls.append(o))
    for seed in range(3):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        ref.load_state_dict(model.state_dict())
        ref_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # no shared buffers
        _grads(model, seed)
        _grads(ref, seed)
        opt.step()
        ref_opt.step()
        for (n, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
            U_base = q.detach() - before[n]                 # the base optimiser's own update
            U = p.detach() - before[n]
            if p.ndim != 2:                                 # 1-D untouched
                assert torch.equal(p, q)
                continue
            P, S, Qh = torch.linalg.svd(U_base.double(), full_matrices=False)
            S2 = S / (1 + S ** 2 / c ** 2).sqrt() if mode == "soft" else S.clamp_max(c)
            expect = (P * S2) @ Qh
            assert torch.allclose(U.double(), expect, atol=1e-6 * max(1, c)), n
            assert torch.linalg.matrix_norm(U.double(), ord=2) <= c * (1 + 1e-3)
            assert S.max() > c                              # the clip was active
    assert len(calls) == 3


def test_spectral_clip_pre_clip_and_large_c_is_noop():
    torch.manual_seed(1)
    model = Tiny()
    ref = copy.deepcopy(model)
    opt = SpectralClip(torch.optim.SGD(model.parameters(), lr=0.1), c=1e6, pre_clip=1e-3)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    _grads(model)
    _grads(ref)
    for p in ref.parameters():        # the expected pre-clip, by SVD
        if p.ndim == 2:
            P, S, Qh = torch.linalg.svd(p.grad.double(), full_matrices=False)
            p.grad.copy_((P * (S / (1 + S ** 2 / 1e-6).sqrt())) @ Qh)
    opt.step()
    ref_opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_muon_matches_torch_muon_one_step():
    if not hasattr(torch.optim, "Muon"):
        pytest.skip("torch.optim.Muon needs PyTorch >= 2.9")
    torch.manual_seed(2)
    model = Tiny()
    ref = copy.deepcopy(model)
    mats = split_param_groups(model)[0]["params"]
    ref_mats = split_param_groups(ref)[0]["params"]
    ours = Muon(mats, lr=0.02, weight_decay=0.1, ns_dtype=torch.bfloat16)  # as torch's
    theirs = torch.optim.Muon(ref_mats, lr=0.02, weight_decay=0.1)
    for seed in range(2):                     # two steps: momentum buffers agree too
        with torch.no_grad():                 # same start each step: compare one update
            for p, q in zip(model.parameters(), ref.parameters()):
                q.copy_(p)
        _grads(model, seed)
        _grads(ref, seed)
        before = [p.detach().clone() for p in mats]
        ours.step()
        theirs.step()
        for p, q, b in zip(mats, ref_mats, before):
            # both orthogonalise in bf16, with a different order of roundings: the updates
            # agree to bf16 accuracy (measured 0.01-0.03 relative), while a convention
            # mismatch (lr scaling, momentum form, decay) would differ by O(1)
            d = (p - q).norm() / (p - b).norm()
            assert d < 5e-2, d


def test_muon_update_is_orthogonalised_and_scaled():
    torch.manual_seed(3)
    W = nn.Parameter(torch.randn(48, 24))
    W.grad = torch.randn(48, 24)
    before = W.detach().clone()
    opt = Muon([W], lr=0.1, momentum=0.0, nesterov=False, ns_dtype=torch.float32)
    opt.step()
    U = (before - W.detach()) / (0.1 * (48 / 24) ** 0.5)     # "original": sqrt(max(1, m/n))
    sv = torch.linalg.svdvals(U)
    assert sv.min() > 0.6 and sv.max() < 1.25
    P, _, Qh = torch.linalg.svd(W.grad, full_matrices=False)
    D = P.T @ U @ Qh.T
    assert (D - torch.diag(torch.diagonal(D))).norm() < 1e-4 * D.norm()
    assert adjusted_lr(1.0, (10, 40), "match_rms_adamw") == pytest.approx(0.2 * 40 ** 0.5)


def test_muon_aol4_trains_and_make_muon():
    torch.manual_seed(4)
    model = Tiny()
    mats, other = split_param_groups(model)
    opts = [Muon([mats], lr=0.02, orthogonalizer="aol4"), torch.optim.AdamW([other], lr=1e-2)]
    first = _loss(model).item()
    for _ in range(20):
        for o in opts:
            o.zero_grad()
        _loss(model).backward()
        for o in opts:
            o.step()
    assert _loss(model).item() < first - 0.3
    assert isinstance(make_muon(mats["params"], orthogonalizer="aol4"), Muon)
    if hasattr(torch.optim, "Muon"):
        assert isinstance(make_muon(mats["params"]), torch.optim.Muon)
    with pytest.raises(ValueError):
        Muon(other["params"])
