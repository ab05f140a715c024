"""SpectralMonitor against exact SVD metrics on small models; budget, hooks, JSONL, HF callback."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from eigenscope.maths.powerlaw import fit_powerlaw
from eigenscope.monitor import SpectralMonitor, top_singular


def _model(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 48), nn.ReLU(),
                        nn.Linear(48, 8))
    with torch.no_grad():                   # a few strong directions, as in trained weights
        for lin in net[::2]:
            m, n = lin.weight.shape
            spikes = torch.randn(m, 3) @ torch.randn(3, n) * (0.3 / n ** 0.5)
            lin.weight.add_(spikes)
    return net


def _train(net, opt, steps, after_step=None):
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(32, 64, generator=g)
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()
        if after_step:
            after_step()


def _exact(W, k):
    return torch.linalg.svdvals(W.detach().double())[:k]


@pytest.mark.parametrize("method", ["randomized", "exact"])
def test_metrics_match_exact(method, tmp_path):
    net = _model()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    path = tmp_path / "spec.jsonl"
    mon = SpectralMonitor(net, every=2, budget=None, method=method, top_k=4, path=path)
    mon.attach(opt)
    _train(net, opt, 6)
    df = mon.dataframe()
    assert sorted(set(df["step"])) == [2, 4, 6]
    assert set(df["name"]) == {"0.weight", "2.weight", "4.weight"}
    last = df[df["step"] == 6].set_index("name")
    for name, W in net.named_parameters():
        if W.ndim != 2:
            continue
        s = _exact(W, 4)
        row = last.loc[name]
        assert row["spectral_norm"] == pytest.approx(float(s[0]), rel=1e-4)
        np.testing.assert_allclose(row["top_sv"], s.numpy(), rtol=1e-3)
        fro2 = float(W.detach().double().pow(2).sum())
        assert row["stable_rank"] == pytest.approx(fro2 / float(s[0]) ** 2, rel=1e-3)
        lam = torch.linalg.svdvals(W.detach().double()).flip(0) ** 2
        ref = fit_powerlaw(lam.numpy())["alpha"]          # NaN for 8 eigenvalues (< min_tail)
        assert (math.isnan(ref) and math.isnan(row["alpha"])) or row["alpha"] == pytest.approx(
            ref, rel=1e-3)
    assert last["alpha"].notna().sum() == 2
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == len(df) == 9 and lines[-1]["step"] == 6


def test_top_singular_warm_start_converges():
    g = torch.Generator().manual_seed(0)
    # slowly decaying spectrum: hard for a cold start with few power iterations
    P = torch.linalg.qr(torch.randn(200, 100, generator=g))[0]
    Q = torch.linalg.qr(torch.randn(150, 100, generator=g))[0]
    s_true = torch.linspace(1.0, 0.5, 100)
    W = (P * s_true) @ Q.T
    V = None
    errs = []
    for _ in range(4):   # repeated calls refine the warm-started subspace
        s, V = top_singular(W, 5, V, niter=1, generator=g)
        errs.append(float((s - s_true[:5].double()).abs().max()))
    assert errs[-1] < errs[0] / 3 and errs[-1] < 0.02


def test_budget_skips_and_thins():
    net = _model(2)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    mon = SpectralMonitor(net, every=1, budget=1e-6, method="exact")
    _train(net, opt, 12, after_step=mon.step)
    # a tiny budget: almost every due measurement is skipped, none measures all matrices twice
    assert mon.skipped >= 9 and len(mon.rows) <= 3
    assert mon.overhead() < 0.05
    free = SpectralMonitor(net, every=1, budget=None)
    _train(net, opt, 3, after_step=free.step)
    assert free.skipped == 0 and len(free.rows) == 9


def test_budget_is_respected_roughly():
    net = _model(3)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    mon = SpectralMonitor(net, every=1, budget=0.2, method="randomized")

    def slow_step():
        torch.linalg.svdvals(torch.randn(120, 120))   # stands in for a slower training step
        mon.step()

    _train(net, opt, 15, after_step=slow_step)
    assert 0 < mon.overhead() < 0.3
    assert len(mon.rows) > 0
    df = mon.dataframe()
    # alpha is NaN when unaffordable, else a real fit
    assert df["alpha"].isna().any() or (df["alpha"] > 1).all()


def test_layers_and_metric_validation():
    net = _model()
    mon = SpectralMonitor(net, layers=r"^2\.", budget=None, every=1,
                          metrics=("spectral_norm",))
    mon.step()
    df = mon.dataframe()
    assert list(df["name"]) == ["2.weight"] and "alpha" not in df
    with pytest.raises(ValueError):
        SpectralMonitor(net, metrics=("nope",))


def test_trainer_callback():
    pytest.importorskip("transformers")
    from transformers import TrainerCallback, TrainerControl, TrainerState
    net = _model()
    mon = SpectralMonitor(net, every=2, budget=None, metrics=("spectral_norm",))
    cb = mon.as_trainer_callback()
    assert isinstance(cb, TrainerCallback)
    state, control = TrainerState(), TrainerControl()
    for step in range(1, 5):
        state.global_step = step + 100
        cb.on_step_end(None, state, control)
    assert sorted(set(mon.dataframe()["step"])) == [102, 104]
    assert not math.isnan(mon.dataframe()["spectral_norm"].iloc[0])
