"""`snakemake --report report.html` opened in a real headless Chromium (selenium + chromedriver), offline.

The workflow runs on a 90-sample demo set with tiny local encoders (2 heads, 2 modality sets, 1 seed, 2 folds),
then builds the report. The report is a React page whose scripts (React, Vega, Tailwind) Snakemake embeds from
its own package, so it needs no network: the browser runs with every host name unresolvable, and the test also
checks that the page fetched nothing but data URIs. The browser then shows what a reader sees: the workflow
description (data set, selected ablation and its score), the Summary page (ranking table and cost figure) and
the selected ablation's page (scores table, confusion matrix and training curve), each an HTML page in an
iframe with its figures embedded. Screenshots of each view are left in the test's tmp folder.

The first test (fast, no browser) checks the Markdown-to-HTML rendering alone. Debian's ``chromium`` and
``chromium-driver`` are installed with apt when missing (as root); elsewhere the browser test skips with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from workflow import snakemake, tiny_config

PACKAGES = ("chromium", "chromium-driver")
TIMEOUT = 30


def _browser() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def ensure_browser() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installed from the Debian packages when missing (needs root)."""
    found = _browser()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        apt = "found" if shutil.which("apt-get") else "missing"
        pytest.skip(f"chromium and chromedriver are not installed, and installing them ({' '.join(PACKAGES)}) "
                    f"needs root and apt-get (uid {os.geteuid()}, apt-get {apt})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    proc = subprocess.run(install, capture_output=True, text=True, timeout=900, env=env)
    if proc.returncode != 0:  # a fresh machine may have no package lists yet
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, timeout=600, env=env)
        proc = subprocess.run(install, capture_output=True, text=True, timeout=900, env=env)
    found = _browser()
    if not found:
        pytest.skip(f"apt-get could not install {' '.join(PACKAGES)}: {proc.stderr[-1500:]}")
    return found


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A workdir where the workflow ran (`all`) and wrote ``report.html``."""
    work = tmp_path_factory.mktemp("report")
    tiny_config(work, "demo", shards=1, demo={"n": 90, "seed": 0}, selection={"folds": 2, "repeats": 1},
                training={"seeds": [0]}, heads={"logreg": {}, "concat_mlp": {"max_epochs": 10, "patience": 3}},
                ablations={"modalities": [["text"], ["text", "image"]]})
    snakemake(work, "all")
    snakemake(work, "--report", "report.html")
    return work


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by chromedriver, every host name unresolvable (offline)."""
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
    chromium, chromedriver = ensure_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for a driver online
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1600,1000", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(TIMEOUT)
    yield driver
    driver.quit()


def _wait(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, TIMEOUT).until(condition, message=f"timed out waiting for {what}")


def _click_link(driver, text: str) -> None:
    from selenium.webdriver.common.by import By

    link = _wait(driver, lambda d: next((a for a in d.find_elements(By.TAG_NAME, "a")
                                         if a.is_displayed() and a.text.strip() == text), None), f"a link {text!r}")
    link.click()


def _open_row(driver, cell: str) -> None:
    """Click the eye button of the (first) result table row that has a cell ``cell``."""
    from selenium.webdriver.common.by import By

    def row(d):
        return next((r for r in d.find_elements(By.CSS_SELECTOR, "tbody tr") if r.is_displayed()
                     and any(td.text.strip() == cell for td in r.find_elements(By.TAG_NAME, "td"))), None)

    _wait(driver, row, f"a result row with {cell!r}").find_elements(By.TAG_NAME, "a")[0].click()


def _iframe_page(driver, expect: str, shot: Path) -> dict:
    """Enter the iframe that shows an HTML result, wait for ``expect`` in its text; its text, tables and images.
    Screenshots: ``shot`` (the page's top) and ``<shot>_figure.png`` (scrolled to its first figure)."""
    from selenium.webdriver.common.by import By

    frame = _wait(driver, lambda d: next((f for f in d.find_elements(By.TAG_NAME, "iframe") if f.is_displayed()), None),
                  "the result iframe")
    driver.switch_to.frame(frame)
    try:
        _wait(driver, lambda d: expect in d.find_element(By.TAG_NAME, "body").text, f"{expect!r} in the page")
        _wait(driver, lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete)"),
              "the page's images")
        driver.save_screenshot(str(shot))
        driver.execute_script("document.images.length && document.images[0].scrollIntoView()")
        driver.save_screenshot(str(shot.with_name(f"{shot.stem}_figure.png")))
        return {
            "text": driver.find_element(By.TAG_NAME, "body").text,
            "tables": [t.text for t in driver.find_elements(By.TAG_NAME, "table") if t.is_displayed()],
            "images": driver.execute_script(
                "return Array.from(document.images).map(i => ({alt: i.alt, width: i.naturalWidth, "
                "shown: i.getBoundingClientRect().width, data: i.src.startsWith('data:image/png;base64,')}))"),
        }
    finally:
        driver.switch_to.default_content()


