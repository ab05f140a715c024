"""The activations report in headless Chromium: rows, the depth figure, a row's ESD on click.

Skipped where Chromium or its driver is absent. With EIGENSCOPE_SCREENSHOTS set, the screenshot
is written there (the README's docs/screenshots/activations-report.png comes from this test run
on SmolLM2: EIGENSCOPE_ACTIVATIONS_SOURCE=smollm2-135m)."""
import os
from pathlib import Path

import pytest
import torch

import eigenscope
from eigenscope.report.activations_view import build_activations_report

pytestmark = pytest.mark.browser


from test_report_browser import _wait, browser  # noqa: E402,F401  (the same Chromium fixture)


def _table():
    source = os.environ.get("EIGENSCOPE_ACTIVATIONS_SOURCE")
    if source:
        return eigenscope.activations(source, sites="all", layers=[0, 6, 12, 18, 24, 29],
                                      max_tokens=2048), source
    tf = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = tf.LlamaForCausalLM(tf.LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64,
                                               num_hidden_layers=3, num_attention_heads=4,
                                               num_key_value_heads=2)).eval()
    ids = torch.randint(0, 97, (16, 32), generator=torch.Generator().manual_seed(0))
    return eigenscope.activations(model, ids, sites="all"), "tiny llama"


def test_activations_page_rows_figure_and_esd(browser, tmp_path):  # noqa: F811 (fixture)
    from selenium.webdriver.common.by import By
    df, source = _table()
    out = tmp_path / "acts.html"
    build_activations_report(df, title=f"eigenscope activations: {source}", out=out, source=source)
    browser.get(out.as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr.row")
    assert [r.find_element(By.CSS_SELECTOR, "td").text for r in rows] == df["name"].tolist()
    _wait(browser, "const i=[...document.images]; return i.length>0 && i.every(x=>x.complete)")
    assert browser.execute_script("return [...document.images].every(x => x.naturalWidth > 0)")
    cards = browser.find_element(By.ID, "summary").text
    assert "median effective rank" in cards and "total mp spikes" in cards
    rows[-1].click()
    _wait(browser, "const i=document.querySelectorAll('tr.details img'); "
                   "return i.length===1 && i[0].complete && i[0].naturalWidth>0")
    assert "matrix_nuclear_norm" in browser.find_element(By.CSS_SELECTOR, "tr.details").text
    browser.find_element(By.ID, "filter").send_keys("site=mlp_hidden")
    shown = browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr.row")
    assert len(shown) == int((df["site"] == "mlp_hidden").sum())
    shots = os.environ.get("EIGENSCOPE_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        browser.find_element(By.ID, "filter").clear()
        browser.execute_script("document.getElementById('filter').dispatchEvent(new Event('input'))")
        rows = browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr.row")
        rows[min(3, len(rows) - 1)].click()   # the table was redrawn: open an early row
        _wait(browser, "const i=document.querySelectorAll('tr.details img'); "
                       "return i.length===1 && i[0].complete")
        browser.execute_script("window.scrollTo(0, 0); "
                               "document.querySelectorAll('.scroll').forEach(e => e.scrollLeft = 0)")
        browser.save_screenshot(str(Path(shots) / "activations-report.png"))
