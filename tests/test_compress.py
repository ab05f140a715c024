"""Low-rank compression on tiny in-file models: optimality, exactness, accounting, save/load."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import eigenscope
from eigenscope.compression.api import compress
from eigenscope.compression.io import load, save
from eigenscope.compression.methods import WhitenConfig
from eigenscope.compression.methods import names as method_names, resolve
from eigenscope.compression.registry import CallState, LayerStats, PairStats, register
from eigenscope.errors import EigenscopeError
from eigenscope.maths.lowrank import (compensated_target, pair_error, truncate_whiten, useful_rank,
                                      whitening_factor)
from eigenscope.nn.lowrank import LowRankLinear

V, D = 40, 24


class Block(nn.Module):
    """Several Linear shapes, with and without bias, GQA-like narrow k."""

    def __init__(self, d=D, h=40):
        super().__init__()
        self.q, self.k, self.o = nn.Linear(d, d), nn.Linear(d, 8, bias=False), nn.Linear(8, d)
        self.up, self.down = nn.Linear(d, h), nn.Linear(h, d)

    def forward(self, x):
        x = x + self.o(self.k(torch.tanh(self.q(x))))
        return x + self.down(torch.relu(self.up(x)))


class Toy(nn.Module):
    def __init__(self, blocks=2):
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.blocks = nn.ModuleList([Block() for _ in range(blocks)])
        self.head = nn.Linear(D, V)

    def forward(self, ids):
        x = self.emb(ids)
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def toy(seed=0):
    torch.manual_seed(seed)
    return Toy()


def ids(n=12, t=16, seed=1):
    return torch.randint(0, V, (n, t), generator=torch.Generator().manual_seed(seed))


def test_whiten_hits_the_optimum():
    """||(W - BA) X||_F^2 equals the independent optimum: tail of the SVD of W L (L L^T = X X^T)."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(30, 20, generator=g, dtype=torch.float64)
    X = torch.randn(20, 200, generator=g, dtype=torch.float64) * torch.logspace(0, -2, 20, dtype=torch.float64)[:, None]
    for r in (1, 5, 11):
        B, A, _ = truncate_whiten(W, X @ X.T, r)
        loss = ((W - B @ A) @ X).pow(2).sum()
        # independent reference: Cholesky is fine here (X full rank) and is a different route
        Lc = torch.linalg.cholesky(X @ X.T)
        t = torch.linalg.svdvals(W @ Lc)
        assert torch.allclose(loss, t[r:].pow(2).sum(), rtol=1e-6)
        # and no rank-r matrix beats it: the truncated SVD of W X itself (Eckart-Young) gives the same
        s = torch.linalg.svdvals(W @ X)
        assert torch.allclose(loss, s[r:].pow(2).sum(), rtol=1e-6)


def test_whitening_factor_singular_gram():
    """Rank-deficient G (fewer tokens than features): no Cholesky failure, L L^T = G."""
    X = torch.randn(16, 5, dtype=torch.float64)
    G = X @ X.T
    L = whitening_factor(G)
    assert torch.allclose(L @ L.T, G, atol=1e-10)
    W = torch.randn(9, 16, dtype=torch.float64)
    B, A, t = truncate_whiten(W, G, 3)
    assert torch.allclose(((W - B @ A) @ X).pow(2).sum(), t[3:].pow(2).sum(), rtol=1e-6, atol=1e-10)


def test_compensated_target_and_pair_error_match_direct_computation():
    """W* -> the least-squares map from compressed-stream inputs X_c to the original outputs W X_o;
    pair_error from Gram matrices equals ||W X_o - Wc X_c||^2 computed on the tokens."""
    g = torch.Generator().manual_seed(5)
    W = torch.randn(8, 6, generator=g, dtype=torch.float64)
    Xo = torch.randn(6, 300, generator=g, dtype=torch.float64)
    Xc = Xo + 0.3 * torch.randn(6, 300, generator=g, dtype=torch.float64)
    Ws = compensated_target(W, Xo @ Xc.T, Xc @ Xc.T, damp=0.0)
    ref = torch.linalg.lstsq(Xc.T, (W @ Xo).T).solution.T  # independent route: QR least squares
    assert torch.allclose(Ws, ref, atol=1e-9)
    Wc = torch.randn(8, 6, generator=g, dtype=torch.float64)
    direct = float((W @ Xo - Wc @ Xc).pow(2).sum())
    assert pair_error(W, Wc, Xo @ Xo.T, Xo @ Xc.T, Xc @ Xc.T) == pytest.approx(direct, rel=1e-10)


def _sequential_stats(W, Xo, Xc, Ho, Hc):
    return _stats(W, Xo, W.shape[0]).sequential(PairStats(
        g_oc=Xo @ Xc.T, g_cc=Xc @ Xc.T, h_oo=Ho @ Ho.T, h_oc=Ho @ Hc.T, h_cc=Hc @ Hc.T))


