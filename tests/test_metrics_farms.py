"""FARMS: window layout, equality with the plain fit for one window, no aspect-ratio drift."""
import numpy as np
import torch

from eigenscope.maths.farms import farms_alpha, farms_windows, window_corners, window_starts
from eigenscope.maths.powerlaw import fit_powerlaw
from eigenscope.maths.spectrum import eigvals


def test_window_layout_stride_half_and_flush_last():
    assert window_starts(576, 512) == [0, 64]                 # stride 256, last flush
    assert window_starts(1536, 512) == [0, 256, 512, 768, 1024]
    assert window_starts(256, 256) == [0]
    assert window_starts(300, 128) == [0, 64, 128, 172]
    # a 49152 x 576 embedding: 2 x 191 windows, capped at 64 by a seeded choice
    corners = window_corners(49152, 576, 512, max_windows=64, seed=0)
    assert len(corners) == 64 == len(set(corners))
    assert corners == window_corners(49152, 576, 512, max_windows=64, seed=0)
    assert corners != window_corners(49152, 576, 512, max_windows=64, seed=1)


def test_windows_are_the_submatrices():
    W = torch.arange(20 * 12, dtype=torch.float32).reshape(20, 12)
    wins = farms_windows(W, window=8, max_windows=64)          # side 8, stride 4: all 8
    assert wins.shape == (4 * 2, 8, 8)                         # rows 0,4,8,12; cols 0,4
    assert torch.equal(wins[-1], W[12:20, 4:12])


def test_one_window_equals_the_plain_fit():
    W = torch.randn(200, 200, generator=torch.Generator().manual_seed(0))
    # alpha is scale-free, so dividing by M' changes nothing when the window is W itself
    want = fit_powerlaw(eigvals(W, precision="float32").numpy())["alpha"]   # FARMS's precision
    assert np.isclose(farms_alpha(W)["farms_alpha"], want, rtol=1e-9, atol=0)


def test_no_aspect_ratio_drift_unlike_plain_alpha():
    """Gaussian matrices of aspect ratio 1 .. 16: median over 4 seeds of each alpha.

    A KS-fitted alpha of one Gaussian ESD is noisy (no real power law: single values range
    4-8 at 256 x 256), hence medians and 128-windows (9-64 of them per matrix). Measured:
    FARMS medians 4.9-7.4 (spread 2.5), plain 5.9-18.0 (spread 12). Bound: FARMS spread < 3.5,
    plain spread > 2x FARMS spread, plain alpha of the 1:16 matrix > FARMS's by > 5.
    """
    shapes = [(256, 256), (256, 1024), (1024, 256), (256, 2048), (256, 4096)]
    farms, plain = {}, {}
    for shape in shapes:
        fa, pa = [], []
        for seed in range(4):
            W = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
            fa.append(farms_alpha(W, window=128)["farms_alpha"])
            pa.append(fit_powerlaw(eigvals(W).numpy())["alpha"])
        farms[shape], plain[shape] = np.median(fa), np.median(pa)
    f, p = np.array(list(farms.values())), np.array(list(plain.values()))
    assert np.isfinite(f).all() and np.isfinite(p).all()
    assert np.ptp(f) < 3.5, farms
    assert np.ptp(p) > 2 * np.ptp(f), (farms, plain)
    assert plain[(256, 4096)] > farms[(256, 4096)] + 5, (farms, plain)


def test_degenerate_input_gives_nan():
    assert np.isnan(farms_alpha(torch.randn(1, 50))["farms_alpha"])
    assert np.isnan(farms_alpha(torch.zeros(64, 64))["farms_alpha"])
    bad = torch.randn(32, 32)
    bad[0, 0] = float("nan")
    assert np.isnan(farms_alpha(bad)["farms_alpha"])
