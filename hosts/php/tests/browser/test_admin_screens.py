"""The Drupal-like site's admin screens in a real browser (headless Debian chromium driven by
Selenium), against php -S (started by samples/admin-site with the FFI preload settings) and a
real scim2-server. Every result is also read back from scim2-server over plain HTTP.

Screenshots of each screen go to $SCREENSHOT_DIR (default target/browser-screens)."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

ROOT = Path(__file__).resolve().parents[4]
ADMIN_SITE = ROOT / "hosts/php/samples/admin-site"
SHOTS = Path(os.environ.get("SCREENSHOT_DIR", ROOT / "target/browser-screens"))
WAIT = 60  # seconds, an upper bound: every wait polls for its condition


@pytest.fixture(scope="module")
def site():
    state = tempfile.mkdtemp(prefix="admin-site-test-")
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    proc = subprocess.Popen([str(ADMIN_SITE), "--dir", state, "--with-scim2-server", "--with-joomla"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    info = {}
    for line in proc.stdout:  # the start command prints its URLs and the password, then waits
        if ":" in line:
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
        if line.startswith("Press Ctrl-C") or line.startswith("admin-site:"):
            break
    assert "Admin site" in info, f"admin-site did not start: {info}"
    yield {"url": info["Admin site"].rstrip("/"), "password": info["Admin password"], "scim": info["scim2-server"],
           "token": info["scim2-server token"], "dir": state,
           "joomla": info["Joomla-like site"].split()[0]}
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def scim_get(site, path):
    """GET on scim2-server over plain HTTP (no proxy): (status, JSON)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(site["scim"] + path, headers={"Authorization": f"Bearer {site['token']}"})
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


def remote_user(site, name):
    _, body = scim_get(site, "/Users?filter=" + urllib.parse.quote(f'userName eq "{name}"'))
    return (body or {}).get("Resources", [None])[0] if (body or {}).get("totalResults") else None


def shot(driver, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1280, max(700, min(height + 40, 2400)))
    driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.set_window_size(1280, 1000)


def wait(driver):
    return WebDriverWait(driver, WAIT, poll_frequency=0.1)


def submit(driver, element):
    """Clicks a submit button and waits until the next page has loaded: the old page carries
    a marker the new one lacks (sturdier than staleness_of, which chromedriver can trip over
    mid-navigation)."""
    driver.execute_script("window.__previousPage = true")
    element.click()
    WebDriverWait(driver, WAIT, poll_frequency=0.1, ignored_exceptions=[WebDriverException]).until(lambda d: d.execute_script(
        "return window.__previousPage === undefined && document.readyState === 'complete'"))


def flash(driver):
    return wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".flash"))).text


def go(driver, site, path):
    driver.get(site["url"] + path)
    wait(driver).until(EC.presence_of_element_located((By.TAG_NAME, "h1")))


def fill(driver, field_id, value):
    el = driver.find_element(By.ID, field_id)
    el.clear()
    el.send_keys(value)


def user_row(driver, name):
    return driver.find_element(By.CSS_SELECTOR, f'#users tr[data-user="{name}"]')


def user_action(driver, site, name, action):
    go(driver, site, "/users")
    submit(driver, user_row(driver, name).find_element(By.CSS_SELECTOR, f'[data-action="{action}"]'))
    return flash(driver)


def add_user(driver, site, name, first, last):
    go(driver, site, "/users?add=1")
    fill(driver, "user-name", name)
    fill(driver, "user-mail", f"{name}@example.com")
    fill(driver, "user-first", first)
    fill(driver, "user-last", last)
    submit(driver, driver.find_element(By.ID, "save-user"))
    return flash(driver)


def log_outcomes(driver, site):
    go(driver, site, "/log")
    return [(r.find_element(By.CSS_SELECTOR, "td:nth-child(3)").text, r.find_element(By.CSS_SELECTOR, ".outcome").text)
            for r in driver.find_elements(By.CSS_SELECTOR, "#log tbody tr")]


