"""Trajectories: `compare` walking a series (against the first or the previous step) and the
report of a table of several sources (metrics by step per role, what moved most, a selector)."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

import eigenscope
from eigenscope.cli import main
from eigenscope.engines import analyze_many
from eigenscope.errors import ArgumentError
from eigenscope.report import build_report
from eigenscope.report.trajectory import role_medians

from _fixtures_many import checkpoints, state

STEPS = [0, 50, 100]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    paths = checkpoints(root, STEPS)
    table = analyze_many(paths[::-1], metrics="norms,powerlaw,mp", out=root / "t.parquet")
    return paths, table, root / "t.parquet"


def _page_data(page: str) -> dict:
    text = re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S).group(1)
    return json.loads(text.replace("<\\/", "</"))


@pytest.mark.parametrize("against", ["first", "previous"])
def test_compare_walks_a_table_by_step(run, against):
    _, table, path = run
    frame = eigenscope.compare(path, against=against)
    assert frame.groupby("step").size().to_dict() == {50: 12, 100: 12}
    by_step = {s: g.set_index("name") for s, g in table.groupby("step")}
    for step, ref in ((50, 0), (100, 0 if against == "first" else 50)):
        rows = frame[frame["step"] == step].set_index("name")
        assert (rows["step_a"] == ref).all()
        expected = by_step[step]["alpha"] - by_step[ref]["alpha"]
        np.testing.assert_allclose(rows["d_alpha"], expected.loc[rows.index], rtol=0, atol=0)


def test_compare_walks_models_with_their_weight_change(run):
    paths, _, _ = run
    frame = eigenscope.compare(paths[:2], metrics="norms")        # steps read from the names
    assert set(frame["step"]) == {50} and set(frame["step_a"]) == {0}
    a, b = state(0), state(50)
    for name, got in frame.set_index("name")["rel_change"].items():
        want = float(np.linalg.norm(b[name] - a[name]) / np.linalg.norm(a[name]))
        assert got == pytest.approx(want, rel=1e-5, abs=1e-7), name
    with pytest.raises(ArgumentError, match="against"):
        eigenscope.compare(paths, against="last")
    with pytest.raises(ArgumentError, match="at least two"):
        eigenscope.compare(paths[:1])


def test_role_medians_by_step():
    df = pd.DataFrame({"source": ["a", "a", "a", "b", "b", "b"], "role": ["q", "q", "up"] * 2,
                       "status": ["ok", "ok", "ok", "ok", "failed", "ok"],
                       "alpha": [2.0, 4.0, 5.0, 7.0, 100.0, np.nan]})
    med = role_medians(df, {"values": {"a": 10, "b": 20}}, "alpha")
    assert med.loc[10, "q"] == 3.0 and med.loc[10, "up"] == 5.0
    assert med.loc[20, "q"] == 7.0 and np.isnan(med.loc[20, "up"])   # failed rows stay out


def test_report_of_a_table_of_several_sources(run, tmp_path):
    _, table, path = run
    out = tmp_path / "r.html"
    assert main(["report", str(path), "--out", str(out)]) == 0
    page = out.read_text()
    data = _page_data(page)
    assert data["kind"] == "trajectory" and 'select.id = "series"' in page
    assert [s["step"] for s in data["series"]] == STEPS and len(data["rows"]) == len(table)
    assert data["counts"]["sources"] == 3 and data["counts"]["last_step"] == 100
    assert len(data["figures"]) == 1 and data["figures"][0][1].startswith("data:image/png")
    moved = pd.DataFrame(data["moved"])
    first, last = (table[table["step"] == s].set_index("name") for s in (0, 100))
    expected = (last["alpha"] - first["alpha"]).abs().sort_values(ascending=False)
    assert moved["name"].tolist()[:5] == expected.index[:5].tolist()
    np.testing.assert_allclose(moved["d_alpha"].abs().to_numpy()[:5], expected.to_numpy()[:5],
                               rtol=1e-5)


def test_one_source_keeps_the_plain_report(run):
    _, table, _ = run
    one = table[table["step"] == 50]
    assert _page_data(build_report(one))["kind"] == "report"
