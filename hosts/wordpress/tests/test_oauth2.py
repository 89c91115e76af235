"""OAuth 2.0 client credentials (issue 31) on the SCIM client tab, in a real browser: a real
authorization server (oidc-provider 9, tests/peers/oidc) and our quirky SCIM server accepting
only the access tokens its introspection endpoint (RFC 7662) calls active. A wrong client
secret fails the connection test naming invalid_client; the right one passes; the secret is
never rendered; a provisioned user arrives on the server."""

from __future__ import annotations

import base64
import json
import secrets
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from browser.fixtures import admin, chromium  # noqa: F401 - pytest fixtures, used by name
from browser.fixtures import client_settings
from browser.wpadmin import WpAdmin
from harness import REPO, VENV, HarnessError, free_port, scim_request, spawn, stop_process, wait_for

CLIENT_ID = "scim-provisioner"
CLIENT_SECRET = "wp-client-secret-" + secrets.token_hex(8)
INTROSPECTOR = "scim-resource-server:wp-introspector-" + secrets.token_hex(8)


class Idp:
    """oidc-provider on a free loopback port; its endpoints are the first line it prints."""

    def __init__(self, log_dir: Path) -> None:
        app = REPO / "tests" / "peers" / "oidc"
        if not (app / "node_modules" / "oidc-provider").is_dir():
            raise HarnessError(f"{app}/node_modules is missing: run scripts/install-peers")
        self.log = log_dir / "oidc-provider.log"
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "OIDC_PEER_INTROSPECTOR": INTROSPECTOR,
               "OIDC_PEER_CLIENT": f"{CLIENT_ID}:{CLIENT_SECRET}"}
        self.proc = spawn(["node", "server.js"], self.log, cwd=app, env=env)
        self.endpoints: dict = {}

        def listening() -> bool:
            for line in self.log.read_text(errors="replace").splitlines():
                if line.startswith('{"issuer"'):
                    self.endpoints = json.loads(line)
                    return True
            return False

        wait_for(listening, "oidc-provider listening", process=self.proc, log=self.log)

    def token(self) -> str:
        request = urllib.request.Request(
            self.endpoints["token_endpoint"], data=b"grant_type=client_credentials&scope=scim",
            headers={"Authorization": "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode(),
                     "Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)["access_token"]

    def stop(self) -> None:
        stop_process(self.proc, limit=10)


class Quirky:
    """tests/peers/quirky with --introspect-url: base http://127.0.0.1:P/v2."""

    def __init__(self, log_dir: Path, idp: Idp) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v2"
        self.log = log_dir / f"quirky-{self.port}.log"
        self.proc = spawn([str(VENV / "bin" / "python"), str(REPO / "tests" / "peers" / "quirky" / "server.py"),
                           "--port", str(self.port), "--introspect-url", idp.endpoints["introspection_endpoint"],
                           "--introspect-client", INTROSPECTOR], self.log)
        wait_for(lambda: scim_request("GET", self.base_url + "/ServiceProviderConfig", None, timeout=5)[0] == 200,
                 "quirky ready", process=self.proc, log=self.log)

    def stop(self) -> None:
        stop_process(self.proc, limit=10)


@pytest.fixture(scope="module")
def idp(wp_temp_root: Path) -> Iterator[Idp]:
    server = Idp(wp_temp_root)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def quirky(wp_temp_root: Path, idp: Idp) -> Iterator[Quirky]:
    server = Quirky(wp_temp_root, idp)
    yield server
    server.stop()


def test_the_client_tab_offers_client_credentials(admin: WpAdmin, idp: Idp, quirky: Quirky):
    a, site = admin, admin.site
    wrong = "wrong-" + secrets.token_hex(8)
    a.tab("client")
    a.fill("scim-base-url", quirky.base_url)
    a.check("scim-auth-oauth2")
    a.fill("scim-token-url", idp.endpoints["token_endpoint"])
    a.fill("scim-client-id", CLIENT_ID)
    a.fill("scim-client-secret", wrong)
    a.fill("scim-oauth2-scope", "scim")
    a.select("scim-client-auth", "client_secret_post")
    a.click("scim-save-test")
    failure = a.notice_text("client-test")
    assert failure.startswith("Test failed"), failure
    assert "invalid_client" in failure and "the client secret or id is wrong" in failure, failure
    assert wrong not in a.d.page_source

    a.fill("scim-client-secret", CLIENT_SECRET)
    a.click("scim-save-test")
    assert a.notice_text("client-test").startswith("Connection successful"), a.notice_text("client-test")
    assert CLIENT_SECRET not in a.d.page_source
    assert "A client secret is saved" in a.text("#scim-client-secret-state")
    a.shot("client-oauth2")
    saved = client_settings(site)
    assert saved["auth"] == "oauth2" and saved["client_secret_saved"] is True and saved["client_secret"] == ""
    assert saved["client_auth"] == "client_secret_post" and saved["token_url"] == idp.endpoints["token_endpoint"]

    # A user made in WordPress arrives on the server, which accepted nothing but an active token.
    name = "oauth" + secrets.token_hex(4)
    site.php(f"wp_insert_user(['user_login' => '{name}', 'user_email' => '{name}@example.com', "
             f"'user_pass' => wp_generate_password(), 'role' => 'editor']);")
    filter_query = "/Users?filter=" + urllib.parse.quote(f'userName eq "{name}"')

    def arrived() -> bool:
        status, body = scim_request("GET", quirky.base_url + filter_query, idp.token(), timeout=10)
        return status == 200 and body.get("totalResults") == 1

    wait_for(arrived, f"{name} on the quirky server", limit=90)
