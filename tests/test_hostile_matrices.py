"""Class 3 (one bad matrix takes others down): extreme scales neither overflow nor underflow the
Gram matrix, a failing eigenvalue problem falls back per matrix, and a matrix that fails every
way gets the status "failed" and a warning of its own while its batch-mates are untouched."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import eigenscope
from eigenscope.analysis.schema import STATUSES
from eigenscope.maths import spectrum
from eigenscope.maths.spectrum import eigvals_checked

M, N = 24, 40


def _reference(W: torch.Tensor) -> np.ndarray:
    """Independent answer: float64 SVD of the float64 matrix, squared, ascending."""
    return torch.linalg.svdvals(W.double()).flip(-1).square().numpy()


def _model(mats) -> nn.Module:
    """Same-shape Linears (one analysis batch) with the given weights."""
    net = nn.Sequential(*[nn.Linear(N, M, bias=False) for _ in mats])
    with torch.no_grad():
        for lin, W in zip(net, mats):
            lin.weight.copy_(W)
    return net


def _good(seed):
    return torch.randn(M, N, generator=torch.Generator().manual_seed(seed))


def _spike(W):
    W = W.clone()
    W[3, 4] = 1e30
    return W


# case -> matrix maker; each is analysed in one batch between two ordinary matrices
SCALES = {
    "one_entry_1e30": lambda: _spike(_good(1)),
    "all_1e30": lambda: _good(1) * 1e30,
    "all_1e-30": lambda: _good(1) * 1e-30,
    "denormal_1e-41": lambda: _good(1) * 1e-41,
    "mixed_1e-38_to_1e30": lambda: _good(1) * torch.logspace(-38, 30, N)[None, :],
}


@pytest.mark.parametrize("case", sorted(SCALES))
def test_extreme_scales_in_a_batch(case):
    odd = SCALES[case]()
    assert torch.isfinite(odd).all()
    mats = [_good(0), odd, _good(2)]
    lam, failed = eigvals_checked(torch.stack(mats))
    assert not failed.any()
    for W, got in zip(mats, lam.numpy()):
        want = _reference(W)
        # eigenvalues to 1e-5 of the largest (the float32 Gram's accuracy), at any scale
        assert np.all(np.abs(got - want) <= 1e-5 * want[-1]), case
    df = eigenscope.analyze(_model(mats), metrics="norms,powerlaw,mp")
    assert list(df["status"]) == ["ok", "ok", "ok"]
    for W, (_, row) in zip(mats, df.iterrows()):
        fro = float(torch.linalg.norm(W.double()))
        assert math.isclose(row["frobenius_norm"], fro, rel_tol=1e-5), (case, row["frobenius_norm"], fro)


@pytest.mark.parametrize("scale", [1e-30, 1e-41, 1e30])
def test_scale_free_metrics_do_not_change_with_scale(scale):
    """alpha, stable rank and MP spikes of c W equal those of W (they are scale-free)."""
    W = _good(3)
    df = eigenscope.analyze(_model([W, W * scale]), metrics="norms,powerlaw,mp")
    assert list(df["status"]) == ["ok", "ok"]
    for col in ("alpha", "stable_rank", "mp_spikes", "mp_softrank"):
        a, b = df[col]
        assert math.isclose(a, b, rel_tol=1e-4), (col, a, b)


def _poisoned_linalg(monkeypatch):
    """eigvalsh / svdvals fail for any matrix whose first row is zero (our marked matrix)."""
    eigvalsh, svdvals = torch.linalg.eigvalsh, torch.linalg.svdvals

    def bad_eigvalsh(G, *a, **k):
        if bool((G[..., 0, 0] == 0).any()):
            raise torch.linalg.LinAlgError("poisoned")
        return eigvalsh(G, *a, **k)

    def bad_svdvals(W, *a, **k):
        if bool((W[..., 0, :] == 0).all(-1).any()):
            raise torch.linalg.LinAlgError("poisoned")
        return svdvals(W, *a, **k)

    monkeypatch.setattr(torch.linalg, "eigvalsh", bad_eigvalsh)
    monkeypatch.setattr(torch.linalg, "svdvals", bad_svdvals)


def test_a_matrix_failing_every_way_gets_its_own_status(monkeypatch):
    marked = _good(1)
    marked[0] = 0.0
    mats = [_good(0), marked, _good(2)]
    _poisoned_linalg(monkeypatch)
    lam, failed = eigvals_checked(torch.stack(mats))
    assert failed.tolist() == [False, True, False]
    for j in (0, 2):
        assert np.allclose(lam[j].numpy(), _reference(mats[j]), rtol=0, atol=1e-5 * _reference(mats[j])[-1])
    df = eigenscope.analyze(_model(mats), metrics="norms")
    assert list(df["status"]) == ["ok", "failed", "ok"]
    assert "failed" in STATUSES and "eigenvalues failed" in df.loc[1, "warning"]
    assert df.loc[1, ["frobenius_norm"]].isna().all() and df.loc[[0, 2], "frobenius_norm"].notna().all()


def test_fallback_to_float64_and_svd_per_matrix(monkeypatch):
    """The batched float32 call fails: each matrix is redone alone and still gets its values."""
    mats = torch.stack([_good(0), _good(1)])
    calls = []
    real = spectrum._solve

    def failing_batch(W, precision):
        calls.append(W.shape[0])
        if W.shape[0] > 1:
            raise torch.linalg.LinAlgError("batch failed")
        return real(W, precision)

    monkeypatch.setattr(spectrum, "_solve", failing_batch)
    lam, failed = eigvals_checked(mats)
    assert calls == [2, 1, 1] and not failed.any()
    for W, got in zip(mats, lam.numpy()):
        assert np.allclose(got, _reference(W), rtol=0, atol=1e-5 * _reference(W)[-1])
