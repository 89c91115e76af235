#!/usr/bin/env python3
"""bench.py: what the Python host costs, measured in one run (not a timed test).

The same figures, arguments and JSON keys as ``hosts/php/bench.php``, so the Rust host's
``bench --hosts`` prints every host side by side:

1. Per call, from Python through wasmtime-py (value conversion, the component call): ``plan``
   (the public call: only the fields the scope reads cross, none under the default policy)
   and ``map_user`` (pure guest work, no import), a no-change ``provision`` (the guest compares
   with the snapshot and sends nothing), and ``get_user`` (one GET through HttpTransport to
   scim2-server). One warm-up pass, then the median of 5 passes, in microseconds per call.
2. Memory: the process RSS (VmRSS) before and after --plan-calls ``plan`` calls.
3. A first sync of --sync-users users into a fresh scim2-server: every user planned, the
   remote users listed once and the listing handed to the other connectors, then
   ``provision_batch`` (100 users a call, their writes through /Bulk) on --concurrency
   connectors at once, one thread each, each user always on the same connector.

    target/peers/venv/bin/python hosts/python/bench.py [--calls N] [--plan-calls N]
        [--sync-users N] [--concurrency N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "src"))
sys.path.insert(0, str(HERE / "tests"))

from scim_provisioner_host import Action, BatchItem, CmsUser, Connector, PlannedAction, Runtime  # noqa: E402
from scim_provisioner_host.runtime import wasmtime_version  # noqa: E402

BATCH = 100


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def per_call(n: int, fn: Callable[[], Any]) -> float:
    """Median microseconds per call over 5 passes of n calls, after one warm-up pass."""
    for _ in range(n):
        fn()
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(runs)


def user(i: int, last: str = "Lovelace") -> CmsUser:
    """The user every host's bench provisions (bench.rs, bench.php, bench.mjs)."""
    return CmsUser(str(i), {"name": f"bench{i}", "mail": f"bench{i}@drupal.example", "field_first_name": "Ada",
                            "field_last_name": last, "roles": ["member"]})


