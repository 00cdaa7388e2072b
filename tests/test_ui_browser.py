"""Lineage in the Dagster UI, checked in a real browser (Debian's headless Chromium + chromedriver).

The webserver runs on a free loopback port against the DAGSTER_HOME of the shared
fast materialization of the sample, so the UI shows real runs, metadata and plots.
`.ci/run` installs `chromium` and `chromium-driver` when they are absent.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOTS = Path(os.environ.get("MMM_TEST_ARTIFACTS", REPO / "test-artifacts"))
GROUPS = ["ingestion", "validation", "costs", "models", "outputs"]


def _need_browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        msg = f"{missing} not installed (apt-get install -y chromium chromium-driver; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(msg)  # CI installs them, so a missing browser there is a broken CI, not a skip
        pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(base: str, query: str) -> dict:
    req = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


@pytest.fixture(scope="module")
def webserver(sample_run, tmp_path_factory):
    _need_browser()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DAGSTER_HOME": str(sample_run["dagster_home"]), "MMM_INPUT_DIR": str(sample_run["input"]),
           "MMM_WAREHOUSE": str(sample_run["warehouse"]), "MMM_ARTIFACT_DIR": str(sample_run["artifacts"]),
           "MMM_PROFILE": "fast", "GX_ANALYTICS_ENABLED": "false"}
    log = tmp_path_factory.mktemp("webserver") / "webserver.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "dagster-webserver"), "-h", "127.0.0.1",
                                 "-p", str(port), "-w", "workspace.yaml"], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, f"webserver exited: {log.read_text()[-3000:]}"
            try:
                status = _graphql(base, "{ workspaceOrError { ... on Workspace { locationEntries { name "
                                        "loadStatus } } } }")
                entries = status["data"]["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    break
            except OSError:
                pass
            assert time.time() < deadline, f"webserver not ready in 180 s: {log.read_text()[-3000:]}"
            time.sleep(1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser(webserver):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1800,1200"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(90)
    yield driver
    driver.quit()


def _wait_for(driver, predicate, what: str, timeout: float = 90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    _screenshot(driver, "failure")
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _screenshot(driver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"ui_{name}.png"
    driver.save_screenshot(str(path))
    return path


def _text(driver) -> str:
    return driver.execute_script("return document.body ? document.body.innerText : ''")


def _label_matches(label: str, name: str) -> bool:
    """The graph shortens long names in the middle ('staging_me…_weekly')."""
    if "…" not in label:
        return label == name
    head, tail = label.split("…", 1)
    return name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail)


def _graph_labels(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(\"foreignObject [class*='AssetNode_assetName']\"))"
        ".map(e => e.textContent.trim())")


def _upstream(asset: str) -> set[str]:
    """Every asset upstream of `asset` in the code location's own graph (what the UI must draw)."""
    import dagster as dg

    from assets.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = dg.AssetSelection.assets(asset).upstream().resolve(graph)
    return {k.to_user_string() for k in keys}


def test_asset_graph_shows_every_group(browser, webserver):
    browser.get(f"{webserver}/asset-groups")
    group_xpath = "//*[local-name()='foreignObject']//div[normalize-space(text())='{}']"
    from selenium.webdriver.common.by import By

    _wait_for(browser, lambda: all(browser.find_elements(By.XPATH, group_xpath.format(g)) for g in GROUPS),
              f"the groups {GROUPS} drawn in the global asset graph")
    text = _text(browser)
    assert "Global asset lineage" in text
    assert "Join the Dagster community" not in text  # nux is off in the instance config
    _screenshot(browser, "asset_groups")


def test_lineage_from_raw_ad_reporting_to_budget_allocation_renders(browser, webserver):
    expected = _upstream("budget_allocation")
    assert {"raw_ad_reporting", "staging_media_weekly", "cost_per_unit", "cost_per_unit_forecast",
            "mmm_uncalibrated", "mmm_calibrated", "response_curves", "budget_allocation"} <= expected
    browser.get(f"{webserver}/assets/budget_allocation?view=lineage&lineageScope=upstream&lineageDepth=50")

    def drawn():
        labels = _graph_labels(browser)
        return labels if all(any(_label_matches(l, n) for l in labels) for n in expected) else None

    labels = _wait_for(browser, drawn, f"the {len(expected)} upstream assets of budget_allocation")
    # nothing drawn that is not upstream, so the picture is the lineage, not the whole graph
    assert all(any(_label_matches(l, n) for n in expected) for l in labels), labels
    text = _text(browser)
    for group in GROUPS:  # the upstream graph spans every group
        assert group in text
    path = _screenshot(browser, "lineage_budget_allocation")
    assert path.stat().st_size > 10_000


