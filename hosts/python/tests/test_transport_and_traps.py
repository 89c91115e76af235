"""The host's HTTP transport (origin, redirects, timeouts, body cap, errors), transport errors
crossing into the guest, guest traps and recovery, and the runtime's compile cache."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from pathlib import Path

import pytest

from conftest import free_port
from scim_provisioner_host import (Action, BatchItem, CmsUser, Connector, DeadlineExceeded, GuestTrap, HostSetupError,
                                   HttpRequest, HttpResponse, HttpTransport, Link, MemoryLimitExceeded,
                                   ProvisioningError, Runtime, TransportError)

SPC = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"], "patch": {"supported": True},
       "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
       "filter": {"supported": True, "maxResults": 100}, "changePassword": {"supported": False},
       "sort": {"supported": False}, "etag": {"supported": False}, "authenticationSchemes": []}


class LocalServer:
    """A tiny HTTP server on 127.0.0.1 with canned answers per path."""

    def __init__(self) -> None:
        outer = self
        self.requests: list[tuple[str, str, dict]] = []
        self.peers: list[tuple[str, int]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.requests.append((self.command, self.path, dict(self.headers)))
                outer.peers.append(self.client_address)
                if self.path.startswith("/redirect"):
                    self.send_response(302)
                    self.send_header("Location", "http://example.com/elsewhere")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path.startswith("/big"):
                    body = b"x" * 5000
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif self.path.startswith("/drip"):
                    # Each byte comes well within a read timeout; the whole body does not.
                    self.send_response(200)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    for _ in range(100):
                        if outer.release.wait(0.05):
                            break
                        try:
                            self.wfile.write(b"x")
                            self.wfile.flush()
                        except OSError:
                            break
                elif self.path.startswith("/slow"):
                    outer.release.wait(10)
                else:
                    body = json.dumps({"ok": True, "path": self.path}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

        self.release = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def local():
    s = LocalServer()
    yield s
    s.stop()


def req(url: str, method: str = "GET", timeout_ms: int = 5000, body: bytes | None = None) -> HttpRequest:
    return HttpRequest(method, url, [("Accept", "application/json")], body, timeout_ms)


def test_transport_sends_and_keeps_the_connection(local):
    t = HttpTransport(local.base + "/scim/v2")
    r1 = t.send(req(local.base + "/scim/v2/Users?x=1"))
    r2 = t.send(req(local.base + "/scim/v2/Users", "POST", body=b'{"a":1}'))
    assert r1.status == 200 and json.loads(r1.body)["path"] == "/scim/v2/Users?x=1"
    assert r2.status == 200
    method, path, headers = local.requests[1]
    assert method == "POST" and headers.get("Content-Length") == "7"
    assert "Accept-Encoding" not in headers  # the host adds nothing but Host and Content-Length
    assert local.peers[0] == local.peers[1], "the second request reused the kept-alive connection"


def test_transport_refuses_other_origins_and_bad_urls(local):
    t = HttpTransport(local.base + "/scim/v2")
    with pytest.raises(TransportError) as e:
        t.send(req("http://127.0.0.2:1/scim/v2/Users"))
    assert e.value.case == "denied"
    with pytest.raises(TransportError) as e:
        t.send(req(local.base.replace("http:", "https:") + "/x"))
    assert e.value.case == "denied"
    with pytest.raises(TransportError) as e:
        t.send(req("ftp://127.0.0.1/x"))
    assert e.value.case == "invalid-url"
    assert local.requests == []


def test_transport_follows_no_redirect_and_caps_bodies(local):
    t = HttpTransport(local.base, max_body_bytes=1000)
    r = t.send(req(local.base + "/redirect"))
    assert r.status == 302 and dict(r.headers)["Location"] == "http://example.com/elsewhere"
    with pytest.raises(TransportError) as e:
        t.send(req(local.base + "/big"))
    assert e.value.case == "other" and "larger than 1000 bytes" in str(e.value)


def test_transport_times_out_and_reports_refused_connections(local):
    t = HttpTransport(local.base)
    with pytest.raises(TransportError) as e:
        t.send(req(local.base + "/slow", timeout_ms=200))
    assert e.value.case == "timeout"
    with pytest.raises(TransportError) as e:
        t.send(req(local.base + "/drip", timeout_ms=400))
    assert e.value.case == "timeout"  # the timeout bounds the whole exchange, not each read
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TransportError) as e:
        HttpTransport(closed).send(req(closed + "/x"))
    assert e.value.case == "cannot-connect"


def test_tls_is_verified():
    # A TLS server with a self-signed certificate is refused (the default context verifies).
    import ssl
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        key, cert = Path(d) / "k.pem", Path(d) / "c.pem"
        made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                               "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], capture_output=True)
        if made.returncode != 0:
            pytest.skip("openssl is not available to make a test certificate")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]

        def accept():
            try:
                conn, _ = srv.accept()
                try:
                    ctx.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    pass
            except OSError:
                pass

        th = threading.Thread(target=accept, daemon=True)
        th.start()
        base = f"https://127.0.0.1:{port}"
        with pytest.raises(TransportError) as e:
            HttpTransport(base).send(req(base + "/x"))
        assert e.value.case == "tls"
        srv.close()


def test_a_transport_error_reaches_the_caller_with_its_retry_class(runtime):
    closed = f"http://127.0.0.1:{free_port()}/v2"
    c = Connector.open(runtime, {"base_url": closed, "token": "some-token-value"})
    with pytest.raises(ProvisioningError) as e:
        c.test_connection()
    assert e.value.case == "transport" and e.value.transport_error == "cannot-connect"
    assert e.value.retryable

    class Refusing:
        def send(self, request):
            raise TransportError("denied", "not today")

    c = Connector.open(runtime, {"base_url": closed, "token": "some-token-value"}, transport=Refusing())
    with pytest.raises(ProvisioningError) as e:
        c.provision(CmsUser("1", {"name": "a", "mail": "a@example.com"}), "created")
    assert e.value.transport_error == "denied" and e.value.retry == "permanent"

    class Buggy:
        def send(self, request):
            raise KeyError("oops")

    c = Connector.open(runtime, {"base_url": closed, "token": "some-token-value"}, transport=Buggy())
    with pytest.raises(ProvisioningError) as e:
        c.test_connection()
    assert e.value.transport_error == "other" and "KeyError" in str(e.value)
    # The instance survived the host-side failure.
    assert c.plan(CmsUser("1", {"name": "a"}), "created", False).action.value == "create"


class Canned:
    """A transport answering every request with one body (the ServiceProviderConfig by default)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def send(self, request):
        return HttpResponse(200, [("Content-Type", "application/scim+json")], self.body)


