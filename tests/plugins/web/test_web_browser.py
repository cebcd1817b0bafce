"""The web console in a real browser: headless Chromium (Debian's chromium and chromium-driver) driven by Selenium
against uvicorn on 127.0.0.1. Skipped only when Chromium is not installed outside CI; in CI a missing browser
fails. The screenshots in docs/console.md are taken here."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
selenium = pytest.importorskip("selenium")

import abstractruntime_web  # noqa: E402
from web_support import (APPROVAL, REPO, XSS, completed_run, open_runtime, serving, start_groceries,  # noqa: E402
                         waiting_run)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: where the screenshots go: a scratch directory, unless ABSTRACTRUNTIME_SCREENSHOTS names one (``docs/images`` to
#: re-take the documentation's): a test run leaves the checkout as it found it
IMAGES = Path(os.environ.get("ABSTRACTRUNTIME_SCREENSHOTS")
              or Path(tempfile.gettempdir()) / "abstractruntime-screenshots")


def _have_chromium() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


@pytest.fixture
def browser():
    if not _have_chromium():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)")
        pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def store(tmp_path):
    return tmp_path / "store"


def _wait(predicate, timeout: float = 10.0, what: str = "condition"):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (StaleElementReferenceException, NoSuchElementException):  # a poll swapped the fragment, or the
            # next page is still loading
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _text(driver, css: str) -> str:
    """The element's rendered text, found and read in one script: a poll that swaps the fragment between a
    find and a read makes chromedriver fail the read ("Node with given id does not belong to the document")."""
    from selenium.common.exceptions import NoSuchElementException

    text = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e === null ? null : e.innerText;", css
    )
    if text is None:
        raise NoSuchElementException(f"no element matches {css!r}")
    return text


def _no_alert(driver) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def _shot(driver, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(IMAGES / name))


def test_the_list_shows_runs_and_the_filters_work(browser, store):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    groceries = start_groceries(store)
    rt = open_runtime(store)
    try:
        asking = waiting_run(rt, prompt="Ship order 42 to Lyon?")
        done = completed_run(rt)
        with serving(abstractruntime_web.app(rt, workflows=[APPROVAL])) as url:
            browser.get(url + "/")
            rows = {r.get_attribute("data-run-id") for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-run-id]")}
            assert {groceries, asking, done} <= rows
            assert "Ship order 42 to Lyon?" in browser.page_source
            _shot(browser, "console-runs.png")
            Select(browser.find_element(By.ID, "f-status")).select_by_value("completed")
            browser.find_element(By.ID, "f-apply").click()
            _wait(lambda: "status=completed" in browser.current_url, what="the filtered list")
            rows = [r.get_attribute("data-run-id") for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-run-id]")]
            assert rows == [done]
            browser.get(url + "/")
            browser.find_element(By.ID, "f-q").send_keys("Lyon")
            browser.find_element(By.ID, "f-apply").click()
            _wait(lambda: "q=Lyon" in browser.current_url, what="the text filter")
            rows = [r.get_attribute("data-run-id") for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-run-id]")]
            assert rows == [asking]
    finally:
        rt.close()


def test_answering_a_groceries_run_in_the_page_completes_it(browser, store):
    from selenium.webdriver.common.by import By

    run_id = start_groceries(store)
    rt = open_runtime(store)
    try:
        with serving(abstractruntime_web.app(rt)) as url:
            browser.get(f"{url}/runs/{run_id}")
            assert _text(browser, "#wait-prompt") == "What is your name?"
            _shot(browser, "console-run-waiting.png")
            browser.find_element(By.ID, "answer-response").send_keys("Ada")
            browser.find_element(By.ID, "answer-send").click()
            _wait(lambda: "completed" in _text(browser, "#run-status"), what="the run to complete")
            assert "Hello Ada, your list: TEA, JAM" in _text(browser, "#run-output")
            browser.set_window_size(1280, 1700)  # the ledger timeline too
            _shot(browser, "console-run-completed.png")
        state = rt.get_state(run_id)
        assert state.status.value == "completed" and state.output["answer"] == "Hello Ada, your list: TEA, JAM"
    finally:
        rt.close()


def test_cancel_works_and_the_page_follows_changes_without_reloading(browser, store):
    from selenium.webdriver.common.by import By

    rt = open_runtime(store)
    try:
        first, second = waiting_run(rt), waiting_run(rt)
        with serving(abstractruntime_web.app(rt)) as url:
            browser.get(f"{url}/runs/{first}")
            browser.find_element(By.ID, "btn-cancel").click()
            _wait(lambda: "cancelled" in _text(browser, "#run-status"), what="the cancelled status")
            assert rt.get_state(first).status.value == "cancelled"
            # a change made elsewhere shows up by polling, without a reload
            browser.get(f"{url}/runs/{second}")
            browser.execute_script("window.__sameDocument = true;")
            rt.cancel_run(second, reason="stopped by a test")
            _wait(lambda: "cancelled" in _text(browser, "#run-status"), timeout=8, what="the polled update")
            assert browser.execute_script("return window.__sameDocument === true;")
            assert "stopped by a test" in _text(browser, "#run-error")
    finally:
        rt.close()


def test_a_script_in_a_run_variable_is_shown_as_text(browser, store):
    from selenium.webdriver.common.by import By

    rt = open_runtime(store)
    try:
        run_id = waiting_run(rt, prompt=XSS, note=XSS)
        with serving(abstractruntime_web.app(rt)) as url:
            browser.get(f"{url}/")
            time.sleep(0.5)
            assert _no_alert(browser)
            assert XSS in _text(browser, f'tr[data-run-id="{run_id}"]')
            browser.get(f"{url}/runs/{run_id}")
            time.sleep(2.5)  # one poll swaps the fragment in with innerHTML: still no script
            assert _no_alert(browser)
            assert XSS in _text(browser, "#wait-prompt")
            assert XSS in _text(browser, "#run-vars")
            assert not browser.find_elements(By.CSS_SELECTOR, "#run script, #runs script")
    finally:
        rt.close()


def test_a_console_with_a_token_needs_it(browser, store):
    from selenium.webdriver.common.by import By

    rt = open_runtime(store)
    try:
        run_id = waiting_run(rt)
        token = "browser-token-1234"
        with serving(abstractruntime_web.app(rt, token=token)) as url:
            browser.get(f"{url}/runs/{run_id}")
            assert "needs its token" in _text(browser, "body")
            browser.get(f"{url}/?token={token}")
            _wait(lambda: "token=" not in browser.current_url, what="the redirect without the token")
            assert browser.find_elements(By.CSS_SELECTOR, f'tr[data-run-id="{run_id}"]')
            browser.get(f"{url}/runs/{run_id}")  # the cookie carries it now, also for the POST
            browser.find_element(By.ID, "btn-cancel").click()
            _wait(lambda: "cancelled" in _text(browser, "#run-status"), what="the cancel with the cookie")
    finally:
        rt.close()


def test_a_groceries_run_shows_its_flow_graph(browser, store):
    """The SVG graph in a real browser: drawn, with the current node highlighted; screenshot for docs/console.md."""
    from selenium.webdriver.common.by import By

    run_id = start_groceries(store)
    rt = open_runtime(store)
    try:
        with serving(abstractruntime_web.app(rt)) as url:
            browser.get(f"{url}/runs/{run_id}")
            browser.find_element(By.ID, "answer-response").send_keys("Ada")
            browser.find_element(By.ID, "answer-send").click()
            _wait(lambda: "completed" in _text(browser, "#run-status"), what="the run to complete")
            current_node = ("const g = document.querySelector('#flow-graph g.node.current'); "
                            "return g === null ? null : g.getAttribute('data-node');")
            _wait(lambda: browser.execute_script(current_node) == "end",  # its fragment may be swapped a poll later
                  what="the graph to show the end node as current")
            graph = browser.find_element(By.ID, "flow-graph")
            current = graph.find_element(By.CSS_SELECTOR, "g.node.current")
            assert current.get_attribute("data-node") == "end"
            assert current.rect["width"] > 50 and current.rect["height"] > 20  # drawn, not just in the markup
            visited = {g.get_attribute("data-node") for g in graph.find_elements(By.CSS_SELECTOR, "g.node.visited")}
            assert {"start", "ask", "each", "call", "say"} <= visited
            browser.execute_script("arguments[0].scrollIntoView();", graph)
            IMAGES.mkdir(parents=True, exist_ok=True)
            graph.screenshot(str(IMAGES / "console-run-graph.png"))
    finally:
        rt.close()
