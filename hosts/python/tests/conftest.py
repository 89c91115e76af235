"""Shared fixtures: the runtime, real scim2-server peers (free port, bearer token, readiness
polled), a Python-served SCIM server over sqlite3, and plain-HTTP helpers."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
# hosts/python/test-wheel sets this: the tests then import the installed wheel, never the source.
INSTALLED = os.environ.get("SCIM_PROVISIONER_HOST_INSTALLED") == "1"
if not INSTALLED:
    sys.path.insert(0, str(REPO / "hosts" / "python" / "src"))

import scim_provisioner_host  # noqa: E402
from scim_provisioner_host import Runtime, ScimServer, SqliteDirectory, serve  # noqa: E402
from scim_provisioner_host.runtime import packaged_wasm_path  # noqa: E402

if INSTALLED and Path(scim_provisioner_host.__file__).resolve().is_relative_to(REPO / "hosts" / "python" / "src"):
    raise RuntimeError(f"SCIM_PROVISIONER_HOST_INSTALLED=1 but {scim_provisioner_host.__file__} is the source tree")

VENV = Path(os.environ.get("SCIM_PEERS_VENV") or Path(os.environ.get("SCIM_PEERS_DIR") or REPO / "target" / "peers") / "venv")
LOGS = REPO / "target" / "peers" / "logs"


def tool(name: str) -> list[str]:
    """The command for a peer tool of the venv, run by the venv's own Python (so a copied venv,
    whose scripts' #! lines name another path, works too)."""
    script = VENV / "bin" / name
    if not script.exists():
        pytest.fail(f"{script} is missing: run scripts/install-peers")
    return [str(VENV / "bin" / "python"), str(script)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, token: Optional[str], body: Any = None, timeout: float = 30) -> tuple[int, Any]:
    """Plain HTTP (urllib, not the component): the status and the JSON body (or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/scim+json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    return status, (json.loads(raw) if raw.strip() else None)


class _PeerProcess:
    """A peer process on a free 127.0.0.1 port: started (up to five ports tried), waited for
    until ``_ready()`` says so (polled, bounded; a process that dies stops the wait), stopped."""

    name = "peer"

    def _start(self, command: Callable[[int], list[str]], base_url: Callable[[int], str]) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        for attempt in range(5):
            self.port = free_port()
            self.base_url = base_url(self.port)
            self.log_path = LOGS / f"py-{self.name}-{self.port}-{os.getpid()}.log"
            self._log = open(self.log_path, "wb")
            self.proc = subprocess.Popen(command(self.port), stdout=self._log, stderr=subprocess.STDOUT)
            if self._wait_ready():
                return
            self.stop()
        raise RuntimeError(f"{self.name} did not start; see {self.log_path}")

    def _ready(self) -> bool:
        raise NotImplementedError

    def _wait_ready(self, limit: float = 60) -> bool:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            try:
                if self._ready():
                    return True
            except OSError:
                pass
            try:
                self.proc.wait(timeout=0.05)  # returns at once if it died; else waits a moment
                return False
            except subprocess.TimeoutExpired:
                pass
        return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Peer(_PeerProcess):
    """A running scim2-server 0.8.3, base ``http://127.0.0.1:P/v2``."""

    name = "scim2-server"

    def __init__(self) -> None:
        self.token = "tok" + secrets.token_hex(20)
        self._start(lambda port: tool("scim2-server") + ["--hostname", "127.0.0.1", "--port", str(port),
                                                         "--bearer-token", self.token],
                    lambda port: f"http://127.0.0.1:{port}/v2")

    def _ready(self) -> bool:
        status, _ = http("GET", f"{self.base_url}/ServiceProviderConfig", self.token, timeout=2)
        return status == 200

    def get(self, path: str) -> tuple[int, Any]:
        return http("GET", self.base_url + path, self.token)

    def user_by_name(self, user_name: str) -> Optional[dict]:
        status, body = http("GET", f"{self.base_url}/Users?filter=" + urllib.request.quote(f'userName eq "{user_name}"'),
                            self.token)
        assert status == 200, body
        found = body.get("Resources") or []
        return found[0] if found else None


class HtmlPeer(_PeerProcess):
    """Not a SCIM server: Python's http.server (run by the venv's Python, like scim2-server) over an
    empty directory, which answers every GET with an HTML 404 and POST/PUT/PATCH/DELETE with an HTML
    501. Base ``http://127.0.0.1:P`` (no path); ready once it accepts connections."""

    name = "html"

    def __init__(self) -> None:
        self._root = tempfile.TemporaryDirectory(prefix="py-html-peer-")
        try:
            self._start(lambda port: [str(VENV / "bin" / "python"), "-m", "http.server", "--bind", "127.0.0.1",
                                      str(port), "--directory", self._root.name],
                        lambda port: f"http://127.0.0.1:{port}")
        except RuntimeError:
            self._root.cleanup()
            raise

    def _ready(self) -> bool:
        socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
        return True

    def close(self) -> None:
        self.stop()
        self._root.cleanup()


@pytest.fixture(scope="session")
def runtime() -> Iterator[Runtime]:
    rt = Runtime()
    if INSTALLED:  # the component the wheel carries, found through importlib.resources
        assert rt.wasm_path == packaged_wasm_path(), f"{rt.wasm_path} is not the packaged component"
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def scim2_server() -> Iterator[Peer]:
    peer = Peer()
    yield peer
    peer.stop()


@pytest.fixture()
def fresh_scim2_server() -> Iterator[Peer]:
    peer = Peer()
    yield peer
    peer.stop()


class Served:
    def __init__(self, runtime: Runtime, db: Path, policy: Any = None) -> None:
        self.token = "tok" + secrets.token_hex(20)
        self.directory = SqliteDirectory.open(db, runtime)
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}/scim/v2"
        self.server = ScimServer.open(runtime, {"base_url": self.base_url, "token": self.token,
                                                "policy": policy or {}}, self.directory)
        self.http = serve(self.server, "127.0.0.1", port, "/scim/v2")

    def stop(self) -> None:
        self.http.stop()
        self.directory.close()


@pytest.fixture()
def served(runtime: Runtime, tmp_path: Path) -> Iterator[Served]:
    s = Served(runtime, tmp_path / "directory.db")
    yield s
    s.stop()
