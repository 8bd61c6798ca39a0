"""The review page in headless Chromium (Debian's chromium + chromium-driver), as a pharmacist uses it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from cds_service import create_app
from cds_service.review.auth import create_reviewer

from .review_support import LIDOCAINE, ORDER_SIGN, accepted, hook_request, override

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots"
PASSWORD = "browser test password"
SEED = [("G90.511", None, "prior-auth-on-file"), ("G90.511", None, "clinical-trial"),
        ("M79.7", LIDOCAINE, "accepted"), ("M79.7", LIDOCAINE, "prior-auth-on-file"),
        ("F32.9", None, "patient-informed-noncoverage"), ("F32.9", None, None),
        ("G43.709", LIDOCAINE, "prior-auth-on-file"), ("F43.10", None, None), ("G89.4", None, "accepted")]

MISSING = "Debian chromium and chromium-driver are not installed (bash .ci/chromium.sh installs them)"
pytestmark = pytest.mark.skipif(
    not (CHROMEDRIVER.exists() and CHROMIUM.exists()) and os.environ.get("CI") != "true", reason=MISSING)


@pytest.fixture()
def live_server(tmp_path):
    app = create_app({"AUTH_ENABLED": False, "DATABASE_URL": f"sqlite:///{tmp_path / 'a.sqlite3'}",
                      "SECRET_KEY": "browser-test"})
    create_reviewer(app.extensions["cds"].database, "pharmacist", PASSWORD)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    for icd10, drug, outcome in SEED:
        body = hook_request(icd10, drug) if drug else hook_request(icd10)
        card = requests.post(f"{base}/cds-services/{ORDER_SIGN}", json=body, timeout=30).json()["cards"][0]
        if outcome:
            item = accepted(card["uuid"]) if outcome == "accepted" else override(card["uuid"], outcome)
            requests.post(f"{base}/cds-services/{ORDER_SIGN}/feedback", json={"feedback": [item]}, timeout=30)
    yield base
    server.shutdown()


@pytest.fixture()
def browser(tmp_path, request):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1000"):
        options.add_argument(flag)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:  # keep what the browser showed, for diagnosis
        _full_page_screenshot(driver, "failure.png")
        (SCREENSHOTS / "failure.html").write_text(driver.page_source)
    driver.quit()


def _full_page_screenshot(driver, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(height + 40, 800), 4000))
    driver.save_screenshot(str(SCREENSHOTS / name))
    driver.set_window_size(1280, 1000)


def _finished_download(folder: Path, pattern: str, timeout_s: float = 20.0) -> Path:
    """The one file matching ``pattern`` once Chromium has finished writing it: the final name can
    be there before the content is (CI once read it empty), while Chromium writes ``*.crdownload``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = list(folder.glob(pattern))
        writing = list(folder.glob("*.crdownload"))
        if len(found) == 1 and not writing and found[0].read_bytes().endswith(b"\n"):
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no finished download in {timeout_s} s: {sorted(p.name for p in folder.iterdir())}")
        time.sleep(0.1)


def test_pharmacist_logs_in_filters_reviews_an_alert_and_downloads_csv(live_server, browser):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def wait_for_heading(start: str) -> None:
        WebDriverWait(browser, 20, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda d: d.find_element(By.TAG_NAME, "h1").text.startswith(start))

    browser.get(f"{live_server}/review/")
    assert "/review/login" in browser.current_url  # never open without an account
    browser.find_element(By.ID, "username").send_keys("pharmacist")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
    wait_for_heading("Alerts, newest first")
    assert len(browser.find_elements(By.CSS_SELECTOR, "tbody tr")) == len(SEED)
    _full_page_screenshot(browser, "alert-list.png")

    Select(browser.find_element(By.ID, "outcome")).select_by_visible_text("Overridden")
    Select(browser.find_element(By.ID, "family")).select_by_visible_text("Complex regional pain syndrome")
    browser.find_element(By.XPATH, "//button[text()='Apply filters']").click()

    def filtered_rows(driver):
        # The click starts a navigation; until the new page is in, the old rows may be stale.
        if "outcome=overridden" not in driver.current_url:
            return False
        try:
            rows = driver.find_elements(By.CSS_SELECTOR, "tbody tr")
            texts = [r.text for r in rows]
        except StaleElementReferenceException:
            return False
        return texts if len(texts) == 2 else False

    texts = WebDriverWait(browser, 20).until(filtered_rows)
    assert all("overridden" in text for text in texts)

    browser.find_element(By.CSS_SELECTOR, "tbody tr a").click()
    wait_for_heading("Alert ")
    assert "G90.511" in browser.page_source
    assert browser.find_element(By.CSS_SELECTOR, "section.card").text
    Select(browser.find_element(By.ID, "disposition")).select_by_value("policy-exception")
    browser.find_element(By.ID, "note").send_keys("Prior authorization confirmed with payer.")
    browser.find_element(By.XPATH, "//button[text()='Save disposition']").click()
    WebDriverWait(browser, 20, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: "Disposition saved." in d.find_element(By.TAG_NAME, "body").text)
    assert "Disposition saved." in browser.find_element(By.CSS_SELECTOR, "[role=status]").text
    assert "Prior authorization confirmed with payer." in browser.page_source
    _full_page_screenshot(browser, "alert-detail.png")

    browser.get(f"{live_server}/review/?outcome=overridden&family=crps")
    browser.find_element(By.ID, "csv-link").click()
    csv_file = _finished_download(browser.downloads, "*.csv")
    lines = csv_file.read_text().splitlines()
    assert lines[0].startswith("alert_id,calls_grouped,first_seen_utc") and len(lines) == 3
    assert "policy-exception" in csv_file.read_text()

    browser.get(f"{live_server}/review/summary")
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg[role=img]")) == 3
    _full_page_screenshot(browser, "summary.png")
