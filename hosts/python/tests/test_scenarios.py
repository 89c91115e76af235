"""The shared scenario suite (tests/scenarios/*.json, format in tests/scenarios/README.md) under
the Python host: every scenario against a fresh scim2-server (and a plain HTTP server answering HTML
beside it, ${HTML_URL}), server-role steps against this host's own ScimServer over a fresh
SqliteDirectory. Prints `scenarios: python: N passed, M failed`."""

from __future__ import annotations

import json
import socket
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any, Optional

import pytest

import secrets

from conftest import REPO, VENV, HtmlPeer, Peer, _PeerProcess, http
from scim_provisioner_host import (BatchItem, CmsUser, Connector, GuestTrap, Link, ProvisioningError, Request,
                                   Runtime, ScimServer, SqliteDirectory)

SCENARIOS = REPO / "tests" / "scenarios"
HOST = "python"
# Steps this host cannot run: {(scenario, step index): reason}. Printed, never silent.
SKIPS: dict[tuple[str, int], str] = {}


class QuirkyPeer(_PeerProcess):
    """Our quirky SCIM server (tests/peers/quirky, run by the venv's Python) with a scenario's
    switches (`"peer": {"quirky": [...]}`), its data in memory; base ``http://127.0.0.1:P/v2``."""

    name = "quirky"

    def __init__(self, switches: list[str]) -> None:
        self.token = "tok" + secrets.token_hex(20)
        script = str(REPO / "tests" / "peers" / "quirky" / "server.py")
        self._start(lambda port: [str(VENV / "bin" / "python"), script, "--port", str(port),
                                  "--token", self.token] + switches,
                    lambda port: f"http://127.0.0.1:{port}/v2")

    def _ready(self) -> bool:
        status, _ = http("GET", f"{self.base_url}/ServiceProviderConfig", self.token, timeout=2)
        return status == 200


# ---- the format's shared machinery (same rules in every runner) ----

def expand(value: Any, ctx: dict) -> Any:
    if isinstance(value, str):
        for k, v in ctx["vars"].items():
            value = value.replace("${" + k + "}", v)
        return value
    if isinstance(value, list):
        return [expand(v, ctx) for v in value]
    if isinstance(value, dict):
        if "$repeat" in value:
            item = expand(value["$repeat"], ctx)
            return item * int(value["times"]) if isinstance(item, str) else [item] * int(value["times"])
        if "$link" in value:
            return ctx["links"][value["$link"]]
        if "$remoteId" in value:
            return ctx["links"][value["$remoteId"]]["remoteId"]
        if "$json" in value:
            return json.dumps(expand(value["$json"], ctx), ensure_ascii=False)
        return {k: expand(v, ctx) for k, v in value.items()}
    return value


def match(expected: Any, actual: Any, path: str = "$") -> list[str]:
    if isinstance(expected, dict) and any(k.startswith("$") for k in expected):
        errs = []
        for k, want in expected.items():
            if k == "$type":
                got = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
                    type(actual), "number" if isinstance(actual, (int, float)) else "?")
                if got != want:
                    errs.append(f"{path}: expected a {want}, got {actual!r:.200}")
            elif k == "$gte":
                if not isinstance(actual, (int, float)) or isinstance(actual, bool) or actual < want:
                    errs.append(f"{path}: expected >= {want}, got {actual!r:.200}")
            elif k == "$contains":
                if not isinstance(actual, str) or want not in actual:
                    errs.append(f"{path}: expected a string containing {want!r}, got {actual!r:.200}")
            elif k == "$len":
                if not isinstance(actual, (str, list)) or len(actual) != want:
                    errs.append(f"{path}: expected length {want}, got {len(actual) if isinstance(actual, (str, list)) else actual!r:.200}")
            elif k == "$not":
                if not match(want, actual, path):
                    errs.append(f"{path}: expected not {want!r}, got {actual!r:.200}")
            else:
                errs.append(f"{path}: unknown matcher {k}")
        return errs
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {actual!r:.200}"]
        errs = []
        for k, v in expected.items():
            errs += match(v, actual.get(k), f"{path}.{k}")
        return errs
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {len(expected)} items, got {actual!r:.300}"]
        errs = []
        for i, (e, a) in enumerate(zip(expected, actual)):
            errs += match(e, a, f"{path}[{i}]")
        return errs
    if isinstance(expected, bool) or isinstance(actual, bool):
        ok = expected is actual
    elif isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        ok = float(expected) == float(actual)
    else:
        ok = expected == actual
    return [] if ok else [f"{path}: expected {expected!r:.200}, got {actual!r:.200}"]


