"""The plugin's settings screens in a real browser (headless Debian chromium, Selenium) on a
WordPress served by Apache + mod_php: the SCIM client tab (a wrong token, then the right one),
a saved token never following a changed base URL, forged nonces, a subscriber kept out of the
screens and the SCIM REST routes, and the Server side tab (a token shown once; a user the
identity provider created logs in at wp-login.php). Results are read back over plain HTTP."""

from __future__ import annotations

import secrets

from selenium.webdriver.common.by import By

from browser.fixtures import admin, chromium, peer  # noqa: F401 - pytest fixtures, used by name
from browser.fixtures import client_settings, configure
from browser.recorder import RecordingServer
from browser.wpadmin import SETTINGS, WpAdmin, chromium_session
from harness import form, scim_request, wait_for

EXPIRED = "The link you followed has expired."


def log_rows(site, user_id: int) -> int:
    return int(site.php_json(f"count(array_filter(\\ScimProvisioner\\WordPress\\Plugin::instance()->log()->page(0, 1000, false),"
                             f" fn ($r) => $r['user_id'] === {user_id}))"))


def test_save_and_test_a_wrong_token_then_the_right_one(admin: WpAdmin, peer):
    a = admin
    wrong = "wrong-" + secrets.token_hex(8)
    a.tab("client")
    # Not a URL: refused with the reason, nothing saved.
    a.fill("scim-base-url", "scim.example/v2")
    a.fill("scim-token", wrong)
    a.d.execute_script("document.getElementById('scim-base-url').type = 'text'")  # past the browser's own check
    a.click("scim-save-test")
    assert "base URL" in a.notice_text("client-error-0")
    assert a.has("setting-error-scim-client-not-saved")
    assert a.d.find_element(By.ID, "scim-base-url").get_attribute("value") == "scim.example/v2"
    assert wrong not in a.d.page_source
    assert client_settings(a.site)["token_saved"] is False
    a.fill("scim-base-url", peer.base_url)
    a.check("scim-auth-bearer")
    a.fill("scim-token", wrong)
    a.fill("scim-timeout", "20")
    a.click("scim-save-test")
    failure = a.notice_text("client-test")
    assert failure.startswith("Test failed"), failure
    assert "401" in failure or "authentication" in failure.lower(), failure
    assert wrong not in a.d.page_source
    assert "A token is saved" in a.text("#scim-token-state")
    assert a.d.find_element(By.ID, "scim-token").get_attribute("value") == ""
    a.shot("client-test-failed")

    a.fill("scim-token", peer.token)
    a.click("scim-save-test")
    assert a.notice_text("client-test").startswith("Connection successful"), a.notice_text("client-test")
    assert a.has("scim-capabilities")
    assert peer.token not in a.d.page_source
    assert a.d.find_element(By.ID, "scim-base-url").get_attribute("value") == peer.base_url
    a.shot("client-settings", docs="wordpress-settings.png")
    saved = client_settings(a.site)
    assert saved["base_url"] == peer.base_url and saved["token_saved"] is True and saved["timeout_ms"] == 20000


def test_a_new_base_url_without_the_token_never_gets_the_old_one(admin: WpAdmin, peer):
    a, site = admin, admin.site
    configure(site, base_url=peer.base_url, auth="bearer", token=peer.token, automatic=True)
    recorder = RecordingServer()
    try:
        a.tab("client")
        assert "A token is saved" in a.text("#scim-token-state")
        a.fill("scim-base-url", recorder.url + "/scim/v2")
        a.click("scim-save-test")
        assert "cleared" in a.notice_text("client-secret-cleared")
        assert a.notice_text("client-test").startswith("Test failed")
        assert "No token saved" in a.text("#scim-token-state")
        a.shot("client-origin-changed")
        assert client_settings(site)["token_saved"] is False

        # Deliveries to the new origin: automatic (a new user: its PHP process has ended, so its
        # delivery at shutdown has run) and on demand (Provision now).
        user_id = site.create_user("origin_probe", role="subscriber")
        a.go("/wp-admin/users.php")
        a.go(a.d.find_element(By.CSS_SELECTOR, f"#user-{user_id} a.scim-provision-now").get_attribute("href").removeprefix(site.url))
        assert a.notice_text("provision-now").startswith("origin_probe:")
        assert all(peer.token not in value for value in recorder.authorization_headers()), recorder.requests
        assert all(peer.token not in str(r) for r in recorder.requests)

        # The control: a token entered for the new origin does reach it.
        a.tab("client")
        a.fill("scim-token", "for-the-recorder")
        a.click("scim-save-test")
        wait_for(lambda: "Bearer for-the-recorder" in recorder.authorization_headers(), "the new token at the new origin")
        assert all(peer.token not in value for value in recorder.authorization_headers())
    finally:
        recorder.stop()
        configure(site, base_url=peer.base_url, token=peer.token)