def user_json(display: str) -> bytes:
    return json.dumps({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "x", "userName": "u",
                       "displayName": display}).encode()


def test_a_one_mib_body_crosses_the_boundary(runtime):
    big = "é" * (512 * 1024)  # 1 MiB of UTF-8
    c = Connector.open(runtime, {"base_url": "http://127.0.0.1:9/v2", "token": "some-token-value"},
                       transport=Canned(user_json(big)))
    got = c.get_user("x")
    assert got is not None and got["displayName"] == big


def test_a_memory_trap_and_the_next_call_works():
    rt = Runtime(memory_limit_bytes=4 * 1024 * 1024)
    transport = Canned(user_json("d" * (1 << 20)))
    c = Connector.open(rt, {"base_url": "http://127.0.0.1:9/v2", "token": "some-token-value"}, transport=transport)
    with pytest.raises(GuestTrap) as e:
        c.get_user("x")
    assert isinstance(e.value, MemoryLimitExceeded), e.value
    assert e.value.export == "[method]connector.get-user"
    transport.body = user_json("small")
    assert c.get_user("x")["displayName"] == "small"
    assert c.instances_opened == 2
    rt.close()


def test_a_deadline_trap_and_the_next_call_works():
    rt = Runtime(deadline_ms=20)
    c = Connector.open(rt, {"base_url": "http://127.0.0.1:9/v2", "token": "some-token-value"},
                       transport=Canned(json.dumps(SPC).encode()))

    def user(i):
        return CmsUser(str(i), {"name": f"u{i}", "mail": f"u{i}@example.com"})

    # Thousands of unchanged users: guest work with no host answer in between.
    items = [BatchItem(user(i), "updated", Link(f"r{i}", None, json.dumps(c.map_user(user(i)))))
             for i in range(3000)]
    with pytest.raises(DeadlineExceeded):
        c.provision_batch(items)
    small = c.provision_batch(items[:3])
    assert [r.action for r in small.results] == [Action.UNCHANGED] * 3
    assert c.instances_opened == 2
    rt.close()


