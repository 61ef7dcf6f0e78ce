"""The Dagster UI as a person sees it, in a real browser: headless Chromium (Debian's), driven by
Playwright, on the instance of the staging graph run. An asset page shows per-partition values and a
table, and its links open (HTTP 200). A screenshot is kept for the README (docs/)."""

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from ml_assets_tests import servers

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright downloads no browser of its own here


@pytest.fixture(scope="module")
def dagster_ui(staging_run, tmp_path_factory):
    """dagster-webserver on a free port over the staging run's instance (PostgreSQL), plus the report
    server over its lake (S3), as `ml-assets dev` would run them."""
    from ml_assets.definitions import lake_store
    from ml_assets.serve import serve_in_thread
    from ml_assets_tests.staging import applied_env

    with applied_env(staging_run["env"]):
        reports, stop_reports = serve_in_thread(lake_store(staging_run["settings"]))
    port = servers.free_port()
    log = tmp_path_factory.mktemp("webserver") / "webserver.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-webserver"), "-h", servers.HOST, "-p", str(port),
             "-m", "ml_assets.definitions", "-d", str(ROOT)],
            env={**os.environ, **staging_run["env"], "ML_ASSETS_REPORTS_URL": reports},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://{servers.HOST}:{port}"
    try:
        servers.wait_until(lambda: servers.http_ok(base + "/server_info"), proc, f"dagster-webserver ({log})", 120)
        yield {"url": base, "reports": reports}
    finally:
        servers.stop(proc)
        stop_reports()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "chromium not installed: scripts/test.sh installs it (apt)"
    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def dismiss_welcome(page) -> None:
    """The UI greets a fresh browser profile with a newsletter dialog over the page."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5_000)
        skip.click()
    except Exception:  # no dialog this time  # noqa: S110
        pass


def status_of(url: str) -> int:
    with urllib.request.urlopen(url, timeout=20) as r:
        return r.status


def test_an_asset_page_shows_per_partition_values_a_table_and_links_that_open(dagster_ui, browser, staging_run,
                                                                             tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    # Both UIs keep polling their servers, so "network idle" may never come: wait for content instead.
    page.set_default_timeout(90_000)
    page.goto(f"{dagster_ui['url']}/assets/raw_transactions?view=events", wait_until="domcontentloaded")
    page.get_by_text("per_partition").first.wait_for()
    dismiss_welcome(page)
    # Each day of the run is its own materialization in the event list.
    for day in (staging_run["first"], staging_run["last"]):
        assert page.get_by_text(day, exact=True).count() >= 1
    # The per-partition table: a real table (rows and cells), one row per day of the run.
    table = page.locator("table").filter(has_text=staging_run["first"]).first
    table.wait_for(timeout=30_000)
    assert table.locator("tr").count() >= 21  # header + one row per day
    assert staging_run["last"] in table.inner_text()
    # The README's picture is refreshed on request only: tests do not write into the checkout.
    shot = (ROOT / "docs" if os.environ.get("ML_ASSETS_UPDATE_SCREENSHOT") else tmp_path) / "dagster-asset-page.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000

    page.goto(f"{dagster_ui['url']}/assets/registered_model?view=events", wait_until="domcontentloaded")
    link = page.locator("a", has_text="/#/experiments/").first
    link.wait_for(timeout=60_000)
    href = link.get_attribute("href")
    assert href.startswith(staging_run["env"]["MLFLOW_TRACKING_URI"]) and status_of(href) == 200
    # The link opens the run in the MLflow UI, not just a page.
    mlflow = browser.new_page()
    mlflow.set_default_timeout(90_000)
    mlflow.goto(href, wait_until="domcontentloaded")
    mlflow.get_by_text("train-", exact=False).first.wait_for(timeout=60_000)
    mlflow.screenshot(path=str(tmp_path / "mlflow-run.png"))
    page.close()
    mlflow.close()
