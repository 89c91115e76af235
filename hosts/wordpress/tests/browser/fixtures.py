"""Fixtures of the wp-admin browser tests, over the harness's (conftest.py): import them into a
test module (``from browser.fixtures import admin, chromium, peer``).

- ``chromium`` (module): one headless chromium;
- ``peer`` (module): a real scim2-server the site provisions to;
- ``admin`` (module): ``WpAdmin`` on the module's ``wordpress`` site, logged in as its administrator.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from browser.wpadmin import WpAdmin, chromium_session
from harness import Scim2Server, WordPressSite, wait_for

@pytest.fixture(scope="module")
def chromium():
    with chromium_session() as driver:
        yield driver


@pytest.fixture(scope="module")
def peer(wp_temp_root: Path) -> Iterator[Scim2Server]:
    server = Scim2Server(wp_temp_root)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin(chromium, wordpress: WordPressSite) -> WpAdmin:
    browser = WpAdmin(chromium, wordpress)
    browser.login(wordpress.admin_user, wordpress.admin_password)
    return browser


def configure(site: WordPressSite, **settings: Any) -> None:
    """Saves client settings through the plugin's Settings::save (a test's preconditions; what the
    test is about goes through the screens)."""
    errors = json.loads(site.php(
        "echo json_encode(\\ScimProvisioner\\WordPress\\Plugin::instance()->settings()->save("
        f"json_decode({json.dumps(json.dumps(settings))}, true)));"))
    assert errors == [], errors


def client_settings(site: WordPressSite) -> dict:
    """The saved client settings as Settings::all() gives them (secrets blanked, *_saved flags)."""
    return site.php_json("\\ScimProvisioner\\WordPress\\Plugin::instance()->settings()->all()")


def wait_remote(peer: Scim2Server, user_name: str, what: str, condition) -> dict | None:
    """Waits until scim2-server's view of ``user_name`` (None when absent) meets ``condition``."""
    seen: list = [None]

    def check() -> bool:
        seen[0] = peer.user_by_name(user_name)
        return bool(condition(seen[0]))

    wait_for(check, f"{user_name} on scim2-server: {what}", limit=90)
    return seen[0]