def test_sequential_whiten_blends():
    """Default blend (0,): plain whitening on the compressed stream's Gram. With candidates, the
    chosen blend is the one with the smallest error on the held-out pair."""
    g = torch.Generator().manual_seed(6)
    W = torch.randn(10, 8, generator=g, dtype=torch.float64)
    Xo, Ho = (torch.randn(8, n, generator=g, dtype=torch.float64) for n in (200, 100))
    Xc, Hc = Xo + 0.2 * torch.randn_like(Xo), Ho + 0.2 * torch.randn_like(Ho)
    cfg, h = resolve(WhitenConfig(output_fisher=False))
    B, A = h.factors(cfg, W, _sequential_stats(W, Xo, Xc, Ho, Hc), 3)
    B0, A0, _ = truncate_whiten(W, Xc @ Xc.T, 3)
    assert torch.allclose(B @ A, B0 @ A0, atol=1e-9)
    cfg, h = resolve(WhitenConfig(output_fisher=False, blend=(0.0, 0.5, 1.0)))
    st, state = _sequential_stats(W, Xo, Xc, Ho, Hc), CallState()
    B, A = h.factors(cfg, W, st, 3, layer="w", state=state)
    target = compensated_target(W, Xo @ Xc.T, Xc @ Xc.T, damp=cfg.damp)
    errs = {}
    for a in (0.0, 0.5, 1.0):
        Bt, At, _ = truncate_whiten(a * target + (1 - a) * W, Xc @ Xc.T, 3)
        errs[a] = float((W @ Ho - Bt @ At @ Hc).pow(2).sum())
    assert state.notes["w"]["blend"] == min(errs, key=errs.get)
    assert float((W @ Ho - B @ A @ Hc).pow(2).sum()) == pytest.approx(min(errs.values()), rel=1e-8)


def _stats(W, X, m):
    g = torch.Generator().manual_seed(3)
    return LayerStats(gram=(X @ X.T).double(), abssum=X.abs().sum(1).double(), tokens=X.shape[1],
                      fisher_w=torch.rand(m, W.shape[1], generator=g, dtype=torch.float64) + 0.1,
                      d_out=torch.rand(m, generator=g, dtype=torch.float64) + 0.5)


@pytest.mark.parametrize("method", method_names())
@pytest.mark.parametrize("shape", [(12, 7), (7, 12), (9, 9)])
def test_full_rank_reproduces_w(method, shape):
    """Every registered method, given every statistic, is exact at full rank."""
    m, n = shape
    W = torch.randn(m, n, dtype=torch.float64)
    X = torch.randn(n, 50, dtype=torch.float64)
    cfg, handler = resolve(method)
    cfg = handler.prepare(cfg, toy())
    B, A = handler.factors(cfg, W, _stats(W, X, m), min(m, n))
    assert torch.allclose(B @ A, W, atol=1e-9)
    s = handler.spectrum(cfg, W, _stats(W, X, m))
    assert s.shape == (min(m, n),) and bool((s[:-1] >= s[1:] - 1e-9).all())


@pytest.mark.parametrize("name", method_names())
def test_method_names_resolve_to_registered_handlers(name):
    cfg, handler = resolve(name)
    assert name.startswith(type(cfg).name) and hasattr(handler, "factors")
    for attr in ("needs", "prepare", "sequential", "loss_units", "spectrum", "factors"):
        assert callable(getattr(handler, attr)), attr


def test_registry_refuses_duplicates_and_unknown_names():
    with pytest.raises(EigenscopeError):
        resolve("nope")
    with pytest.raises(EigenscopeError, match="already registered"):
        register(WhitenConfig)(type("Again", (), {}))
    from dataclasses import dataclass
    from typing import ClassVar

    @dataclass(frozen=True)
    class Clash:
        name: ClassVar[str] = "svd"
    with pytest.raises(EigenscopeError, match="already registered"):
        register(Clash)(type("H", (), {}))
    assert resolve("whiten-fisher")[0] == WhitenConfig(output_fisher=True)


@pytest.mark.parametrize("method", ["svd", "asvd", "whiten", WhitenConfig(sequential=False)])
@pytest.mark.parametrize("allocation", ["uniform", "global", "knapsack"])
def test_plan_counts_match_the_model(method, allocation):
    model = toy()
    before = sum(p.numel() for p in model.parameters())
    model, plan = compress(model, ratio=0.3, method=method, allocation=allocation, calibration=ids(),
                           multiple=1, batch_size=4)
    after = sum(p.numel() for p in model.parameters())
    assert after == before - plan.params_before.sum() + plan.params_after.sum()
    assert plan.attrs["model_params"] == after
    assert plan.attrs["removed_fraction"] >= 0.3 - 0.02  # ranks are integers: a little slack
    for _, row in plan.iterrows():
        mod = model.get_submodule(row.layer)
        if row["rank"] is pd_na():
            assert isinstance(mod, nn.Linear)
        else:
            assert isinstance(mod, LowRankLinear) and mod.rank == row["rank"]
            assert row["rank"] <= useful_rank(*row["shape"])


def pd_na():
    import pandas as pd
    return pd.NA


