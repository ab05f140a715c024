"""Class 4 (a name can blank the report): whatever a tensor name holds, the page's embedded JSON
has no "<" (so it can neither end nor re-open its <script> element) and reads back exactly.
tests/test_report_browser.py opens such pages in headless Chromium."""
from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

import eigenscope
from eigenscope.report import build_report

HOSTILE = [
    "<!--<script>",
    "</script><script>document.title='pwned'</script>",
    "<img src=x onerror=alert(1)>",
    "a\u2028b\u2029c & d > e",
    "]]></script><!--",
]


def hostile_model() -> nn.Module:
    """A module whose matrices carry the hostile names (as a checkpoint's keys could)."""
    torch.manual_seed(0)
    net = nn.Module()
    for name in HOSTILE:
        net.add_module(name.replace(".", "_"), nn.Linear(16, 24, bias=False))
    return net


def hostile_frame():
    df = eigenscope.analyze(hostile_model(), metrics="norms,powerlaw")
    assert sorted(df["name"]) == sorted(f"{n.replace('.', '_')}.weight" for n in HOSTILE)
    assert (df["status"] == "ok").all()
    return df


def embedded_data(page: str) -> dict:
    m = re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S)
    assert m, "the data element is not closed where it should be"
    assert "<" not in m.group(1)
    return json.loads(m.group(1))


def test_report_json_has_no_angle_bracket_and_reads_back():
    df = hostile_frame()
    page = build_report(df, title="<!--<script> title")
    data = embedded_data(page)
    assert [r["name"] for r in data["rows"]] == df["name"].tolist()
    # exactly the template's own scripts: the data element and the page's code
    assert page.count("<script") == 2 and page.count("</script>") == 2


@pytest.mark.parametrize("side", ["a", "b"])
def test_compare_page_lists_hostile_one_sided_names(side, tmp_path):
    a, b = hostile_model(), hostile_model()
    extra = nn.Linear(16, 8)
    (a if side == "a" else b).add_module("<!--<script>x", extra)
    out = tmp_path / "c.html"
    eigenscope.compare(a, b, out=out, metrics="norms")
    data = embedded_data(out.read_text(encoding="utf-8"))
    assert data[f"only_{side}"] == ["<!--<script>x.weight"]
