"""Swagger UI and ReDoc load nothing from outside the hub (issue 10, acceptance 7).

Both pages are rendered by headless Chromium (Debian's package, through Debian's chromedriver)
against the hub on pytest-django's live server. The test waits until the page shows the API's
operations (a blank page fails), then checks every request the page made (Chrome's performance
log: documents, scripts, styles, fonts, images, the schema fetch, workers) against the live
server's origin, and that the browser reported no Content-Security-Policy violation.
"""
import json
from urllib.parse import urlsplit

import pytest

# Schemes that never reach the network.
LOCAL_SCHEMES = {"data", "blob", "about"}

# Recorded in the page before any of its scripts run: every CSP violation, whatever its source.
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__cspViolations.push({blockedURI: e.blockedURI, directive: e.violatedDirective,
                               source: e.sourceFile, line: e.lineNumber});
});
"""


def _origin(url: str) -> tuple:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, parts.hostname, parts.port or default


def _requested_urls(driver) -> list[str]:
    """Every URL the page asked for, from the DevTools events in the performance log."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(params["request"]["url"])
        elif message.get("method") == "Network.webSocketCreated":
            urls.append(params["url"])
    return urls


def _load(driver, url: str, ready_js: str, what: str, timeout: float = 60) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_LISTENER})
    driver.get(url)
    try:
        WebDriverWait(driver, timeout, poll_frequency=0.25).until(lambda d: d.execute_script(ready_js))
    except Exception:
        body = driver.execute_script("return document.body ? document.body.innerText : ''")
        pytest.fail(f"{what} did not render within {timeout} s; page text: {body[:1000]!r}; "
                    f"console: {driver.get_log('browser')}")


def _assert_offline(driver, live_server, *, min_requests: int) -> list[str]:
    hub = _origin(live_server.url)
    urls = _requested_urls(driver)
    # The live server's own files were fetched (the page, its scripts, the schema): the log works.
    assert len(urls) >= min_requests, urls
    outside = [u for u in urls if urlsplit(u).scheme not in LOCAL_SCHEMES and _origin(u) != hub]
    assert not outside, f"requests outside the hub ({live_server.url}): {outside}"

    violations = driver.execute_script("return window.__cspViolations || []")
    assert violations == [], f"Content-Security-Policy violations: {violations}"
    console = driver.get_log("browser")
    csp_messages = [e["message"] for e in console
                    if "Content Security Policy" in e["message"] or "Refused to" in e["message"]]
    assert csp_messages == [], f"the browser console reports blocked content: {csp_messages}"
    severe = [e["message"] for e in console if e["level"] == "SEVERE"]
    assert severe == [], f"errors in the browser console: {severe}"
    return urls


SWAGGER_READY = """
const ops = document.querySelectorAll('#swagger-ui .opblock .opblock-summary-path');
const title = document.querySelector('#swagger-ui .info .title');
return ops.length > 0 && !!title && title.offsetHeight > 0;
"""

REDOC_READY = """
const ops = document.querySelectorAll('[data-section-id^="operation/"] h2');
const title = document.querySelector('#redoc-container h1');
return ops.length > 0 && !!title && title.offsetHeight > 0;
"""


def test_swagger_ui_loads_only_from_the_hub(browser, live_server):
    _load(browser, f"{live_server.url}/api/docs/", SWAGGER_READY, "Swagger UI")

    assert "notifyhub API" in browser.find_element("css selector", "#swagger-ui .info .title").text
    paths = [el.text for el in browser.find_elements("css selector", "#swagger-ui .opblock-summary-path")]
    assert any(p.startswith("/api/v1/messages") for p in paths), paths
    assert len(paths) >= 10, paths
    # The bundle's styles applied: an operation block is laid out, not unstyled text.
    block = browser.find_element("css selector", "#swagger-ui .opblock")
    assert block.is_displayed() and block.size["height"] > 10

    urls = _assert_offline(browser, live_server, min_requests=4)
    assert any(urlsplit(u).path == "/api/schema/" for u in urls), urls


def test_redoc_loads_only_from_the_hub(browser, live_server):
    _load(browser, f"{live_server.url}/api/redoc/", REDOC_READY, "ReDoc")

    assert "notifyhub API" in browser.find_element("css selector", "#redoc-container h1").text
    titles = [el.text for el in browser.find_elements("css selector", '[data-section-id^="operation/"] h2')]
    visible = [t for t in titles if t.strip()]
    assert len(visible) >= 10, titles
    menu = browser.find_elements("css selector", "#redoc-container [role=menuitem], #redoc-container li")
    assert menu, "ReDoc's side menu is missing"

    urls = _assert_offline(browser, live_server, min_requests=3)
    assert any(urlsplit(u).path == "/api/schema/" for u in urls), urls
