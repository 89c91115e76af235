"""Calls into the plugin's facade from the tests, through WordPressSite.php (the PHP command line
inside WordPress, as the web server's user). Values cross as base64-wrapped JSON, so no quoting
or PHP string interpolation can change them."""

from __future__ import annotations

import base64
import json
from typing import Any

from harness import HarnessError, Scim2Server, WordPressSite

PLUGIN = "\\ScimProvisioner\\WordPress\\Plugin::instance()"


def php_value(value: Any) -> str:
    """A PHP expression for a JSON value (arrays as associative arrays)."""
    encoded = base64.b64encode(json.dumps(value).encode()).decode()
    return f"json_decode(base64_decode('{encoded}'), true)"


def call(site: WordPressSite, expression: str) -> Any:
    """The JSON value of a PHP expression run inside WordPress."""
    out = site.php(f"echo json_encode({expression});")
    try:
        return json.loads(out)
    except ValueError as e:
        raise HarnessError(f"not JSON from {expression}: {out[-2000:]}") from e


def save_settings(site: WordPressSite, **settings: Any) -> None:
    errors = call(site, f"{PLUGIN}->settings()->save({php_value(settings)})")
    if errors:
        raise HarnessError(f"Settings::save refused {settings}: {errors}")


def configure_client(site: WordPressSite, server: Scim2Server, **extra: Any) -> None:
    """Points the site's client role at a scim2-server with its bearer token."""
    save_settings(site, base_url=server.base_url, auth="bearer", token=server.token, **extra)


def users_by_name(server: Scim2Server) -> dict[str, dict]:
    """The server's users by userName; fails on two users with one userName."""
    found: dict[str, dict] = {}
    for user in server.users():
        name = user["userName"]
        if name in found:
            raise AssertionError(f"userName {name} is on the server twice")
        found[name] = user
    return found


def create_users_quietly(site: WordPressSite, prefix: str, count: int, role: str = "subscriber") -> list[int]:
    """Inserts users straight into WordPress (wp_insert_user, hooks included) in one PHP run;
    returns their ids."""
    code = f"""
$ids = [];
for ($i = 0; $i < {count}; $i++) {{
    $login = sprintf('{prefix}%05d', $i);
    $id = wp_insert_user(['user_login' => $login, 'user_email' => $login . '@example.test', 'role' => '{role}',
        'first_name' => 'First' . $i, 'last_name' => 'Last' . $i, 'user_pass' => wp_generate_password(16)]);
    if (is_wp_error($id)) {{ fwrite(STDERR, $id->get_error_message()); exit(1); }}
    $ids[] = $id;
}}
echo json_encode($ids);
"""
    return json.loads(site.php(code, timeout=1800))


def link_of(site: WordPressSite, user_id: int) -> Any:
    return call(site, f"\\ScimProvisioner\\WordPress\\Links::get({int(user_id)})")
