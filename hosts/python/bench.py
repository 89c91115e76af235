#!/usr/bin/env python3
"""bench.py: what the Python host costs per call (not a timed test).

Per call, from Python through wasmtime-py (value conversion, the component call): ``plan`` and
``map_user`` (pure guest work, no import), a no-change ``provision`` (the guest compares with
the snapshot and sends nothing), and ``get_user`` (one GET through HttpTransport to a real
scim2-server, with --with-server). Warm-up, then the median of 5 runs, in microseconds per
call. Also the runtime's load time (compiled vs. from the cache) and RSS growth over the
plan calls.

    target/peers/venv/bin/python hosts/python/bench.py [--calls N] [--with-server]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "src"))
sys.path.insert(0, str(HERE / "tests"))

from scim_provisioner_host import Action, CmsUser, Connector, Runtime  # noqa: E402


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def per_call(n: int, fn) -> float:
    for i in range(min(n, 200)):
        fn(i)
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        for i in range(n):
            fn(i)
        runs.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(runs)


SPC = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"], "patch": {"supported": True},
       "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
       "filter": {"supported": True, "maxResults": 100}, "changePassword": {"supported": False},
       "sort": {"supported": False}, "etag": {"supported": True}, "authenticationSchemes": []}


class DiscoveryOnly:
    """Answers the connector's one-time discovery; the timed calls must send nothing."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, request):
        from scim_provisioner_host import HttpResponse
        self.sent += 1
        if request.url.endswith("/ServiceProviderConfig"):
            return HttpResponse(200, [("Content-Type", "application/scim+json")], json.dumps(SPC).encode())
        raise AssertionError(f"the benchmark's calls send nothing, but got {request.method} {request.url}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--with-server", action="store_true", help="also time get_user against scim2-server")
    args = ap.parse_args()

    import tempfile
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        cold = Runtime(cache_dir=cache)
        cold_s = time.perf_counter() - t
        t = time.perf_counter()
        rt = Runtime(cache_dir=cache)
        warm_s = time.perf_counter() - t
    assert rt.loaded_from_cache
    cold.close()
    print(f"Python {sys.version.split()[0]}, wasmtime-py {rt.wasmtime_version}, component {rt.wasm_path}")
    print(f"runtime load: {cold_s * 1000:.0f} ms compiling, {warm_s * 1000:.0f} ms from the cache")

    c = Connector.open(rt, {"base_url": "http://127.0.0.1:9/v2", "token": "bench-token-value"},
                       transport=DiscoveryOnly())
    user = CmsUser("42", {"name": "alice", "mail": "alice@example.com", "field_first_name": "Alice",
                          "field_last_name": "Liddell", "roles": ["editor", "member"]}, True)
    from scim_provisioner_host import Link
    o = c.map_user(user)
    link = Link("remote-42", 'W/"1"', json.dumps(o))
    assert c.provision(user, "updated", link).action == Action.UNCHANGED

    n = args.calls
    rss0 = rss_kib()
    plan_us = per_call(n, lambda i: c.plan(user, "updated", True))
    rss1 = rss_kib()
    map_us = per_call(n, lambda i: c.map_user(user))
    sent = c.transport.sent
    prov_us = per_call(n, lambda i: c.provision(user, "updated", link))
    assert c.transport.sent == sent, "a no-change provision sent a request"
    print(f"plan:                  {plan_us:8.1f} us/call")
    print(f"map_user:              {map_us:8.1f} us/call")
    print(f"provision (no change): {prov_us:8.1f} us/call")
    print(f"RSS over {6 * n} plan calls: {rss0} KiB -> {rss1} KiB")

    if args.with_server:
        from conftest import Peer
        peer = Peer()
        try:
            s = Connector.open(rt, {"base_url": peer.base_url, "token": peer.token})
            created = s.provision(user, "created")
            rid = created.link.remote_id
            get_us = per_call(max(50, n // 10), lambda i: s.get_user(rid))
            print(f"get_user (scim2-server): {get_us:8.1f} us/call")
        finally:
            peer.stop()
    print(json.dumps({"host": "python", "plan_us": round(plan_us, 1), "provision_unchanged_us": round(prov_us, 1),
                      "map_user_us": round(map_us, 1)}))


if __name__ == "__main__":
    main()
