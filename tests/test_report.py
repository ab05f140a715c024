"""Plots, the HTML report and the comparison of two checkpoints, on tiny in-file models."""
import base64
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import eigenscope
import eigenscope.plot as ep
from eigenscope.analysis.tables import write_table
from eigenscope.nn.lowrank import LowRankLinear
from eigenscope import compare
from eigenscope.report import build_report, report_from_source
from eigenscope.report.build import compact_spectrum


class Block(nn.Module):
    def __init__(self, d=32, h=64):
        super().__init__()
        self.q_proj, self.up_proj, self.down_proj = nn.Linear(d, d), nn.Linear(d, h), nn.Linear(h, d)


class Tiny(nn.Module):
    def __init__(self, n=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.layers = nn.ModuleList(Block() for _ in range(n))


@pytest.fixture(scope="module")
def tiny():
    return Tiny()


@pytest.fixture(scope="module")
def analysis(tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp("an") / "spectra.safetensors"
    df = eigenscope.analyze(tiny, save_spectra=path)
    return df, path


def page_data(page: str) -> dict:
    text = re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S).group(1)
    return json.loads(text.replace("<\\/", "</"))


def _png_ok(uri: str) -> bool:
    raw = base64.b64decode(uri.split(",", 1)[1])
    return raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 500


# ---------- plots ----------
PLOT_CASES = [("esd", ep.esd), ("tail", ep.tail)]


@pytest.mark.parametrize("name,fn", PLOT_CASES)
def test_layer_plots_from_matrix_row_and_name(name, fn, tiny, analysis):
    from matplotlib.figure import Figure
    df, spectra = analysis
    row = df.iloc[0]
    for fig in (fn(torch.randn(30, 50)), fn(row, spectra=spectra), fn(row["name"], source=tiny)):
        assert isinstance(fig, Figure) and fig.axes and fig.axes[0].get_xscale() == "log"


def test_esd_mp_fit_of_gaussian_matches_variance():
    """The fitted MP sigma drawn on the ESD of a Gaussian (variance 0.25) matrix is about 0.5."""
    from eigenscope.plot.layer import fitted
    W = 0.5 * torch.randn(300, 600, generator=torch.Generator().manual_seed(0))
    sv = torch.linalg.svdvals(W).numpy()
    assert fitted(sv, 300, 600)["mp_sigma"] == pytest.approx(0.5, rel=0.05)


def test_model_figures_and_summary_html(analysis):
    from matplotlib.figure import Figure
    from eigenscope.analysis.spectra_io import load_spectra
    df, path = analysis
    sv = load_spectra(path)[1]
    assert isinstance(ep.metrics_by_block(df), Figure)
    assert isinstance(ep.sv_curves(df, sv), Figure)
    s = ep.Summary(df, sv, title="tiny")
    html = s._repr_html_()
    assert f"<td>{len(df)}</td>" in html and "<svg" in html
    assert s.counts["matrices"] == len(df)


def test_compact_spectrum_rebuilds_the_counts():
    """count(s >= x) read off the compact copy is exact at the kept points and within one
    spacing (M / kept points) anywhere else."""
    s = np.sort(np.random.default_rng(0).gamma(2.0, size=1000))[::-1]
    c = compact_spectrum(s, points=128)
    assert c["M"] == 1000 and len(c["s"]) <= 128 and c["i"][:32] == list(range(32))
    kept = np.array(c["s"])
    assert np.allclose(kept, s[c["i"]], rtol=1e-3)
    xs = np.quantile(s, np.linspace(0.01, 0.99, 50))
    true = np.array([(s >= x).sum() for x in xs])
    approx = np.interp(-xs, -kept, np.array(c["i"]) + 1)   # kept is descending
    assert np.abs(approx - true).max() <= 1000 / (128 - 32) + 1


# ---------- report ----------
def test_report_is_self_contained_and_complete(analysis, tmp_path):
    df, spectra = analysis
    out = tmp_path / "r.html"
    page = build_report(df, spectra, title="tiny <model>", out=out, plots="all")
    assert out.read_text(encoding="utf-8") == page
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page)   # nothing fetched
    assert "<link" not in page and "{{" not in page
    data = page_data(page)
    assert [r["name"] for r in data["rows"]] == df["name"].tolist()
    assert set(data["images"]) == set(df["name"])                      # plots="all"
    assert all(_png_ok(u) for pair in data["images"].values() for u in pair)
    assert all(_png_ok(u) for _, u in data["figures"])
    assert data["counts"]["matrices"] == len(df)
    assert "tiny &lt;model&gt;" in page


def test_report_from_saved_tables(analysis, tmp_path):
    df, _ = analysis
    for suffix in ("csv", "json"):
        src = tmp_path / f"a.{suffix}"
        write_table(df, src)
        out = report_from_source(src, tmp_path / f"{suffix}.html")
        data = page_data(out.read_text(encoding="utf-8"))
        assert len(data["rows"]) == len(df) and data["spectra"] == {}


