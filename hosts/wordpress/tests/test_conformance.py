"""The plugin's server role under Apache + mod_php, checked by third-party conformance suites:
scim2-tester (every check, through scim2-cli) and scim-sanity against /wp-json/scim/v2, with a
bearer token generated through the plugin (ServerService::rotateToken). No check is accepted as
skipped or failed: the same bar as the component's own server (tests/tests/server_conformance.rs)
and the PHP and Python hosts."""

from __future__ import annotations

import os
import subprocess
from typing import Callable

import pytest

from conftest import plugin_available
from harness import VENV, WordPressSite

pytestmark = pytest.mark.skipif(not plugin_available(), reason="the plugin's main file does not exist yet")


def tool(name: str) -> list[str]:
    script = VENV / "bin" / name
    if not script.exists():
        pytest.fail(f"{script} is missing: run scripts/install-peers")
    return [str(VENV / "bin" / "python"), str(script)]


def run_tool(args: list[str], env: dict | None = None) -> tuple[int, str]:
    out = subprocess.run(args, capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})})
    return out.returncode, out.stdout + out.stderr


def rotate_token(site: WordPressSite) -> str:
    token = site.php("echo \\ScimProvisioner\\WordPress\\Plugin::instance()->server()->rotateToken();").strip()
    assert len(token) >= 32, "the plugin's token is too short to be a secret"
    return token


@pytest.fixture()
def served(wp_site: Callable[..., WordPressSite]) -> tuple[WordPressSite, str]:
    """A fresh site of its own for each suite: they create and delete users and groups."""
    site = wp_site("conf")
    return site, rotate_token(site)


def test_scim2_tester_passes_every_check(served: tuple[WordPressSite, str]):
    site, token = served
    rc, text = run_tool(tool("scim2") + ["--url", site.scim_base, "test"],
                        {"SCIM_CLI_HEADERS": f"Authorization: Bearer {token}"})
    successes = [line for line in text.splitlines() if line.startswith("SUCCESS")]
    failures = [line for line in text.splitlines() if line.startswith(("ERROR", "FAIL", "CRITICAL"))]
    assert rc == 0, text + "\n" + site.log_text()[-4000:]
    assert not failures, "\n".join(failures)
    assert len(successes) >= 100, f"only {len(successes)} checks ran:\n{text}"
    assert token not in site.log_text(), "the bearer token was written to a log"
    print(f"scim2-tester against {site.scim_base}: {len(successes)} checks passed")


def test_scim_sanity_passes(served: tuple[WordPressSite, str]):
    site, token = served
    rc, text = run_tool(tool("scim-sanity") + ["probe", site.scim_base, "--token", token,
                                               "--i-accept-side-effects"])
    assert rc == 0, text + "\n" + site.log_text()[-4000:]
    assert "[FAIL]" not in text, text
    assert "All tests passed" in text, text
    assert token not in site.log_text(), "the bearer token was written to a log"


def test_without_the_token_users_get_401_with_a_scim_error(served: tuple[WordPressSite, str]):
    site, token = served
    for presented in (None, "wrong-" + token[6:], token + "x"):
        status, body = site.scim("GET", "/Users", presented)
        assert status == 401, (presented is not None, body)
        assert isinstance(body, dict) and str(body.get("status")) == "401", body
    status, body = site.scim("GET", "/Users", token)
    assert status == 200, body
    assert "urn:ietf:params:scim:api:messages:2.0:ListResponse" in body["schemas"]


def test_the_routes_also_answer_without_pretty_permalinks(served: tuple[WordPressSite, str]):
    """`?rest_route=/scim/v2/...` is the base on sites without pretty permalinks."""
    site, token = served
    resp = site.http.get("/?rest_route=/scim/v2/Users", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200, resp.text[:500]
    assert resp.headers.get("Content-Type", "").startswith("application/scim+json"), resp.headers