def test_a_forged_nonce_is_refused(admin: WpAdmin, peer):
    a, site = admin, admin.site
    configure(site, base_url=peer.base_url, auth="bearer", token=peer.token)
    # In the browser: the real form with its nonce replaced.
    a.tab("client")
    a.fill("scim-base-url", "http://127.0.0.1:9/elsewhere")
    a.d.execute_script("document.querySelector('#scim-client-form input[name=_wpnonce]').value = 'f0f0f0f0f0'")
    a.click("scim-save")
    assert EXPIRED in a.d.page_source
    assert client_settings(site)["base_url"] == peer.base_url
    assert client_settings(site)["token_saved"] is True
    # Over HTTP with the administrator's cookies: 403 for each action, nothing done.
    session = site.login(site.admin_user, site.admin_password)
    for action, fields in (("save_client", {"base_url": "http://127.0.0.1:9/x", "timeout_s": "10", "auth": "bearer"}),
                           ("save_provisioning", {"deletion_threshold": "0", "schedule": "off", "deprovision": "none"}),
                           ("run_sync", {"allow_deletes": "1"})):
        resp = session.post("/wp-admin/admin-post.php", form(action=f"scim_provisioner_{action}", _wpnonce="0123456789", **fields))
        assert resp.status == 403, (action, resp.status)
        assert EXPIRED in resp.text
    before = log_rows(site, 1)
    resp = session.get("/wp-admin/admin-post.php?action=scim_provisioner_provision_user&user_id=1&_wpnonce=0123456789")
    assert resp.status == 403
    resp = session.post(SETTINGS + "&tab=server", form(rotate_token="1", _wpnonce="0123456789"))
    assert resp.status == 403
    assert client_settings(site)["base_url"] == peer.base_url
    assert client_settings(site)["deprovision"] != "none"
    assert log_rows(site, 1) == before


