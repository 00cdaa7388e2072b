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