def test_flagged_rows_only_get_images_by_default(analysis):
    df, spectra = analysis
    df = df.copy()
    df.loc[0, "alpha"] = 9.0       # under-trained by the 2..6 band
    df.loc[1, "alpha"] = 4.0
    data = page_data(build_report(df, spectra))
    assert df.loc[0, "name"] in data["images"] and df.loc[1, "name"] not in data["images"]
    assert set(data["spectra"]) == set(df["name"])      # every row can still be drawn


def test_report_of_a_200_block_model_stays_small(tmp_path):
    """Thousands of matrices: images only for (at most MAX_IMAGES) flagged rows, compact spectra."""
    from eigenscope.plot.summary import flags
    from eigenscope.report.build import MAX_IMAGES, pick_rows
    rng = np.random.default_rng(1)
    n = 2800
    names = [f"layers.{i // 14}.m{i % 14}.weight" for i in range(n)]
    df = pd.DataFrame(dict(name=names, block=[i // 14 for i in range(n)], role="other",
                           rows=256, cols=1024, shape="256x1024", status="ok",
                           alpha=rng.uniform(1.5, 7.0, n), xmin=1.0, n_tail=40, mp_sigma=0.05,
                           mp_edge=0.005, stable_rank=rng.uniform(5, 50, n)))
    spectra = {nm: np.sort(rng.gamma(2.0, size=256))[::-1] for nm in names}
    picked = pick_rows(df, flags(df), "flagged", MAX_IMAGES)
    assert len(picked) == MAX_IMAGES                          # ~40 % of the rows are flagged
    worst = df.set_index("name").loc[picked, "alpha"]
    assert ((worst < 1.7) | (worst > 6.5)).all()              # the most extreme alphas first
    # the page size is set by the table and the compact spectra; 20 images stand for the cap
    page = build_report(df, spectra, out=tmp_path / "big.html", max_images=20)
    data = page_data(page)
    assert len(data["rows"]) == n and len(data["images"]) == 20 and len(data["spectra"]) == n
    assert len(page.encode()) < 20 * 2**20


# ---------- compare ----------
def test_compare_deltas_subspaces_and_one_sided(tiny, tmp_path):
    b = Tiny()
    b.load_state_dict(tiny.state_dict())
    with torch.no_grad():
        b.layers[1].up_proj.weight.mul_(3.0)         # scaled: same subspaces, known deltas
    b.extra = nn.Linear(32, 32)                       # only in B
    frame = compare(tiny, b, k=4, out=tmp_path / "c.html")
    assert frame.attrs["only_b"] == ["extra.weight"] and frame.attrs["only_a"] == []
    row = frame.set_index("name").loc["layers.1.up_proj.weight"]
    W = tiny.layers[1].up_proj.weight.detach()
    s1 = float(torch.linalg.matrix_norm(W, 2))
    assert row["d_spectral_norm"] == pytest.approx(2 * s1, rel=1e-4)
    assert row["rel_change"] == pytest.approx(2.0, rel=1e-5)
    assert row["overlap_left"] == pytest.approx(1.0, abs=1e-5)
    assert row["d_alpha"] == pytest.approx(0.0, abs=1e-6)          # alpha is scale-free
    others = frame[frame["name"] != "layers.1.up_proj.weight"]
    assert (others["rel_change"] == 0).all() and np.allclose(others["overlap_left"], 1, atol=1e-5)
    data = page_data((tmp_path / "c.html").read_text(encoding="utf-8"))
    assert data["kind"] == "compare" and data["only_b"] == ["extra.weight"]
    assert data["moved"][0] == "layers.1.up_proj.weight"
    assert all(_png_ok(u) for imgs in data["images"].values() for u in imgs)


def test_compare_matches_low_rank_factors_to_the_dense_original(tiny):
    """A compressed model's up @ down is compared with the original matrix of the same name."""
    import copy
    c = copy.deepcopy(tiny)
    c.layers[0].up_proj = LowRankLinear.from_linear(tiny.layers[0].up_proj, rank=8)
    frame = compare(tiny, c, k=4)
    assert frame.attrs["only_a"] == [] and frame.attrs["only_b"] == []
    row = frame.set_index("name").loc["layers.0.up_proj.weight"]
    W = tiny.layers[0].up_proj.weight.detach().double()
    s = torch.linalg.svdvals(W)
    assert row["rel_change"] == pytest.approx(float(s[8:].norm() / s.norm()), rel=1e-3)
    assert row["overlap_left"] == pytest.approx(1.0, abs=1e-4)    # top-4 kept by the rank-8 SVD
    assert isinstance(c.layers[0].up_proj, LowRankLinear)         # the caller's model is untouched


def test_compare_saved_tables_has_no_subspaces(analysis, tmp_path):
    df, _ = analysis
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_table(df, a)
    write_table(df.iloc[1:], b)
    frame = compare(a, b)
    assert frame.attrs["only_a"] == [df["name"].iloc[0]]
    assert frame["rel_change"].isna().all() and (frame["d_alpha"].fillna(0) == 0).all()
