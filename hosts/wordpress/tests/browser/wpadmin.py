"""wp-admin in a real browser: headless Debian chromium + chromedriver through Selenium.

``WpAdmin`` wraps a driver and a harness ``WordPressSite``: log in at wp-login.php, open the
plugin's tabs, submit forms and wait for the next page (never a fixed sleep), read WordPress's
notices, save screenshots to $SCREENSHOT_DIR (default target/wordpress-screens)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from harness import REPO, WordPressSite

SHOTS = Path(os.environ.get("SCREENSHOT_DIR", REPO / "target" / "wordpress-screens"))
WAIT = 90  # seconds, an upper bound: every wait polls for its condition
SETTINGS = "/wp-admin/options-general.php?page=scim-provisioner"


@contextlib.contextmanager
def chromium_session() -> Iterator[webdriver.Chrome]:
    """A headless chromium with a profile of its own, quit and removed at the end."""
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="chromium-wp-")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--no-proxy-server", "--password-store=basic", f"--user-data-dir={profile}", "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class WpAdmin:
    def __init__(self, driver: webdriver.Chrome, site: WordPressSite) -> None:
        self.d = driver
        self.site = site

    # -- navigation

    def wait(self) -> WebDriverWait:
        return WebDriverWait(self.d, WAIT, poll_frequency=0.1, ignored_exceptions=[WebDriverException])

    def go(self, path: str) -> None:
        self.d.get(self.site.url + path)
        self.wait().until(lambda d: d.execute_script("return document.readyState") == "complete")

    def tab(self, name: str, **args: str) -> None:
        query = "".join(f"&{k}={v}" for k, v in args.items())
        self.go(f"{SETTINGS}&tab={name}{query}")
        self.wait().until(EC.presence_of_element_located((By.ID, "scim-provisioner")))

    def submit(self, element: WebElement) -> None:
        """Clicks a submit button (or link) and waits until the next page has loaded: the old
        page carries a marker the new one lacks."""
        self.d.execute_script("window.__previousPage = true")
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()
        self.wait().until(lambda d: d.execute_script(
            "return window.__previousPage === undefined && document.readyState === 'complete'"))

    def click(self, element_id: str) -> None:
        self.submit(self.d.find_element(By.ID, element_id))

    def login(self, user: str, password: str) -> None:
        """Logs in through wp-login.php's form, as someone else first logged out."""
        self.d.delete_all_cookies()
        self.go("/wp-login.php")
        self.d.delete_all_cookies()  # cookies can only be cleared on the site's own page; login needs its test cookie again
        self.go("/wp-login.php")
        self.fill("user_login", user)
        self.fill("user_pass", password)
        self.click("wp-submit")
        self.wait().until(EC.presence_of_element_located((By.ID, "wpadminbar")))

    # -- forms

    def fill(self, element_id: str, value: str) -> None:
        el = self.d.find_element(By.ID, element_id)
        el.clear()
        if value:
            el.send_keys(value)

    def select(self, element_id: str, value: str) -> None:
        Select(self.d.find_element(By.ID, element_id)).select_by_value(value)

    def check(self, element_id: str, on: bool = True) -> None:
        el = self.d.find_element(By.ID, element_id)
        if el.is_selected() != on:
            self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
            el.click()

    # -- reading

    def notice(self, code: str) -> WebElement:
        """A settings-error notice the plugin pushed (id setting-error-scim-<code>)."""
        return self.d.find_element(By.ID, f"setting-error-scim-{code}")

    def notice_text(self, code: str) -> str:
        return self.notice(code).text

    def has(self, element_id: str) -> bool:
        return bool(self.d.find_elements(By.ID, element_id))

    def text(self, css: str) -> str:
        return self.d.find_element(By.CSS_SELECTOR, css).text

    def shot(self, name: str, docs: Optional[str] = None) -> None:
        """A full-page screenshot to SHOTS/<name>.png (and to docs/screens/<docs> when given)."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        height = self.d.execute_script("return document.body.scrollHeight")
        self.d.set_window_size(1280, max(700, min(height + 40, 2400)))
        path = SHOTS / f"{name}.png"
        self.d.save_screenshot(str(path))
        self.d.set_window_size(1280, 1000)
        if docs and os.environ.get("SCIM_WP_UPDATE_DOCS_SCREENS") == "1":
            shutil.copyfile(path, REPO / "docs" / "screens" / docs)
