"""An operator uses the gateway's /docs in a real browser (headless Chromium, network blocked but loopback).

The page must load from the gateway alone, "Authorize" must take a staff token, and "Try it out"
must answer 200 on a public policy GET and on a staff-only route. A screenshot is kept under
var/test-artifacts/ (Chinese renders when fonts-noto-cjk is installed; .ci/run installs it).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
POLICY_GET = "/contribution/v1/policies/{region_code}"
STAFF_GET = "/review/v1/annual-declarations"


@pytest.fixture
def browser(stack: Any) -> Iterator[Any]:
    if stack.rs.transport != "feed":
        pytest.skip("the docs page does not depend on the event transport: checked once, on the feed stacks")
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver; "
                    ".ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="socialsec-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--no-first-run",
        "--disable-default-apps", "--disable-sync", "--metrics-recording-only",
        # No name resolves but the loopback address: nothing outside the machine can be fetched.
        '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
        "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",
        f"--user-data-dir={profile}", "--window-size=1400,2200", "--lang=zh-CN",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _operation(driver: Any, path: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(
        By.XPATH, f'//*[contains(@class, "opblock-summary-path") and @data-path="{path}"]'
                  '/ancestor::div[contains(@class, "opblock-get")][1]')


def _try(driver: Any, wait: Any, path: str, params: dict[str, str]) -> str:
    """Expand an operation, "Try it out", fill its parameters, "Execute": the status the page shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select

    op = _operation(driver, path)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", op)
    op.find_element(By.CSS_SELECTOR, ".opblock-summary-control, .opblock-summary").click()
    try_out = wait.until(lambda d: _operation(d, path).find_element(By.CSS_SELECTOR, "button.try-out__btn"))
    try_out.click()
    op = _operation(driver, path)
    for name, value in params.items():
        field = op.find_element(By.CSS_SELECTOR, f'tr[data-param-name="{name}"] input, tr[data-param-name="{name}"] select')
        if field.tag_name == "select":
            Select(field).select_by_visible_text(value)
        else:
            field.clear()
            field.send_keys(value)
    execute = wait.until(ec.element_to_be_clickable(_operation(driver, path).find_element(
        By.CSS_SELECTOR, "button.execute")))
    execute.click()
    cell = wait.until(lambda d: _operation(d, path).find_element(
        By.CSS_SELECTOR, ".live-responses-table .response .response-col_status"))
    text: str = cell.text.strip()
    return text


async def test_an_operator_authorizes_and_tries_routes_in_the_docs(stack, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    token = await stack.token(kind="staff", staff_id="OPS-docs", roles=["reviewer"])
    base = stack.rs.url("gateway")
    driver, wait = browser, WebDriverWait(browser, 30)

    driver.get(f"{base}/docs")
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".swagger-ui .info .title")))
    assert "Social security API" in driver.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text
    wait.until(lambda d: _operation(d, POLICY_GET))

    driver.find_element(By.CSS_SELECTOR, ".scheme-container button.authorize").click()
    field = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".modal-ux .auth-container input")))
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, ".modal-ux .auth-btn-wrapper button.authorize").click()
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".modal-ux .auth-btn-wrapper button.btn-done")))
    driver.find_element(By.CSS_SELECTOR, ".modal-ux button.btn-done").click()
    wait.until(ec.invisibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))

    assert _try(driver, wait, POLICY_GET, {"region_code": "110105"}) == "200"
    assert _try(driver, wait, STAFF_GET, {"status": "submitted"}) == "200"
    # The staff route was called with the token the operator entered (Swagger UI shows the curl it sent).
    curl = _operation(driver, STAFF_GET).find_element(By.CSS_SELECTOR, ".curl-command").text
    assert "Authorization: Bearer" in curl

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"docs-try-it-out-{int(time.time())}.png"
    # The staff route's live answer (200 and its body) in view.
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", _operation(driver, STAFF_GET))
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    # Nothing was fetched from outside the gateway, and nothing failed to load.
    failures = [e["message"] for e in driver.get_log("browser")
                if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    assert not failures, failures
