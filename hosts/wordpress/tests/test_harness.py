"""The harness itself: WordPress installed on its own MariaDB, served by Apache + mod_php as the
web server's user, the plugin active, and a database that can be stopped and started again."""

from __future__ import annotations

import pwd
import stat
from pathlib import Path

import pytest

from conftest import plugin_available
from harness import PLUGIN_MAIN, WEB_USER, MariaDB, WordPressSite


def test_wordpress_serves_login_and_rest_under_apache(wordpress: WordPressSite):
    login = wordpress.http.get("/wp-login.php")
    assert login.status == 200, login.text[:500]
    assert 'name="log"' in login.text
    index = wordpress.http.get("/wp-json/")
    assert index.status == 200, index.text[:500]
    assert "wp/v2" in index.json()["namespaces"]
    # The PHP under Apache is mod_php (not php -S, not CGI), with FFI allowed for this site only.
    probe = wordpress.path / "harness-probe.php"
    probe.write_text("<?php echo json_encode([php_sapi_name(), ini_get('ffi.enable'),"
                     " posix_getpwuid(posix_geteuid())['name']]);")
    try:
        sapi, ffi, user = wordpress.http.get("/harness-probe.php").json()
    finally:
        probe.unlink()
    assert sapi == "apache2handler"
    assert ffi == "1"
    assert user == WEB_USER


def test_php_runs_inside_wordpress_as_the_web_server_user(wordpress: WordPressSite):
    assert wordpress.php_json("posix_getpwuid(posix_geteuid())['name']") == WEB_USER
    assert wordpress.php_json("get_option('permalink_structure')") == "/%postname%/"
    assert wordpress.php_json("home_url()") == wordpress.url
    user_id = wordpress.create_user("harness_probe", role="subscriber")
    assert wordpress.php_json(f"get_userdata({user_id})->user_login") == "harness_probe"


@pytest.mark.skipif(not plugin_available(), reason="the plugin's main file does not exist yet")
def test_the_plugin_is_active_with_its_binaries(wordpress: WordPressSite):
    assert PLUGIN_MAIN in wordpress.php_json("get_option('active_plugins')")
    native = wordpress.php_json("\\ScimProvisioner\\WordPress\\Plugin::instance()->nativeFiles()")
    if wordpress.plugin_zip is not None:
        # Installed from the zip: the binaries are the ones it ships, in the plugin's native/.
        for key in ("library", "wasm", "header"):
            assert native[key] == str(wordpress.plugin_dir / "native" / Path(native[key]).name), native
    else:
        assert native["library"] and native["wasm"], native
    # The precompiled-component cache: created on activation by the web server's user, 0700.
    cache = wordpress.path / "wp-content" / "cache" / "scim-provisioner"
    assert cache.is_dir()
    assert pwd.getpwuid(cache.stat().st_uid).pw_name == WEB_USER
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert wordpress.php_json("\\ScimProvisioner\\WordPress\\Plugin::instance()->cacheStatus()")["usable"] is True


def test_an_administrator_logs_in_with_the_form(wordpress: WordPressSite):
    session = wordpress.login(wordpress.admin_user, wordpress.admin_password)
    dashboard = session.get("/wp-admin/")
    assert dashboard.status == 200
    assert "Dashboard" in dashboard.text


def test_the_database_can_be_stopped_and_started_again(mariadb: MariaDB, wordpress: WordPressSite):
    mariadb.query(wordpress.db_name, "CREATE TABLE harness_probe (v INT); INSERT INTO harness_probe VALUES (7);")
    mariadb.stop()
    assert not mariadb.running
    down = wordpress.http.get("/wp-json/")
    assert down.status == 500  # WordPress's "Error establishing a database connection"
    mariadb.start()
    assert mariadb.query(wordpress.db_name, "SELECT v FROM harness_probe") == [["7"]]
    assert wordpress.http.get("/wp-json/").status == 200
