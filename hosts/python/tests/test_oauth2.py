"""OAuth 2.0 client credentials (issue 31) on the Python host: a real authorization server
(oidc-provider, tests/peers/oidc) and our quirky SCIM server accepting only the access tokens
its introspection endpoint calls active. The connector's basic credentials are the client's
id and secret (sent only to the token endpoint); its default transport allows the token URL's
origin beside the base URL's, and no other."""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import subprocess
from typing import Iterator

import pytest
from conftest import LOGS, REPO, VENV, _PeerProcess, http

from scim_provisioner_host import Connector, Runtime
from scim_provisioner_host.errors import ProvisioningError, TransportError
from scim_provisioner_host.transport import HttpTransport
from scim_provisioner_host.types import HttpRequest

CLIENT_ID = "scim-provisioner"
CLIENT_SECRET = "py-client-secret-" + secrets.token_hex(8)
INTROSPECTOR = "scim-resource-server:py-introspector-" + secrets.token_hex(8)


class Idp:
    """oidc-provider on a free loopback port; it prints its endpoints once it listens."""

    def __init__(self) -> None:
        app = REPO / "tests" / "peers" / "oidc"
        if not (app / "node_modules" / "oidc-provider").is_dir():
            pytest.fail(f"{app}/node_modules is missing: run scripts/install-peers")
        LOGS.mkdir(parents=True, exist_ok=True)
        self._log = open(LOGS / f"py-oidc-{os.getpid()}.log", "ab")
        env = dict(os.environ, OIDC_PEER_INTROSPECTOR=INTROSPECTOR, OIDC_PEER_CLIENT=f"{CLIENT_ID}:{CLIENT_SECRET}")
        self.proc = subprocess.Popen([os.environ.get("NODE", "node"), "server.js"], cwd=app, env=env,
                                     stdout=subprocess.PIPE, stderr=self._log)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            pytest.fail("oidc-provider exited before it listened")
        self.endpoints = json.loads(line)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._log.close()


class IntrospectingQuirky(_PeerProcess):
    name = "quirky-introspecting"

    def __init__(self, idp: Idp) -> None:
        script = str(REPO / "tests" / "peers" / "quirky" / "server.py")
        self._start(lambda port: [str(VENV / "bin" / "python"), script, "--port", str(port), "--introspect-url",
                                  idp.endpoints["introspection_endpoint"], "--introspect-client", INTROSPECTOR],
                    lambda port: f"http://127.0.0.1:{port}/v2")

    def _ready(self) -> bool:
        return http("GET", f"{self.base_url}/ServiceProviderConfig", None, timeout=2)[0] == 200


@pytest.fixture(scope="module")
def idp() -> Iterator[Idp]:
    server = Idp()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def quirky(idp: Idp) -> Iterator[IntrospectingQuirky]:
    server = IntrospectingQuirky(idp)
    yield server
    server.stop()


def config(idp: Idp, quirky: IntrospectingQuirky, secret: str) -> dict:
    """The configuration keys every host shares (auth = "oauth2")."""
    return {"base_url": quirky.base_url, "auth": "oauth2", "token_url": idp.endpoints["token_endpoint"],
            "client_id": CLIENT_ID, "client_secret": secret, "scope": "scim", "timeout": 10000}


def test_the_wit_level_form_works_too(runtime: Runtime, idp: Idp, quirky: IntrospectingQuirky) -> None:
    """What auth = "oauth2" becomes: the client as basic credentials, the policy's oauth2 section."""
    connector = Connector.open(runtime, {
        "base_url": quirky.base_url, "username": CLIENT_ID, "password": CLIENT_SECRET,
        "policy": {"oauth2": {"token_url": idp.endpoints["token_endpoint"], "scope": "scim",
                              "client_auth": "client_secret_post"}}})
    assert connector.test_connection().discovered


@pytest.mark.parametrize("extra, needle", [
    ({"auth": "oauth2", "client_id": "a", "client_secret": "b"}, "token_url"),
    ({"auth": "oauth2", "token_url": "https://i/t", "client_secret": "b"}, "client_id"),
    ({"auth": "oauth2", "token_url": "https://i/t", "client_id": "a"}, "client_secret"),
    ({"auth": "oauth2", "token_url": "https://i/t", "client_id": "a", "client_secret": "b", "token": "t"}, "not token"),
    ({"token_url": "https://i/t"}, "set auth = 'oauth2'"),
    ({"auth": "kerberos"}, "auth is 'oauth2'"),
    ({"auth": "oauth2", "token_url": "https://i/t", "client_id": "a", "client_secret": "b",
      "client_auth": "private_key_jwt"}, "private_key_jwt"),
])
def test_oauth2_settings_are_checked_clearly(runtime: Runtime, extra: dict, needle: str) -> None:
    with pytest.raises(ProvisioningError) as caught:
        Connector.open(runtime, {"base_url": "https://scim.example/v2", **extra})
    assert caught.value.case == "invalid-config", caught.value
    assert needle in str(caught.value)


def test_client_credentials_then_a_wrong_secret(runtime: Runtime, idp: Idp, quirky: IntrospectingQuirky) -> None:
    out = io.StringIO()
    logger = logging.getLogger("test-oauth2")
    logger.setLevel(logging.DEBUG)
    handler = logging.StreamHandler(out)
    logger.addHandler(handler)
    try:
        connector = Connector.open(runtime, config(idp, quirky, CLIENT_SECRET), logger=logger)
        connector.test_connection()
        wrong = "wrong-" + secrets.token_hex(8)
        bad = Connector.open(runtime, config(idp, quirky, wrong), logger=logger)
        with pytest.raises(ProvisioningError) as caught:
            bad.test_connection()
        assert caught.value.case == "scim" and caught.value.scim_type == "invalid_client"
        assert "the client secret or id is wrong" in str(caught.value)
        assert wrong not in str(caught.value)
    finally:
        logger.removeHandler(handler)
    logged = out.getvalue()
    assert "OAuth 2.0 token" in logged, logged
    for secret in (CLIENT_SECRET, wrong):
        assert secret not in logged


def test_the_transport_allows_the_token_origin_and_no_other() -> None:
    transport = HttpTransport("http://127.0.0.1:1/v2", token_url="http://127.0.0.1:2/token")
    for url in ("http://127.0.0.1:3/token", "https://127.0.0.1:2/token"):
        with pytest.raises(TransportError) as caught:
            transport.send(HttpRequest("POST", url, [], b"", 1000))
        assert caught.value.case == "denied"
    with pytest.raises(TransportError) as caught:  # allowed; nothing listens on port 2
        transport.send(HttpRequest("POST", "http://127.0.0.1:2/token", [], b"", 1000))
    assert caught.value.case == "cannot-connect"
