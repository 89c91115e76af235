"""The plugin under PHP-FPM (Apache event + mod_proxy_fcgi in front of a pool of the site's
own), as the README's FPM lines set it up, and without FFI under the web server: the site keeps
working, the admin is told exactly what to add, and the command line (PHP's defaults) delivers.
The rest of the suite runs under mod_php."""

from __future__ import annotations

import re
from typing import Callable

import pytest

from conftest import plugin_available
from harness import Scim2Server, WordPressSite, edit_user_in_admin, wait_for

pytestmark = pytest.mark.skipif(not plugin_available(), reason="the plugin's main file does not exist yet")

PLUGIN = "\\ScimProvisioner\\WordPress\\Plugin::instance()"


def configure_client(site: WordPressSite, server: Scim2Server, automatic: bool) -> None:
    errors = site.php_json(f"""{PLUGIN}->settings()->save([
    'base_url' => '{server.base_url}', 'auth' => 'bearer', 'token' => '{server.token}',
    'automatic' => {'true' if automatic else 'false'}, 'schedule' => 'off'])""")
    assert not errors, errors


def web_php(site: WordPressSite, code: str) -> str:
    """Runs PHP in a web request (not the CLI) and returns its output."""
    probe = site.path / "harness-web-probe.php"
    probe.write_text("<?php " + code)
    try:
        resp = site.http.get("/harness-web-probe.php")
        assert resp.status == 200, resp.text[:500]
        return resp.text
    finally:
        probe.unlink()


def given_name(server: Scim2Server, user_name: str) -> str | None:
    user = server.user_by_name(user_name)
    return None if user is None else (user.get("name") or {}).get("givenName")


def test_under_php_fpm_both_roles_work_and_a_save_is_delivered_after_the_response(
        wp_site: Callable[..., WordPressSite], scim2_server: Scim2Server):
    site = wp_site("fpm", sapi="fpm")
    assert web_php(site, "echo php_sapi_name(), ' ', ini_get('ffi.enable');") == "fpm-fcgi 1"
    assert site.php_json(f"{PLUGIN}->notices()") == []

    # Server role: the SCIM routes through FPM, the bearer token passed on by WordPress's .htaccess.
    token = site.php(f"echo {PLUGIN}->server()->rotateToken();").strip()
    status, created = site.scim("POST", "/Users", token, {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "fpm.idp", "active": True,
        "name": {"givenName": "Fpm", "familyName": "Idp"}, "emails": [{"value": "fpm.idp@example.test"}]})
    assert status == 201, created
    status, read = site.scim("GET", f"/Users/{created['id']}", token)
    assert status == 200 and read["userName"] == "fpm.idp", read
    assert site.scim("GET", "/Users", None)[0] == 401

    # Client role: a save in wp-admin, delivered automatically after the response
    # (fastcgi_finish_request under FPM).
    configure_client(site, scim2_server, automatic=True)
    user_id = site.create_user("fpm.user", first_name="Before")
    wait_for(lambda: given_name(scim2_server, "fpm.user") == "Before", "fpm.user on scim2-server")
    session = site.login(site.admin_user, site.admin_password)
    _, resp = edit_user_in_admin(session, user_id, first_name="After")
    assert resp.status == 302
    wait_for(lambda: given_name(scim2_server, "fpm.user") == "After", "the change on scim2-server")
    assert token not in site.log_text() and scim2_server.token not in site.log_text()


@pytest.mark.parametrize("sapi", ["mod_php", "fpm"])
def test_without_ffi_under_the_web_server_the_site_works_and_the_worker_delivers(
        sapi: str, wp_site: Callable[..., WordPressSite], scim2_server: Scim2Server):
    site = wp_site(f"noffi-{sapi}".replace("_", ""), sapi=sapi, ffi=False)
    assert web_php(site, "echo ini_get('ffi.enable');") == "preload"
    configure_client(site, scim2_server, automatic=True)
    token = site.php(f"echo {PLUGIN}->server()->rotateToken();").strip()
    user_id = site.create_user("noffi.user", first_name="Queued")
    wait_for(lambda: given_name(scim2_server, "noffi.user") == "Queued", "noffi.user (CLI has FFI)")

    # The admin's save works; the change waits in the outbox, and the notice says what to add.
    session = site.login(site.admin_user, site.admin_password)
    _, resp = edit_user_in_admin(session, user_id, first_name="Changed")
    assert resp.status == 302
    dashboard = session.get("/wp-admin/")
    assert dashboard.status == 200
    text = re.sub(r"\s+", " ", dashboard.text)
    assert "php_admin_value ffi.enable 1" in text, "the notice names mod_php's line"
    assert "php_admin_value[ffi.enable] = true" in text, "the notice names FPM's line"
    assert given_name(scim2_server, "noffi.user") == "Queued"
    assert site.php_json(f"{PLUGIN}->outbox()->counts({user_id})")["pending"] >= 1

    # The SCIM routes say they cannot serve, as SCIM, without breaking the site.
    status, body = site.scim("GET", "/Users", token)
    assert status == 503, body
    assert isinstance(body, dict) and str(body.get("status")) == "503", body
    assert site.http.get("/wp-login.php").status == 200

    # The command line (PHP's default ffi.enable=preload allows FFI there) delivers the queue.
    site.worker("drain")
    assert given_name(scim2_server, "noffi.user") == "Changed"


def test_under_php_fpm_with_the_bridge_preloaded_and_ffi_left_at_preload(
        wp_site: Callable[..., WordPressSite], scim2_server: Scim2Server):
    """The README's other FPM set-up: ffi.enable stays at PHP's default (preload), and FPM's
    master preloads the bridge's declarations (ffi.preload, from lib/bin/ffi-preload-header) and
    the PHP library (opcache.preload = lib/preload.php, opcache.preload_user)."""
    site = wp_site("fpmpre", sapi="fpm", ffi="preload")
    assert web_php(site, "echo ini_get('ffi.enable'), ' ', ini_get('opcache.preload') !== '' ? 'preloaded' : 'none';") \
        == "preload preloaded"
    token = site.php(f"echo {PLUGIN}->server()->rotateToken();").strip()
    status, body = site.scim("GET", "/ServiceProviderConfig", token)
    assert status == 200, body
    status, created = site.scim("POST", "/Users", token, {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "preloaded.idp"})
    assert status == 201, created
    configure_client(site, scim2_server, automatic=True)
    user_id = site.create_user("preload.user", first_name="Before")
    wait_for(lambda: given_name(scim2_server, "preload.user") == "Before", "preload.user on scim2-server")
    session = site.login(site.admin_user, site.admin_password)
    edit_user_in_admin(session, user_id, first_name="After")
    wait_for(lambda: given_name(scim2_server, "preload.user") == "After", "the change, delivered by FPM")
    dashboard = re.sub(r"\s+", " ", session.get("/wp-admin/").text)
    assert "ffi.enable" not in dashboard, "no FFI notice when the bridge is preloaded"
