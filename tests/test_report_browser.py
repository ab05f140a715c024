"""The report in a real browser (headless Chromium through Selenium): rows, images, a click.

Skipped, with the reason, where Chromium or its driver is absent. The screenshot is kept as a
test artifact in $EIGENSCOPE_ARTIFACTS (default: the test's temporary folder).
"""
import os
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import eigenscope
from eigenscope import compare
from eigenscope.report import build_report

pytestmark = pytest.mark.browser
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--window-size=1400,1600"]


def _binary(*names):
    return next((p for p in map(shutil.which, names) if p), None)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    chrome, driver = _binary("chromium", "chromium-browser"), _binary("chromedriver")
    if not (chrome and driver):
        pytest.skip("headless Chromium not found (Debian packages chromium and chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for f in FLAGS:
        opts.add_argument(f)
    # an explicit driver path: Selenium Manager would otherwise try the network
    d = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=opts)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    path = Path(os.environ.get("EIGENSCOPE_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _model(seed):
    torch.manual_seed(seed)
    return nn.Sequential(*[nn.Sequential(nn.Linear(48, 96), nn.ReLU(), nn.Linear(96, 48))
                           for _ in range(3)])


def _wait(d, script, timeout=10.0):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(d, timeout).until(lambda drv: drv.execute_script(script))


def test_report_rows_images_and_click(browser, tmp_path, artifacts):
    from selenium.webdriver.common.by import By
    model = _model(0)
    spectra = tmp_path / "s.safetensors"
    df = eigenscope.analyze(model, save_spectra=spectra)
    df.loc[0, "alpha"] = 9.0                    # flagged: gets embedded PNGs
    out = tmp_path / "report.html"
    build_report(df, spectra, out=out)
    browser.get(out.as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr.row")
    assert [r.find_element(By.CSS_SELECTOR, "td").text for r in rows] == df["name"].tolist()
    # every image (model figures) has decoded: naturalWidth > 0 once complete
    imgs = _wait(browser, "const i=[...document.images]; return i.every(x=>x.complete) && i")
    assert len(imgs) >= 2
    assert browser.execute_script("return [...document.images].every(x => x.naturalWidth > 0)")
    # a flagged row opens with its embedded plots; a plain row with plots drawn in the page
    rows[0].click()
    _wait(browser, "return document.querySelectorAll('tr.details img').length === 2")
    assert browser.execute_script(
        "return [...document.querySelectorAll('tr.details img')].every(x => x.naturalWidth > 0)")
    rows[1].click()
    _wait(browser, "return document.querySelectorAll('tr.details svg.plot').length === 2")
    text = browser.find_elements(By.CSS_SELECTOR, "tr.details")[-1].text
    assert df["name"].iloc[1] in text and "stable_rank" in text
    # sorting and filtering act on the table
    browser.find_element(By.ID, "filter").send_keys("alpha>8")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr.row")) == 1
    browser.find_element(By.ID, "filter").clear()
    browser.execute_script("document.getElementById('filter').dispatchEvent(new Event('input'))")
    browser.save_screenshot(str(artifacts / "report.png"))
    assert (artifacts / "report.png").stat().st_size > 10_000


def test_compare_page_lists_one_sided_and_opens_rows(browser, tmp_path, artifacts):
    from selenium.webdriver.common.by import By
    a, b = _model(0), _model(0)
    with torch.no_grad():
        b[1][0].weight.add_(0.5 * torch.randn_like(b[1][0].weight))
    b.append(nn.Linear(48, 10))
    out = tmp_path / "compare.html"
    frame = compare(a, b, out=out)
    browser.get(out.as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr.row")
    assert len(rows) == len(frame) == 6
    assert "3.weight" in browser.find_element(By.ID, "onesided").text
    assert frame.attrs["only_b"] == ["3.weight"]
    moved = "1.0.weight"
    assert moved in frame.attrs.get("moved", [moved])
    target = next(r for r in rows if r.find_element(By.CSS_SELECTOR, "td").text == moved)
    target.click()
    _wait(browser, "const i=document.querySelectorAll('tr.details img'); return i.length>0 && [...i].every(x=>x.complete && x.naturalWidth>0)")
    browser.save_screenshot(str(artifacts / "compare.png"))


def test_trajectory_page_selector_and_moved_rows(browser, tmp_path, artifacts):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from _fixtures_many import checkpoints
    paths = checkpoints(tmp_path, [0, 50, 100])
    table = eigenscope.analyze_many(paths, metrics="norms,powerlaw,mp")
    out = tmp_path / "trajectory.html"
    build_report(table, out=out)
    browser.get(out.as_uri())
    shown = lambda: [r.find_elements(By.CSS_SELECTOR, "td")[0].text   # noqa: E731 (the step column)
                     for r in browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr.row")]
    assert shown() == ["100"] * 12                       # the last source by default
    select = Select(browser.find_element(By.ID, "series"))
    select.select_by_index(1)                            # option 0 is "all sources"
    assert shown() == ["0"] * 12
    moved = browser.find_elements(By.CSS_SELECTOR, "#moved tbody tr.row")
    assert len(moved) == 12
    name = moved[0].get_attribute("data-name")
    moved[0].click()                                     # that matrix at every step
    assert shown() == ["0", "50", "100"]
    assert browser.find_element(By.ID, "filter").get_attribute("value") == name
    assert browser.execute_script("return [...document.images].every(x => x.naturalWidth > 0)")
    browser.save_screenshot(str(artifacts / "trajectory.png"))


def test_hostile_names_neither_blank_nor_script_the_pages(browser, tmp_path):
    """Class 4: names holding <!--<script>, </script>, <img onerror> are shown as text; the
    page's own script still runs (rows, one-sided list) and nothing of the names executes."""
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    from test_hostile_report import hostile_frame, hostile_model

    df = hostile_frame()
    out = tmp_path / "hostile.html"
    build_report(df, out=out, title="<!--<script> title")
    a, b = hostile_model(), hostile_model()
    b.add_module("<!--<script>extra", nn.Linear(16, 8))
    cmp_out = tmp_path / "hostile-compare.html"
    compare(a, b, out=cmp_out, metrics="norms")
    for page, names in ((out, df["name"].tolist()), (cmp_out, df["name"].tolist())):
        browser.get(page.as_uri())
        _wait(browser, "return document.querySelectorAll('#rows tbody tr.row').length > 0")
        cells = browser.execute_script(
            "return [...document.querySelectorAll('#rows tbody tr.row td:first-child')]"
            ".map(td => td.textContent)")
        assert sorted(cells) == sorted(names)           # every name, shown as plain text
        assert browser.title != "pwned"
        assert not browser.execute_script("return [...document.images].some(i => i.getAttribute('src') === 'x')")
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text
    assert "<!--<script>extra.weight" in browser.find_element(By.ID, "onesided").text
