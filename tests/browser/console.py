"""
The admin console as the tests see it in Chromium: routes, the page states
and hooks of the console's DOM contract, screenshots, and the checks that
hostile device data stayed text.
"""

import base64
import re
from dataclasses import dataclass
from pathlib import Path

from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

KEY_STORAGE = "nanomdm-api-key"
WAIT_SECONDS = 30
WIDE = (1280, 900)
NARROW = (390, 844)


@dataclass
class Console:
    driver: WebDriver
    url: str  # the server's base URL
    output: Path  # where screenshots go
    test_name: str

    def start(self, api_key: str | None) -> None:
        """A fresh tab state: wide window, and the key stored as the key page stores it."""
        self.driver.set_window_size(*WIDE)
        self.driver.get(self.url + "/version")  # the console's origin, without the console
        self.driver.execute_script("sessionStorage.clear()")
        if api_key is not None:
            self.driver.execute_script(
                "sessionStorage.setItem(arguments[0], arguments[1])", KEY_STORAGE, api_key
            )

    def visit(self, route: str, page: str) -> WebElement:
        """Load the console at ``#route`` (a fresh document) and wait for ``page`` to be ready."""
        self.driver.get("about:blank")
        self.driver.get(f"{self.url}/admin/#{route}")
        return self.wait_ready(page)

    def wait_ready(self, page: str) -> WebElement:
        """``main#page`` once ``page`` rendered its data; a page in error fails with its text."""
        main = self.wait_for(
            f'main#page[data-page="{page}"][data-state="ready"], main#page[data-state="error"]'
        )
        assert main.get_attribute("data-state") == "ready", (
            f"{main.get_attribute('data-page')} page in error: {self.text('#message')}"
        )
        return main

    def until(self, condition, message: str):
        """What ``condition(driver)`` returns once it is true; re-rendered elements are retried."""
        wait = WebDriverWait(
            self.driver, WAIT_SECONDS, ignored_exceptions=(StaleElementReferenceException,)
        )
        return wait.until(condition, message)

    def wait_for(self, selector: str) -> WebElement:
        return self.until(
            lambda driver: _first(driver.find_elements(By.CSS_SELECTOR, selector)),
            f"nothing matched {selector}",
        )

    def wait_for_text(self, selector: str, text: str) -> WebElement:
        """The element matching ``selector`` once its text contains ``text``."""

        def holds(driver):
            for element in driver.find_elements(By.CSS_SELECTOR, selector):
                if text in (element.get_attribute("textContent") or ""):
                    return element
            return None

        return self.until(holds, f"{selector} never said {text!r}; it says {self.text(selector)!r}")

    def wait_gone(self, selector: str) -> None:
        self.until(
            lambda driver: not driver.find_elements(By.CSS_SELECTOR, selector),
            f"{selector} is still there",
        )

    def find(self, selector: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def find_all(self, selector: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def text(self, selector: str) -> str:
        """The text content of the first match ('' when none), shown or not."""
        found = self.find_all(selector)
        return (found[0].get_attribute("textContent") or "") if found else ""

    def visible_text(self) -> str:
        """What a reader sees on the page (rendered text, hidden parts left out)."""
        return self.driver.execute_script("return document.body.innerText")

    def open_all_details(self) -> None:
        for summary in self.find_all("details:not([open]) > summary"):
            summary.click()

    # Evidence.

    def screenshot(self, page: str) -> Path:
        """The whole page as a PNG named after the test, the page and the window width."""
        width = self.driver.execute_script("return window.innerWidth")
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True,
             "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                      "scale": 1}},
        )  # fmt: skip
        path = self.output / f"{self.screenshot_name(page)}-{width}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def screenshot_name(self, page: str) -> str:
        return f"{_safe(self.test_name)}-{page}"

    def browser_log(self) -> list[str]:
        """Chromium's console messages since the last call (CSP violations land here)."""
        return [entry["message"] for entry in self.driver.get_log("browser")]

    def assert_inert(self) -> None:
        """No dialog opened, no element or script came from device data, nothing it set runs."""
        try:
            alert = self.driver.switch_to.alert
        except NoAlertPresentException:
            pass
        else:
            raise AssertionError(f"a dialog opened: {alert.text!r}")
        assert self.find_all('img[src="x"]') == []
        scripts = self.driver.execute_script(
            "return Array.from(document.scripts, s => s.src || s.textContent)"
        )
        assert all(s.startswith(self.url + "/admin/") for s in scripts), scripts
        assert self.driver.execute_script("return typeof window.__pwned") == "undefined"


def _first(elements: list[WebElement]) -> WebElement | None:
    return elements[0] if elements else None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