# ---- this host's adapter: host values -> the canonical JSON of the README ----

def c_link(link: Optional[Link]) -> Optional[dict]:
    return None if link is None else {"remoteId": link.remote_id, "version": link.version, "snapshot": link.snapshot}


def c_outcome(o: Any) -> dict:
    return {"action": o.action.value, "reason": o.reason, "link": c_link(o.link), "location": o.location,
            "requests": o.requests}


def c_error(e: ProvisioningError) -> dict:
    return {"case": e.case, "status": e.status, "scimType": e.scim_type,
            "detail": e.detail if e.case in ("scim", "unexpected-response") else None,
            "message": e.detail if e.case in ("invalid-config", "other") else None,
            "retry": e.retry, "retryAfterSeconds": e.retry_after_seconds, "transportError": e.transport_error,
            "userId": e.user_id, "attribute": e.attribute}


def to_user(u: dict) -> CmsUser:
    return CmsUser(u["id"], dict(u.get("fields", {})), active=u.get("active", True))


def to_link(v: Optional[dict]) -> Optional[Link]:
    return None if v is None else Link(v["remoteId"], v.get("version"), v.get("snapshot"))


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v2"


class Run:
    def __init__(self, peer: Peer, html: HtmlPeer, tmp: Path) -> None:
        self.peer = peer
        self.tmp = tmp
        self.runtime: Optional[Runtime] = None
        self.owned: list[Runtime] = []
        self.connectors: dict[str, Connector] = {}
        self.servers: dict[str, ScimServer] = {}
        self.ctx = {"vars": {"BASE_URL": peer.base_url, "TOKEN": peer.token, "DEAD_URL": dead_url(),
                             "HTML_URL": html.base_url}, "links": {}}

    def rt(self, shared: Runtime) -> Runtime:
        return self.runtime or shared

    def step(self, step: dict, shared: Runtime) -> Any:
        op = step["op"]
        s = {k: expand(v, self.ctx) for k, v in step.items() if k != "expect"}
        c = self.connectors.get(s.get("connector", "main"))
        try:
            if op == "runtime":
                self.runtime = Runtime(memory_limit_bytes=s["memory_limit_bytes"])
                self.owned.append(self.runtime)
                return {"ok": True}
            if op == "open":
                self.connectors[s.get("as", "main")] = Connector.open(self.rt(shared), s["config"])
                return {"ok": True}
            if op == "test-connection":
                caps = c.test_connection()
                return {"ok": {"discovered": caps.discovered, "patch": caps.patch,
                               "bulk": None if caps.bulk is None else {"maxOperations": caps.bulk.max_operations,
                                                                       "maxPayloadSize": caps.bulk.max_payload_size},
                               "filterMaxResults": caps.filter_max_results, "etag": caps.etag, "sort": caps.sort,
                               "changePassword": caps.change_password}}
            if op == "provision":
                out = c_outcome(c.provision(to_user(s["user"]), s["event"], to_link(s.get("link"))))
                if "save" in s and out["link"] is not None:
                    self.ctx["links"][s["save"]] = out["link"]
                return {"ok": out}
            if op == "plan":
                p = c.plan(to_user(s["user"]), s["event"], bool(s["linked"]))
                return {"ok": {"action": p.action.value, "reason": p.reason}}
            if op == "batch":
                b = c.provision_batch([BatchItem(to_user(i["user"]), i["event"], to_link(i.get("link"))) for i in s["items"]])
                results = [{"error": c_error(r)} if isinstance(r, ProvisioningError) else {"ok": c_outcome(r)} for r in b.results]
                for item, r in zip(s["items"], results):
                    if "save" in item and "ok" in r and r["ok"]["link"] is not None:
                        self.ctx["links"][item["save"]] = r["ok"]["link"]
                return {"ok": {"results": results, "requests": b.requests, "bulkRequests": b.bulk_requests}}
            if op == "map-user":
                return {"ok": c.map_user(to_user(s["user"]))}
            if op == "get-user":
                return {"ok": c.get_user(s["remoteId"])}
            if op == "index-remote-users":
                r = c.index_remote_users()
                return {"ok": {"users": r.users, "requests": r.requests}}
            if op == "scope-fields":
                return {"ok": c.scope_fields()}
            if op == "remote-user-ids":
                return {"ok": c.remote_user_ids()}
            if op == "export-remote-index":
                doc = c.export_remote_index()
                if "save" in s:
                    self.ctx["vars"][s["save"]] = doc or ""
                return {"ok": doc}
            if op == "import-remote-index":
                return {"ok": c.import_remote_index(s["document"])}
            if op == "export-dialect":
                return {"ok": json.loads(c.export_dialect())}
            if op == "import-dialect":
                c.import_dialect(s["document"])
                return {"ok": None}
            if op == "server-open":
                directory = SqliteDirectory.open(self.tmp / f"dir-{s.get('as', 'main')}-{len(self.servers)}.db", self.rt(shared))
                self.servers[s.get("as", "main")] = ScimServer.open(self.rt(shared), s["config"], directory)
                return {"ok": True}
            if op == "serve":
                r = s["request"]
                body = r.get("body", "")
                if not isinstance(body, str):
                    body = json.dumps(body, ensure_ascii=False)
                resp = self.servers[s.get("server", "main")].handle(
                    Request(r["method"], r["path"], r.get("query", ""), [tuple(h) for h in r.get("headers", [])],
                            body.encode()))
                out = c_response(resp.status, resp.headers, resp.body)
                if "saveId" in s and isinstance(out["json"], dict):
                    self.ctx["vars"][s["saveId"]] = str(out["json"].get("id"))
                return {"ok": out}
            if op in ("server-get", "server-post", "server-delete"):
                return self.peer_http(op, s)
        except ProvisioningError as e:
            return {"error": c_error(e)}
        except GuestTrap as e:
            return {"trap": {"kind": e.kind}}
        raise ValueError(f"unknown op {op}")

    def peer_http(self, op: str, s: dict) -> dict:
        base, token = self.peer.base_url, self.peer.token
        if op == "server-get":
            url = base + s.get("path", "/Users")
            if "filter" in s:
                url += "?filter=" + urllib.parse.quote(s["filter"], safe="")
            status, body = http("GET", url, token)
        elif op == "server-post":
            status, body = http("POST", base + s["path"], token, s["body"])
        else:
            status, body = http("DELETE", base + "/Users/" + urllib.parse.quote(self.ctx["links"][s["user"]]["remoteId"]), token)
        body = body if isinstance(body, dict) else {}
        return {"status": status, "count": body.get("totalResults"), "resources": body.get("Resources", []), "json": body}

    def close(self) -> None:
        for c in self.connectors.values():
            c.close()
        for rt in self.owned:
            rt.close()