def _fetched(driver) -> list[str]:
    """Every resource the page fetched that was not a data URI."""
    return driver.execute_script("return performance.getEntriesByType('resource').map(r => r.name)"
                                 ".filter(n => !n.startsWith('data:'))")


def test_markdown_page_embeds_figures_and_unlinks_local_files(tmp_path):
    from PIL import Image

    from mmpipe.reporting.html import markdown_to_html

    Image.new("RGB", (8, 6), "red").save(tmp_path / "fig.png")
    md = tmp_path / "report.md"
    md.write_text("# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![a figure](fig.png)\n\n"
                  "[other](ablations/x/report.md) and [docs](https://example.org/)\n", encoding="utf-8")
    markdown_to_html(md, tmp_path / "report.html", "T & co")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<title>T &amp; co</title>" in page and "<table>" in page and "<td>2</td>" in page
    assert '<img alt="a figure" src="data:image/png;base64,' in page and "fig.png" not in page
    assert "<span>other</span>" in page and "report.md" not in page
    assert '<a href="https://example.org/">docs</a>' in page

    md.write_text("![gone](missing.png)\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        markdown_to_html(md, tmp_path / "report.html", "T")


@pytest.mark.slow
def test_report_is_self_contained(report):
    html = (report / "report.html").read_text(encoding="utf-8")
    external = re.findall(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=[\"']?(?:https?:)?//[^\"'\s>]+", html)
    assert not external, f"the report loads from the network: {external[:5]}"


@pytest.mark.slow
def test_report_in_browser(browser, report):
    from selenium.webdriver.common.by import By

    summary = json.loads((report / "results/demo/summary.json").read_text())
    selected = summary["selected"]
    entry = next(e for e in summary["ablations"] if e["name"] == selected)
    split, metric = summary["selection"]["split"], summary["selection"]["metric"]
    score = f"{entry[split][metric]['mean']:.3f}"
    shots = report / "screenshots"
    shots.mkdir(exist_ok=True)

    # main page: the workflow description names the data set, the selected ablation and its score
    browser.get((report / "report.html").as_uri())
    body = _wait(browser, lambda d: "Selected:" in d.find_element(By.TAG_NAME, "body").text and
                 d.find_element(By.TAG_NAME, "body"), "the workflow description")
    text = body.text
    assert "Data set: demo" in text
    assert f"Selected: {selected}" in text and score in text
    browser.save_screenshot(str(shots / "workflow.png"))

    # Summary: its result table lists the selected ablation; its page shows the ranking and the cost figure
    _click_link(browser, "Summary")
    _open_row(browser, selected)
    page = _iframe_page(browser, "Ranking", shots / "summary.png")
    assert f"Selected: {selected}" in page["text"]
    ranking = next(t for t in page["tables"] if t.startswith("rank ablation"))
    assert selected in ranking and score in ranking
    assert len(ranking.splitlines()) >= 1 + len(summary["ablations"])
    assert page["images"] and all(i["width"] > 0 and i["shown"] > 0 and i["data"] for i in page["images"]), page

    # the selected ablation's page: its scores table, confusion matrix and training curve
    _click_link(browser, "Results")  # the breadcrumb back to the categories
    _click_link(browser, "Ablations")
    _click_link(browser, selected)
    _open_row(browser, "report")
    page = _iframe_page(browser, "Scores", shots / "ablation.png")
    assert f"Ablation {selected}" in page["text"]
    scores = next(t for t in page["tables"] if t.startswith("split"))
    assert score in scores
    assert len(page["images"]) >= 2, page["images"]
    assert all(i["width"] > 0 and i["shown"] > 0 and i["data"] for i in page["images"]), page["images"]

    # the figure beside it, shown by the report itself
    _open_row(browser, "confusion matrix")
    img = _wait(browser, lambda d: next((i for i in d.find_elements(By.TAG_NAME, "img")
                                         if i.get_attribute("src").startswith("data:image/png")
                                         and i.get_property("naturalWidth") > 0), None), "the confusion matrix")
    assert img.is_displayed()
    assert _fetched(browser) == [], "the report fetched something from outside the file"