def test_a_subscriber_opens_neither_the_screens_nor_the_scim_routes(wordpress):
    site = wordpress
    password = "Sub-" + secrets.token_urlsafe(12)
    site.create_user("sub_viewer", role="subscriber", password=password)
    with chromium_session() as driver:
        b = WpAdmin(driver, site)
        b.login("sub_viewer", password)
        for tab in ("client", "mapping", "provisioning", "log", "server"):
            b.go(f"{SETTINGS}&tab={tab}")
            assert "Sorry, you are not allowed to access this page." in driver.page_source, tab
            assert not b.has("scim-provisioner")
        # The REST routes with the subscriber's cookie and a valid wp_rest nonce (the nonce works
        # for WordPress's own route, so the refusal is the plugin's).
        result = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            (async () => {
              const nonce = (await (await fetch('/wp-admin/admin-ajax.php?action=rest-nonce', {credentials: 'same-origin'})).text()).trim();
              const me = await fetch('/wp-json/wp/v2/users/me', {credentials: 'same-origin', headers: {'X-WP-Nonce': nonce}});
              const out = {nonce: nonce, me: me.status};
              for (const path of ['/wp-json/scim/v2/Users', '/wp-json/scim/v2/ServiceProviderConfig', '/wp-json/scim/v2/Groups']) {
                out[path] = (await fetch(path, {credentials: 'same-origin', headers: {'X-WP-Nonce': nonce}})).status;
              }
              const post = await fetch('/wp-json/scim/v2/Users', {method: 'POST', credentials: 'same-origin',
                headers: {'X-WP-Nonce': nonce, 'Content-Type': 'application/scim+json'},
                body: JSON.stringify({schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'sub_made'})});
              out.post = post.status;
              const action = await fetch('/wp-admin/admin-post.php', {method: 'POST', credentials: 'same-origin',
                headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'action=scim_provisioner_plan_sync'});
              out.action = action.status;
              return out;
            })().then(done, e => done({error: String(e)}));
        """)
        assert result.get("me") == 200, result
        assert result["/wp-json/scim/v2/Users"] == 401, result
        assert result["/wp-json/scim/v2/ServiceProviderConfig"] == 401, result
        assert result["/wp-json/scim/v2/Groups"] == 401, result
        assert result["post"] == 401, result
        assert result["action"] == 403, result
    assert site.php_json("get_user_by('login', 'sub_made')") is False


def test_server_side_token_is_shown_once_and_a_scim_user_logs_in(admin: WpAdmin, wordpress):
    a, site = admin, wordpress
    a.tab("server")
    assert a.d.find_element(By.ID, "scim-server-base-url").get_attribute("value") == site.scim_base
    if "No token yet" in a.text("#scim-token-status"):
        a.click("scim-rotate-token")
    else:
        a.d.execute_script("window.__previousPage = true")
        a.d.find_element(By.ID, "scim-rotate-token").click()
        a.d.switch_to.alert.accept()
        a.wait().until(lambda d: d.execute_script("return window.__previousPage === undefined && document.readyState === 'complete'"))
    token = a.d.find_element(By.ID, "scim-new-token").get_attribute("value")
    assert len(token) >= 32
    a.tab("server")  # shown once: never again
    assert token not in a.d.page_source and not a.has("scim-new-token")
    assert site.php_json("json_encode(get_option('scim_provisioner_server'))").find(token) == -1

    password = "Idp-" + secrets.token_urlsafe(14)
    status, body = site.scim("POST", "/Users", token, {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "idp_carol",
        "name": {"givenName": "Carol", "familyName": "Idp"}, "emails": [{"value": "carol@example.test", "primary": True}],
        "password": password, "active": True})
    assert status == 201, body
    assert "password" not in body
    stored = site.php_json("get_user_by('login', 'idp_carol')->user_pass")
    assert stored != password and site.php_json(f"wp_check_password({password!r}, {stored!r})") is True

    a.tab("server")
    row = a.d.find_element(By.CSS_SELECTOR, '#scim-created-users tr[data-user="idp_carol"]')
    assert body["id"] in row.text
    a.shot("server-side")

    # Rotating stops the old token at once.
    a.d.execute_script("window.__previousPage = true")
    a.d.find_element(By.ID, "scim-rotate-token").click()
    a.d.switch_to.alert.accept()
    a.wait().until(lambda d: d.execute_script("return window.__previousPage === undefined && document.readyState === 'complete'"))
    rotated = a.d.find_element(By.ID, "scim-new-token").get_attribute("value")
    assert rotated != token
    assert scim_request("GET", site.scim_base + "/Users", token)[0] == 401
    assert scim_request("GET", site.scim_base + "/Users", rotated)[0] == 200

    with chromium_session() as driver:
        user = WpAdmin(driver, site)
        user.login("idp_carol", password)  # waits for the admin bar: logged in
        assert "/wp-admin/" in driver.current_url
        assert "idp_carol" in driver.find_element(By.ID, "wpadminbar").get_attribute("innerHTML")


def test_the_basic_password_is_write_only(admin: WpAdmin, peer):
    a, site = admin, admin.site
    configure(site, base_url=peer.base_url, auth="bearer", token=peer.token)
    password = "basic-" + secrets.token_hex(10)
    try:
        a.tab("client")
        a.check("scim-auth-basic")
        a.fill("scim-basic-user", "svc_wordpress")
        a.fill("scim-basic-password", password)
        a.click("scim-save")
        assert a.has("setting-error-scim-client-saved")
        assert password not in a.d.page_source
        assert a.d.find_element(By.ID, "scim-basic-password").get_attribute("value") == ""
        assert "A password is saved" in a.text("#scim-basic-password-state")
        assert a.d.find_element(By.ID, "scim-basic-user").get_attribute("value") == "svc_wordpress"
        saved = client_settings(site)
        assert saved["auth"] == "basic" and saved["basic_password_saved"] is True and saved["basic_password"] == ""
        # Saved again with the field left empty: the password is kept, not blanked.
        a.click("scim-save")
        assert client_settings(site)["basic_password_saved"] is True
        # Not stored as typed either (Settings keeps secrets encrypted in the option).
        assert password not in site.php("echo serialize(get_option('scim_provisioner_client'));")
    finally:
        configure(site, auth="bearer")