def test_global_beats_uniform_on_its_own_objective():
    """Greedy and exact knapsack never lose to uniform on the summed predicted loss."""
    res = {}
    for alloc in ("uniform", "global", "knapsack"):
        _, plan = compress(toy(), ratio=0.4, method=WhitenConfig(sequential=False), allocation=alloc,
                           calibration=ids(), multiple=1)
        res[alloc] = plan.predicted_loss.sum()
        assert plan.attrs["removed_fraction"] >= 0.4 - 0.02
    assert res["global"] <= res["uniform"] + 1e-12
    assert res["knapsack"] <= res["global"] * 1.05


def test_whiten_beats_svd_on_calibration_outputs():
    x = ids()
    ref = toy()(x)
    errs = {}
    for meth in ("svd", "whiten"):
        model, _ = compress(toy(), ratio=0.3, method=meth, allocation="uniform", calibration=x, multiple=1)
        errs[meth] = (model(x) - ref).pow(2).mean()
    assert errs["whiten"] < errs["svd"]


def test_save_load_bit_identical(tmp_path):
    model, plan = compress(toy(), ratio=0.3, calibration=ids(), multiple=1)
    path = save(model, tmp_path / "out", plan=plan)
    again = load(path, model=Toy())
    x = ids(3, 10, seed=5)
    assert torch.equal(model(x), again(x))
    assert not list(tmp_path.glob("**/*.tmp"))
    assert eigenscope.load is load and eigenscope.save is save


def test_save_load_hf_from_config(tmp_path):
    """A HF model (tiny Llama, GQA, tied embeddings) comes back from config + factors alone."""
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).eval()
    model, plan = compress(model, ratio=0.3, calibration=ids(8, 16), multiple=1)
    save(model, tmp_path / "m", plan=plan)
    # the default "whiten" weighs outputs by the loss gradient on a causal LM, not on the toy
    assert "output_fisher=True" in plan.attrs["method"]
    assert "output_fisher=False" in compress(toy(), ratio=0.3, calibration=ids())[1].attrs["method"]
    again = eigenscope.load(tmp_path / "m")
    x = ids(2, 12, seed=7)
    with torch.no_grad():
        assert torch.equal(model(x).logits, again(x).logits)
    assert again.lm_head.weight.data_ptr() == again.model.embed_tokens.weight.data_ptr()


def test_bad_inputs():
    for ratio in (0, 1, 1.5, -0.1, None):
        with pytest.raises(EigenscopeError, match="ratio"):
            compress(toy(), ratio=ratio, calibration=ids())
    with pytest.raises(EigenscopeError, match="impossible"):
        compress(toy(), allocation=100, method="svd")
    with pytest.raises(EigenscopeError, match="too short"):
        compress(toy(), ratio=0.3, calibration="two words", tokenizer=lambda t, **k: {"input_ids": [1, 2]})
    with pytest.raises(EigenscopeError, match="no layer to compress"):
        compress(nn.Sequential(nn.Embedding(5, 4), nn.ReLU()), ratio=0.3, method="svd")
    with pytest.raises(EigenscopeError, match="no layer to compress"):
        compress(toy(), ratio=0.3, method="svd", layers="nothing-matches")
    with pytest.raises(EigenscopeError, match="gradient statistics"):
        compress(toy(), ratio=0.3, method="fwsvd", calibration=ids())


def test_nan_gram_is_a_clear_error():
    model = toy()
    with torch.no_grad():
        model.emb.weight[3] = float("nan")
    with pytest.raises(EigenscopeError, match="NaN"):
        compress(model, ratio=0.3, method=WhitenConfig(sequential=False), calibration=ids())


def test_singular_gram_falls_back_gracefully():
    """All calibration tokens identical: G has rank 1; whiten still compresses, outputs finite."""
    model, plan = compress(toy(), ratio=0.3, calibration=torch.full((6, 8), 3), multiple=1)
    assert torch.isfinite(model(ids(2, 5))).all()


def test_gd_rank_allocation_is_the_analysis_column():
    """allocation="gd_rank" with plain SVD keeps exactly the analysis's gd_rank per matrix."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(60, 40), nn.ReLU(), nn.Linear(40, 50))
    with torch.no_grad():  # noise plus a planted rank-5 part: a threshold strictly inside
        for lin in (net[0], net[2]):
            m, n = lin.weight.shape
            lin.weight.copy_(0.1 * torch.randn(m, n) + torch.randn(m, 5) @ torch.randn(5, n) / 3)
    rows = eigenscope.analyze(net, metrics="mp").set_index("name")["gd_rank"]
    _, plan = compress(net, allocation="gd_rank", method="svd", multiple=1)
    for _, row in plan.iterrows():
        assert row["rank"] == rows[row.layer + ".weight"] == 5


def test_int_and_energy_ranks():
    model, plan = compress(toy(), allocation=4, method="svd")
    assert set(plan["rank"].dropna()) == {4}
    _, plan = compress(toy(), allocation=0.5, method="svd", multiple=1)
    assert plan["rank"].notna().any()
    _, plan = compress(toy(), allocation="gd_rank", method="svd", multiple=1)
    assert len(plan) == 10


def test_multiple_rounds_ranks():
    _, plan = compress(toy(), ratio=0.3, method="svd", allocation="global", multiple=4)
    assert (plan["rank"].dropna() % 4 == 0).all()