def first_sync(rt: Runtime, base_url: str, token: str, n: int, concurrency: int) -> dict[str, Any]:
    config = {"base_url": base_url, "token": token, "timeout": 60000}
    users = [CmsUser(str(i), {"name": f"sync{i}", "mail": f"sync{i}@drupal.example", "field_first_name": "Sync",
                              "field_last_name": f"User{i}", "roles": ["member"]}) for i in range(1, n + 1)]
    started = time.perf_counter()
    connectors = [Connector.open(rt, config) for _ in range(concurrency)]
    planned = [u for u in users if connectors[0].plan(u, "created", False).action == PlannedAction.CREATE]
    listing = connectors[0].index_remote_users()
    document = connectors[0].export_remote_index()
    if document is not None:
        for c in connectors[1:]:
            c.import_remote_index(document)
    totals = [{"requests": 0, "bulk": 0, "created": 0, "failed": 0} for _ in connectors]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            share = planned[k::concurrency]
            for at in range(0, len(share), BATCH):
                out = connectors[k].provision_batch([BatchItem(u, "created") for u in share[at:at + BATCH]])
                totals[k]["requests"] += out.requests
                totals[k]["bulk"] += out.bulk_requests
                for r in out.results:
                    ok = not isinstance(r, Exception) and r.action in (Action.CREATED, Action.ADOPTED)
                    totals[k]["created" if ok else "failed"] += 1
        except BaseException as e:  # reported below, after every thread ended
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if errors:
        raise errors[0]
    created = sum(t["created"] for t in totals)
    failed = sum(t["failed"] for t in totals)
    if created != n or failed:
        raise RuntimeError(f"the sync did not provision every user: {created} created, {failed} failed")
    return {"seconds": seconds, "created": created, "requests": listing.requests + sum(t["requests"] for t in totals),
            "bulk": sum(t["bulk"] for t in totals)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000, help="calls per per-call figure")
    ap.add_argument("--plan-calls", type=int, default=100_000, help="plan calls over which memory is watched")
    ap.add_argument("--sync-users", type=int, default=2000, help="users in the first sync")
    ap.add_argument("--concurrency", type=int, default=4, help="connectors the first sync runs at once")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as one JSON object")
    args = ap.parse_args()
    if min(args.calls, args.plan_calls, args.sync_users, args.concurrency) < 1:
        ap.error("every count must be positive")
    from conftest import Peer

    t = time.perf_counter()
    rt = Runtime()
    print(f"Python {platform.python_version()}, wasmtime-py {wasmtime_version()}, component {rt.wasm_path}")
    print(f"component loaded in {(time.perf_counter() - t) * 1000:.0f} ms "
          f"({'precompiled, from the cache' if rt.loaded_from_cache else 'compiled now'})\n")
    figures: dict[str, Any] = {
        "host": "python",
        "runtime": f"Python {platform.python_version()}, wasmtime-py {wasmtime_version()} (wasmtime.component)",
    }

    peer = Peer()
    try:
        c = Connector.open(rt, {"base_url": peer.base_url, "token": peer.token, "timeout": 30000})
        created = c.provision(user(1), "created")
        if created.action != Action.CREATED or created.link is None:
            raise RuntimeError("the bench user was not created")
        link, u, n = created.link, user(1), args.calls

        def unchanged() -> None:
            if c.provision(u, "updated", link).action != Action.UNCHANGED:
                raise RuntimeError("expected unchanged")

        print(f"== per call, from Python through wasmtime-py ({n} calls, median of 5) ==")
        rows = [("plan (pure)", per_call(n, lambda: c.plan(u, "updated", True))),
                ("map_user (pure)", per_call(n, lambda: c.map_user(u))),
                ("provision, no change", per_call(n, unchanged)),
                ("get_user (1 GET)", per_call(max(1, n // 4), lambda: c.get_user(link.remote_id)))]
        print(f"{'call':<24} {'us/call':>12} {'calls/s':>12}")
        for name, us in rows:
            print(f"{name:<24} {us:12.1f} {1e6 / us:12.0f}")
        figures.update(plan_us=rows[0][1], map_us=rows[1][1], provision_unchanged_us=rows[2][1],
                       get_user_us=rows[3][1])

        print(f"\n== memory over {args.plan_calls} plan calls ==")
        for _ in range(2000):
            c.plan(u, "updated", True)
        import gc
        gc.collect()
        rss0 = rss_kib()
        quarter = max(1, args.plan_calls // 4)
        marks = []
        t = time.perf_counter()
        for i in range(1, args.plan_calls + 1):
            c.plan(u, "updated", True)
            if i % quarter == 0 and len(marks) < 4:
                marks.append(rss_kib())
        seconds = time.perf_counter() - t
        gc.collect()
        rss1 = rss_kib()
        print(f"RSS {rss0} -> {rss1} KiB ({rss1 - rss0:+d}); after each quarter: {', '.join(map(str, marks))} KiB; "
              f"{seconds * 1e6 / args.plan_calls:.1f} us per plan call")
        figures.update(memory_calls=args.plan_calls, rss_growth_kib=rss1 - rss0)
        c.close()
    finally:
        peer.stop()

    print(f"\n== a {args.sync_users}-user first sync into a fresh scim2-server, {args.concurrency} connectors ==")
    fresh = Peer()
    try:
        s = first_sync(rt, fresh.base_url, fresh.token, args.sync_users, args.concurrency)
        status, listed = fresh.get("/Users?count=1")
        print(f"{s['seconds']:.2f} s, {args.sync_users / s['seconds']:.0f} users/s, {s['created']} created, "
              f"{s['requests']} requests ({s['bulk']} bulk); scim2-server holds {listed['totalResults']} users "
              f"(read back with a plain GET)")
        if status != 200 or listed["totalResults"] != args.sync_users:
            raise RuntimeError(f"scim2-server holds {listed.get('totalResults')} users, not {args.sync_users}")
        figures.update(sync_users=args.sync_users, sync_concurrency=args.concurrency, sync_seconds=s["seconds"],
                       sync_requests=s["requests"], sync_bulk=s["bulk"])
    finally:
        fresh.stop()
    rt.close()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