def test_the_runtime_caches_the_compiled_component(tmp_path):
    first = Runtime(cache_dir=tmp_path)
    assert first.loaded_from_cache is False
    cached = first.cache_path()
    assert cached is not None and cached.is_file()
    assert first.wasm_sha256[:32] in cached.name and first.wasmtime_version in cached.name
    second = Runtime(cache_dir=tmp_path)
    assert second.loaded_from_cache is True
    c = Connector.open(second, {"base_url": "http://127.0.0.1:9/v2", "token": "some-token-value"})
    assert c.map_user(CmsUser("1", {"name": "a"}))["userName"] == "a"
    cached.write_bytes(b"garbage")  # a broken cache is compiled again, not fatal
    third = Runtime(cache_dir=tmp_path)
    assert third.loaded_from_cache is False
    for rt in (first, second, third):
        rt.close()


def test_runtime_set_up_errors_say_what_to_fix(tmp_path):
    with pytest.raises(HostSetupError, match="SCIM_PROVISIONER_WASM"):
        Runtime(tmp_path / "missing.wasm")
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"\0asm not really")
    with pytest.raises(HostSetupError, match="not a loadable component"):
        Runtime(bad, cache_dir=None)


def test_a_server_trap_answers_500_and_the_next_request_works(tmp_path):
    from scim_provisioner_host import Request, ScimServer, SqliteDirectory, wsgi_app
    import io

    rt = Runtime(memory_limit_bytes=4 * 1024 * 1024)
    directory = SqliteDirectory.open(tmp_path / "d.db", rt)
    server = ScimServer.open(rt, {"base_url": "http://127.0.0.1/scim/v2", "token": "server-token",
                                  "bulk_max_payload": 16 * 1024 * 1024}, directory)
    auth = ("Authorization", "Bearer server-token")
    body = json.dumps({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "big",
                       "displayName": "d" * (3 << 20)}).encode()
    with pytest.raises(GuestTrap):
        server.handle(Request("POST", "/Users", "", [auth, ("Content-Type", "application/scim+json")], body))
    ok = server.handle(Request("GET", "/Users", "", [auth]))
    assert ok.status == 200 and ok.json()["totalResults"] == 0
    # Through the WSGI app a trap is a 500, and the next request is answered.
    app = wsgi_app(server, "/scim/v2")
    seen = []

    def start(status, headers):
        seen.append(status)

    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/scim/v2/Users", "QUERY_STRING": "",
               "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/scim+json",
               "HTTP_AUTHORIZATION": "Bearer server-token", "wsgi.input": io.BytesIO(body)}
    app(environ, start)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/scim/v2/ServiceProviderConfig", "QUERY_STRING": "",
               "wsgi.input": io.BytesIO(b"")}
    app(environ, start)
    assert seen[0].startswith("500") and seen[1].startswith("200")
    directory.close()
    rt.close()


def test_connectors_on_several_threads(runtime):
    """One runtime, one connector per thread, untagged variants lowered concurrently."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            c = Connector.open(runtime, {"base_url": "http://127.0.0.1:9/v2", "token": f"thread-token-{n}"})
            for i in range(300):
                u = CmsUser(f"{n}-{i}", {"name": f"t{n}u{i}", "mail": f"t{n}u{i}@example.com", "age": i,
                                         "flag": i % 2 == 0, "roles": ["r"], "none": None}, active=i % 3 != 0)
                mapped = c.map_user(u)
                assert mapped["userName"] == f"t{n}u{i}", mapped
                assert c.plan(u, "created", False).action.value in ("create", "skip")
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