def test_allocation_asset_shows_its_plot_in_the_metadata(browser, webserver, sample_run):
    from selenium.webdriver.common.by import By

    browser.get(f"{webserver}/assets/budget_allocation")
    row_xpath = "//tr[.//span[starts-with(text(), 'plot_allocation_')] and .//a[contains(text(), 'Show Markdown')]]"
    row = _wait_for(browser, lambda: browser.find_elements(By.XPATH, row_xpath),
                    "the plot_allocation_* metadata entry of the latest materialization")[0]
    text = _text(browser)
    assert "Latest materialization" in text and "marts.budget_allocation" in text
    assert "marketing-analytics" in text  # owners are shown
    row.find_element(By.XPATH, ".//a[contains(text(), 'Show Markdown')]").click()

    def plot_loaded():
        return browser.execute_script(
            "return Array.from(document.images).filter(i => i.src.startsWith('data:image/png') && i.complete"
            " && i.naturalWidth > 200).map(i => [i.alt, i.naturalWidth, i.naturalHeight])")

    images = _wait_for(browser, plot_loaded, "the allocation plot (a PNG) to render in the metadata dialog")
    assert images[0][0].startswith("allocation_")
    time.sleep(1.5)  # let the dialog finish fading in, so the screenshot shows the plot, not a blend
    _screenshot(browser, "budget_allocation_plot")
    # the same picture is a file under the artifact directory
    assert list((sample_run["artifacts"] / "allocation").rglob("allocation_*.png"))


# --------------------------------------------------------------------------- the reports, from file://


@pytest.fixture(scope="module")
def file_browser():
    """Chromium without the webserver: the reports and Data Docs are files, opened as a reader would."""
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-background-networking", "--window-size=1400,1000", "--allow-file-access-from-files"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _full_page_screenshot(driver, name: str) -> Path:
    """Resize the window to the page, so the PNG holds all of it."""
    height = driver.execute_script("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
    driver.set_window_size(1400, min(int(height) + 40, 16000))
    time.sleep(0.3)
    path = _screenshot(driver, name)
    driver.set_window_size(1400, 1000)
    return path


def _broken_images(driver) -> list:
    return driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt)")


def test_report_index_and_a_market_report_render_from_file(file_browser, sample_run):
    from selenium.webdriver.common.by import By

    from mmm_pipeline.reporting.report import SECTIONS

    index = sample_run["artifacts"] / "reports" / "index.html"
    file_browser.get(index.as_uri())
    links = {e.text: e.get_attribute("href") for e in file_browser.find_elements(By.CSS_SELECTOR, "a.report-link")}
    markets = [e.get_attribute("data-market") for e in file_browser.find_elements(By.CSS_SELECTOR, "section.market")]
    assert sorted(markets) == ["east", "west"] and len(links) >= 2
    assert file_browser.find_element(By.ID, "ungated-banner").is_displayed()  # fast profile
    _full_page_screenshot(file_browser, "report_index")

    west = file_browser.find_element(By.CSS_SELECTOR, "section.market[data-market='west'] a.report-link")
    west.click()
    _wait_for(file_browser, lambda: "Marketing mix report: west" in _text(file_browser), "the west report")
    assert file_browser.current_url.startswith("file://") and file_browser.current_url.endswith(".html")
    for sid, title in SECTIONS:
        section = file_browser.find_element(By.CSS_SELECTOR, f"section[data-section='{sid}']")
        assert section.is_displayed() and title in section.text
        assert len(section.find_element(By.CSS_SELECTOR, "p.lead").text) > 40, sid
    images = file_browser.execute_script("return document.images.length")
    assert images >= 7
    assert _broken_images(file_browser) == []
    banner = file_browser.find_element(By.ID, "ungated-banner")
    assert banner.is_displayed() and "UNGATED MODEL" in banner.text
    # the banner stays on screen while reading further down (sticky)
    file_browser.execute_script("document.getElementById('plan').scrollIntoView()")
    assert file_browser.execute_script(
        "const r = document.getElementById('ungated-banner').getBoundingClientRect(); return r.top >= 0 && r.top < 5")
    path = _full_page_screenshot(file_browser, "report_west")
    assert path.stat().st_size > 100_000


def test_a_data_docs_page_renders_from_file(file_browser, sample_run):
    urls = [e.asset_check_evaluation_data.metadata["data_docs"].value for e in sample_run["result"].all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
            and e.asset_check_evaluation_data.check_name == "staging_kpi_weekly_contract"]
    assert urls
    file_browser.get(urls[-1])
    _wait_for(file_browser, lambda: "staging_kpi_weekly" in _text(file_browser), "the Data Docs validation page")
    text = _text(file_browser)
    assert "expect" in text.lower() or "Expectation" in text
    _full_page_screenshot(file_browser, "data_docs_kpi_weekly")
    index = sample_run["artifacts"] / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    file_browser.get(index.as_uri())
    _wait_for(file_browser, lambda: "Validation Results" in _text(file_browser), "the Data Docs index")
    # The index draws its result tables with GX's JavaScript from a CDN (none here); the results are in it
    for suite in ("raw_ad_reporting", "staging_media_weekly", "staging_kpi_weekly", "cost_per_unit"):
        assert f"validations/{suite}/" in file_browser.page_source
    _full_page_screenshot(file_browser, "data_docs_index")