def c_response(status: int, headers: Any, body: bytes) -> dict:
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    return {"status": status, "headers": {k.lower(): v for k, v in headers}, "json": parsed, "bodyLength": len(body)}


def scenario_files() -> list[Path]:
    return sorted(SCENARIOS.glob("*.json"))


RESULTS: dict[str, bool] = {}


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    yield
    passed = sum(1 for ok in RESULTS.values() if ok)
    line = f"scenarios: {HOST}: {passed} passed, {len(RESULTS) - passed} failed"
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:  # shown even while pytest captures output
        with capture.global_and_fixture_disabled():
            print(f"\n{line}")
    else:
        print(line)


@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: p.stem)
def test_scenario(path: Path, runtime: Runtime) -> None:
    scenario = json.loads(path.read_text())
    RESULTS[scenario["name"]] = False
    switches = scenario.get("peer", {}).get("quirky")
    peer = QuirkyPeer(switches) if switches is not None else Peer()
    try:
        html = HtmlPeer()
    except BaseException:
        peer.stop()
        raise
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(peer, html, Path(tmp))
        try:
            for i, step in enumerate(scenario["steps"]):
                reason = SKIPS.get((scenario["name"], i))
                if reason:
                    print(f"scenario {scenario['name']} step {i}: skip on {HOST} because {reason}")
                    continue
                assert "expect" in step, f"step {i} has no expectation"
                got = run.step(step, runtime)
                errs = match(expand(step["expect"], run.ctx), got)
                if errs:
                    failures.append(f"step {i} ({step['op']}): " + "; ".join(errs))
                    break
        finally:
            run.close()
            peer.stop()
            html.close()
    RESULTS[scenario["name"]] = not failures
    assert not failures, "\n".join(failures)