def test_admin_screens_end_to_end(site, browser):
    d = browser
    # ---- log in (a page needs the session; the login form has a CSRF token)
    go(d, site, "/users")
    assert "/login" in d.current_url
    fill(d, "password", "wrong")
    submit(d, d.find_element(By.ID, "login"))
    assert "wrong password" in d.find_element(By.ID, "login-error").text
    shot(d, "login")
    fill(d, "password", site["password"])
    submit(d, d.find_element(By.ID, "login"))
    assert "/users" in d.current_url
    cookie = d.get_cookie("drupal_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # ---- SCIM client settings: a bad URL is refused inline, then a wrong token fails the test
    go(d, site, "/settings")
    fill(d, "base_url", "joomla.example")
    fill(d, "token", "wrong-token")
    fill(d, "timeout", "10")
    submit(d, d.find_element(By.ID, "save-test"))
    assert "base URL" in d.find_element(By.ID, "error-base_url").text
    fill(d, "base_url", site["scim"])
    fill(d, "token", "wrong-token")
    submit(d, d.find_element(By.ID, "save-test"))
    result = d.find_element(By.ID, "test-result").text
    assert "Test failed" in result and "401" in result, result
    assert "wrong-token" not in d.page_source
    shot(d, "settings-failure")

    # ---- with the wrong token, a new user's delivery fails and is parked (401 is permanent)
    message = add_user(d, site, "erin", "Erin", "Example")
    assert "failed" in message and "401" in message, message
    go(d, site, "/log")
    parked = d.find_element(By.CSS_SELECTOR, '#outbox tr.parked[data-user="erin"]')
    assert "parked" in parked.text
    # the admin is told what Retry sends before pressing it
    assert "as the site holds them now" in d.find_element(By.ID, "retry-help").text
    assert "now" in parked.find_element(By.CSS_SELECTOR, '[data-action="retry"]').get_attribute("title")
    d.find_element(By.ID, "filter-failures").click()
    wait(d).until(EC.url_contains("failures=1"))
    row = d.find_element(By.CSS_SELECTOR, "#log tbody tr")
    assert row.find_element(By.CSS_SELECTOR, ".outcome").text == "failed"
    assert row.find_element(By.CSS_SELECTOR, ".status").text == "401"
    assert "authentication rejected" in row.find_element(By.CSS_SELECTOR, ".reason").text
    go(d, site, "/log")
    shot(d, "log-parked")

    # ---- the right token: success, capabilities and findings; the token never renders again
    go(d, site, "/settings")
    fill(d, "token", site["token"])
    submit(d, d.find_element(By.ID, "save-test"))
    assert "Connection successful" in d.find_element(By.ID, "test-result").text
    assert "PATCH" in d.find_element(By.ID, "capabilities").text
    assert d.find_element(By.ID, "findings").text
    assert site["token"] not in d.page_source
    assert d.find_element(By.ID, "token").get_attribute("value") == ""
    shot(d, "settings")

    # ---- retry the parked change: erin reaches scim2-server
    go(d, site, "/log")
    submit(d, d.find_element(By.CSS_SELECTOR, '#outbox tr[data-user="erin"] [data-action="retry"]'))
    assert "Retried: created" in flash(d)
    assert remote_user(site, "erin") is not None
    assert d.find_elements(By.ID, "outbox-empty")

    # ---- attribute mapping: a bad rule is reported next to it (nothing saved), then a good one; preview
    go(d, site, "/mapping")
    new = d.find_elements(By.CSS_SELECTOR, "#rules tr.new-rule")[0]
    index = new.get_attribute("id").split("-")[1]
    new.find_element(By.NAME, f"rules[{index}][target]").send_keys("active")
    Select(new.find_element(By.NAME, f"rules[{index}][kind]")).select_by_value("constant")
    new.find_element(By.NAME, f"rules[{index}][value]").send_keys("yes")
    submit(d, d.find_element(By.ID, "save-mapping"))
    assert "type mismatch" in d.find_element(By.ID, f"rule-error-{index}").text
    assert "Nothing was saved" in d.find_element(By.ID, "form-error").text
    shot(d, "mapping-error")
    target = d.find_element(By.NAME, f"rules[{index}][target]")
    target.clear()
    target.send_keys("title")
    value = d.find_element(By.NAME, f"rules[{index}][value]")
    value.clear()
    value.send_keys("Staff")
    submit(d, d.find_element(By.ID, "save-mapping"))
    assert "mapping was saved" in flash(d)
    # add a second rule, then remove it again
    new = d.find_elements(By.CSS_SELECTOR, "#rules tr.new-rule")[0]
    extra = new.get_attribute("id").split("-")[1]
    new.find_element(By.NAME, f"rules[{extra}][target]").send_keys("nickName")
    new.find_element(By.NAME, f"rules[{extra}][value]").send_keys("name")
    submit(d, d.find_element(By.ID, "save-mapping"))
    assert "mapping was saved" in flash(d)
    assert d.find_element(By.NAME, f"rules[{extra}][target]").get_attribute("value") == "nickName"
    d.find_element(By.NAME, f"rules[{extra}][remove]").click()
    submit(d, d.find_element(By.ID, "save-mapping"))
    assert "mapping was saved" in flash(d)
    targets = [el.get_attribute("value") for el in d.find_elements(By.CSS_SELECTOR, "#rules input[name$='[target]']")]
    assert "nickName" not in targets and "title" in targets
    fill(d, "preview-user", "erin")
    submit(d, d.find_element(By.ID, "preview-button"))
    preview = json.loads(d.find_element(By.ID, "preview-json").text)
    assert preview["title"] == "Staff" and preview["userName"] == "erin"
    shot(d, "mapping")

    # ---- provisioning: deprovision by deleting; a bad threshold is refused inline
    go(d, site, "/provisioning")
    d.find_element(By.ID, "op-delete").click()
    d.find_element(By.ID, "deprovision-delete").click()
    fill(d, "threshold", "lots")
    submit(d, d.find_element(By.ID, "save-provisioning"))
    assert "threshold" in d.find_element(By.ID, "error-threshold").text
    assert d.find_element(By.ID, "op-delete").is_selected()  # the input is kept
    fill(d, "threshold", "50%")
    submit(d, d.find_element(By.ID, "save-provisioning"))
    assert "saved" in flash(d)
    shot(d, "provisioning")

    # ---- people: create, edit, block, delete alice; each result in the log and on scim2-server
    assert "created" in add_user(d, site, "alice", "Alice", "Liddell")
    remote = remote_user(site, "alice")
    assert remote["title"] == "Staff" and remote["name"]["familyName"] == "Liddell" and remote["active"] is True
    remote_id = remote["id"]
    go(d, site, "/users")
    assert user_row(d, "alice").find_element(By.CSS_SELECTOR, ".remote-id").text == remote_id
    user_row(d, "alice").find_element(By.CSS_SELECTOR, '[data-action="edit"]').click()
    wait(d).until(EC.presence_of_element_located((By.ID, "user-form")))
    fill(d, "user-last", "Pleasance")
    submit(d, d.find_element(By.ID, "save-user"))
    assert "updated" in flash(d)
    assert scim_get(site, f"/Users/{remote_id}")[1]["name"]["familyName"] == "Pleasance"
    assert "deactivated" in user_action(d, site, "alice", "block")
    assert scim_get(site, f"/Users/{remote_id}")[1]["active"] is False
    shot(d, "users")
    assert "Provision now" in user_row(d, "alice").text
    assert "provisioned successfully" in user_action(d, site, "alice", "provision")
    assert "deleted" in user_action(d, site, "alice", "delete")
    assert scim_get(site, f"/Users/{remote_id}")[0] == 404
    outcomes = log_outcomes(d, site)
    for op, outcome in [("created", "created"), ("updated", "updated"), ("blocked", "deactivated"), ("deleted", "deleted")]:
        assert (op, outcome) in outcomes, outcomes
    assert d.find_elements(By.CSS_SELECTOR, "#log tbody tr")[0].find_element(By.CSS_SELECTOR, "td:nth-child(3)").text == "deleted"  # newest first
    shot(d, "log")

    # ---- sync now: automatic off, two users queued; the plan first, then the confirmed sync
    go(d, site, "/provisioning")
    d.find_element(By.ID, "automatic").click()
    submit(d, d.find_element(By.ID, "save-provisioning"))
    assert "saved" in flash(d)
    assert "automatic provisioning is off" in add_user(d, site, "bob", "Bob", "Builder")
    assert "automatic provisioning is off" in add_user(d, site, "carol", "Carol", "Singer")
    assert remote_user(site, "bob") is None
    go(d, site, "/provisioning")
    submit(d, d.find_element(By.ID, "sync-now"))
    plan = d.find_element(By.ID, "plan-rows").text
    assert "create" in plan and "bob" in plan and "carol" in plan
    assert remote_user(site, "bob") is None  # the plan sends nothing
    shot(d, "sync-plan")
    submit(d, d.find_element(By.ID, "confirm-sync"))
    assert "Sync finished" in flash(d)
    assert remote_user(site, "bob") is not None and remote_user(site, "carol") is not None
    go(d, site, "/users")
    assert "of 3" in d.find_element(By.ID, "pager").text

    # ---- the schedule: hourly; admin-site runs the due sync, which delivers a queued user
    assert "automatic provisioning is off" in add_user(d, site, "dave", "Dave", "Bowman")
    go(d, site, "/provisioning")
    Select(d.find_element(By.ID, "schedule")).select_by_value("hourly")
    submit(d, d.find_element(By.ID, "save-provisioning"))
    assert "saved" in flash(d)
    wait(d).until(lambda _: remote_user(site, "dave") is not None)
    go(d, site, "/provisioning")
    assert "Last scheduled sync" in d.find_element(By.ID, "last-scheduled").text

    # ---- no secret anywhere: pages, the site's log file
    for path in ("/settings", "/mapping", "/provisioning", "/users", "/log"):
        go(d, site, path)
        assert site["token"] not in d.page_source
    assert site["token"] not in Path(site["dir"], "admin-site.log").read_text()
    # ---- a form without the CSRF token is refused
    d.execute_script("document.querySelector('input[name=csrf]').value = 'forged'")
    submit(d, d.find_element(By.ID, "logout"))
    assert "CSRF" in d.page_source


def http(method, url, token, body=None):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/scim+json", "Accept": "application/scim+json"})
    try:
        with opener.open(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_server_side_screen(site, browser):
    """The Joomla-like site's screen: base URL, a token generated and rotated (shown once), IdP-created users."""
    d = browser
    go(d, site, "/server")
    if "/login" in d.current_url:
        fill(d, "password", site["password"])
        submit(d, d.find_element(By.ID, "login"))
    base = d.find_element(By.ID, "joomla-base-url").get_attribute("value")
    assert base == site["joomla"]
    submit(d, d.find_element(By.ID, "rotate-token"))
    first = d.find_element(By.ID, "new-token").text
    submit(d, d.find_element(By.ID, "rotate-token"))
    token = d.find_element(By.ID, "new-token").text
    assert token != first
    user = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "idp.dana",
            "name": {"givenName": "Dana", "familyName": "Scully"}, "emails": [{"value": "dana@example.com", "type": "work", "primary": True}], "active": True}
    assert http("POST", base + "/Users", first, user) == 401  # the rotated-out token no longer works
    assert http("POST", base + "/Users", token, user) == 201  # the identity provider creates a user
    go(d, site, "/server")
    assert token not in d.page_source and first not in d.page_source  # shown once only
    assert "idp.dana" in d.find_element(By.ID, "joomla-users").text
    shot(d, "server")


def test_pages_stay_fast_with_10000_users(site, browser):
    """10,000 more users and 20,000 log entries, written straight into the site's SQLite file:
    every page still answers quickly (paging with LIMIT/OFFSET, counts from SQL)."""
    import sqlite3

    db = sqlite3.connect(Path(site["dir"], "site.db"), timeout=30)
    with db:
        start = db.execute("SELECT COALESCE(MAX(id), 0) FROM users").fetchone()[0] + 1
        db.executemany("INSERT INTO users (id, name, mail) VALUES (?, ?, ?)",
                       [(i, f"bulk{i}", f"bulk{i}@example.com") for i in range(start, start + 10000)])
        db.executemany("INSERT INTO log (at, user_id, operation, outcome, duration_ms) VALUES ('2026-01-01T00:00:00Z', ?, ?, ?, 1)",
                       [(str(i), op, op) for i in range(start, start + 10000) for op in ("created", "updated")])
    total = db.execute("SELECT COUNT(*) FROM users").fetchone()[0]
    db.close()
    d = browser
    go(d, site, "/users")
    if "/login" in d.current_url:
        fill(d, "password", site["password"])
        submit(d, d.find_element(By.ID, "login"))
    assert d.find_element(By.ID, "total").text == str(total)
    cookie = d.get_cookie("drupal_admin")["value"]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    last_page = (total + 49) // 50
    for path in ("/users", f"/users?page={last_page // 2}", f"/users?page={last_page}", "/log", "/log?page=400", "/log?failures=1"):
        started = time.monotonic()
        with opener.open(urllib.request.Request(site["url"] + path, headers={"Cookie": f"drupal_admin={cookie}"}), timeout=30) as r:
            body = r.read().decode()
        elapsed = time.monotonic() - started
        assert r.status == 200 and "<h1>" in body and "/login" not in r.url, path
        assert elapsed < 1.0, f"{path} took {elapsed:.2f} s"
    go(d, site, f"/users?page={last_page}")
    assert f"bulk{start + 9999}" in d.find_element(By.ID, "users").text
