"""`analyze` end to end on tiny in-file models: schema, bad tensors, reproducibility, spectra file."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import eigenscope
from eigenscope.analysis.schema import COLUMNS, METRIC_GROUPS


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed_tokens = nn.Embedding(120, 48)
        self.layers = nn.ModuleList(
            nn.ModuleDict({"q_proj": nn.Linear(48, 48), "up_proj": nn.Linear(48, 96),
                           "down_proj": nn.Linear(96, 48), "norm": nn.LayerNorm(48)})
            for _ in range(2))


@pytest.fixture(scope="module")
def tiny_df():
    return eigenscope.analyze(Tiny())


def test_one_row_per_matrix_with_identity(tiny_df):
    assert list(tiny_df.columns) == COLUMNS
    assert len(tiny_df) == 1 + 2 * 3  # embedding + 3 Linear per block; LayerNorm skipped
    q = tiny_df[tiny_df["name"] == "layers.1.q_proj.weight"].iloc[0]
    assert (q["block"], q["role"], q["rows"], q["cols"], q["numel"]) == (1, "q", 48, 48, 48 * 48)
    assert tiny_df.set_index("name").loc["embed_tokens.weight", "role"] == "embed"
    assert (tiny_df["status"] == "ok").all()


METRIC_CASES = [  # (metrics option, groups that must be filled)
    (None, set(METRIC_GROUPS)),
    ("norms", {"norms"}),
    (["powerlaw", "mp"], {"powerlaw", "mp"}),
    ("alpha", {"powerlaw"}),
    ("weibull,farms", {"weibull", "farms"}),
]


@pytest.mark.parametrize("metrics,groups", METRIC_CASES)
def test_schema_is_fixed_whatever_the_metrics(metrics, groups):
    df = eigenscope.analyze(Tiny(), metrics=metrics)
    assert list(df.columns) == COLUMNS
    for g, cols in METRIC_GROUPS.items():
        filled = df[cols].notna().any().any()
        assert filled == (g in groups), (g, metrics)


def test_spectral_norm_matches_svd(tiny_df):
    model = Tiny()
    W = model.layers[0].up_proj.weight.detach().double()
    s = torch.linalg.svdvals(W)
    row = tiny_df.set_index("name").loc["layers.0.up_proj.weight"]
    assert math.isclose(row["spectral_norm"], s[0].item(), rel_tol=1e-6)
    assert math.isclose(row["frobenius_norm"], s.norm().item(), rel_tol=1e-6)


def test_layer_filter_selects_rows():
    df = eigenscope.analyze(Tiny(), layers=r"down_proj", metrics="norms")
    assert df["name"].tolist() == ["layers.0.down_proj.weight", "layers.1.down_proj.weight"]


@pytest.mark.parametrize("fill,status", [(float("nan"), "nan_inf"), (float("inf"), "nan_inf"),
                                         (0.0, "zero")])
def test_bad_tensors_get_a_status_and_the_rest_goes_on(fill, status):
    model = Tiny()
    with torch.no_grad():
        if fill == 0.0:
            model.layers[0].q_proj.weight.zero_()
        else:
            model.layers[0].q_proj.weight[3, 5] = fill
    df = eigenscope.analyze(model).set_index("name")
    bad = df.loc["layers.0.q_proj.weight"]
    assert bad["status"] == status and bad["warning"]
    assert np.isnan(bad[METRIC_GROUPS["powerlaw"]].astype(float)).all()
    assert (df.drop(index="layers.0.q_proj.weight")["status"] == "ok").all()


def test_one_by_n_matrix_is_degenerate_with_norms_only():
    model = nn.Sequential(nn.Linear(30, 1), nn.Linear(1, 30))
    df = eigenscope.analyze(model).set_index("name")
    row = df.loc["0.weight"]
    assert row["status"] == "degenerate"
    assert math.isclose(row["spectral_norm"], model[0].weight.norm().item(), rel_tol=1e-6)
    assert np.isnan(row["alpha"])


def test_randomization_is_seeded_and_reproducible():
    a = eigenscope.analyze(Tiny(), metrics="randomize", seed=3)
    b = eigenscope.analyze(Tiny(), metrics="randomize", seed=3)
    pd.testing.assert_frame_equal(a, b)


def test_summary_skips_failed_fits(tiny_df):
    df = tiny_df.copy()
    df.loc[0, "alpha"] = np.nan
    df.loc[1, "status"] = "nan_inf"
    s = eigenscope.summary(df)
    good = df[df["status"] == "ok"]["alpha"].dropna()
    assert s["alpha_fitted"] == len(good)
    assert math.isclose(s["alpha_mean"], good.mean())


def test_save_spectra_round_trip(tmp_path, tiny_df):
    from eigenscope.analysis.spectra_io import load_spectra

    path = tmp_path / "spectra.safetensors"
    df = eigenscope.analyze(Tiny(), metrics="norms", save_spectra=path)
    rows, sv = load_spectra(path)
    assert rows["name"].tolist() == df["name"].tolist()
    W = Tiny().layers[1].down_proj.weight.detach().double()
    np.testing.assert_allclose(sv["layers.1.down_proj.weight"], torch.linalg.svdvals(W).numpy(),
                               rtol=1e-5)


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
def test_tables_round_trip(tmp_path, tiny_df, suffix):
    from eigenscope.analysis.tables import read_table, write_table

    path = write_table(tiny_df, tmp_path / f"rows{suffix}")
    back = read_table(path)
    assert back["name"].tolist() == tiny_df["name"].tolist()
    np.testing.assert_allclose(back["alpha"].astype(float), tiny_df["alpha"].astype(float))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_device_gives_the_cpu_rows(tiny_df):
    """Eigenvalue problems on the GPU, metrics on the CPU: the same rows up to float32 rounding."""
    gpu = eigenscope.analyze(Tiny(), device="cuda", metrics="norms,powerlaw,mp")
    for col in ("spectral_norm", "stable_rank", "alpha", "mp_sigma"):
        np.testing.assert_allclose(gpu[col], tiny_df[col], rtol=1e-4)


def test_metric_groups_are_the_maths_modules_declarations(monkeypatch):
    """Each group's columns are its maths module's COLUMNS; a group function that forgets a
    declared column is an error, never a silent all-NaN column."""
    from eigenscope.analysis import metrics, schema
    from eigenscope.maths import farms, mp, norms, powerlaw, randomize, weibull

    declared = [norms, powerlaw, mp, randomize, farms, weibull]
    assert [c for m in declared for c in m.COLUMNS] == schema.METRIC_COLUMNS
    assert set(metrics.GROUP_FUNCS) == set(schema.METRIC_GROUPS)
    monkeypatch.setitem(metrics.GROUP_FUNCS, "norms", lambda *a: {"spectral_norm": 1.0})
    with pytest.raises(RuntimeError, match="frobenius_norm"):
        eigenscope.analyze(torch.nn.Linear(20, 10), metrics="norms")
