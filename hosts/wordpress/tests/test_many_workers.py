"""Many bin/worker processes on one MariaDB drain one outbox: every queued change reaches
scim2-server exactly once and each user's in order, and a worker killed with SIGKILL while it
holds a claimed batch loses its lease, after which the others deliver its rows; and MariaDB
stopped for a few seconds mid-run loses nothing either.

Checked from outside the plugin: a recording proxy in front of scim2-server (the PHP
library's tests/support/recording-proxy.php under php -S) logs every write the server
accepted with the sequence number it stored (each change carries ``seq-N-seq`` in the user's
first name), and the users are read back from scim2-server itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from harness import (WEB_USER, HarnessError, MariaDB, Scim2Server, WordPressSite, as_user, free_port, spawn,
                     stop_process, wait_for)
from plugin_calls import PLUGIN, call, configure_client, users_by_name

USERS = 60
CHANGES = 4
# Longer than the slow worker's whole batch (50 rows) on a loaded machine, so that the killed
# worker's rows wait for its lease to run out (test_short_leases: a lease shorter than a batch).
LEASE_SECONDS = 30
# A lease shorter than a batch against a slow server, much longer than one row's delivery: a
# worker extends its lease between rows, every third of it (ClientService::deliverBatch).
SHORT_LEASE_SECONDS = 5
SLOW_SERVER_MS = 100
# How long the database is away in the outage test.
OUTAGE_SECONDS = 3
PROXY = Path(__file__).resolve().parents[2] / "php" / "tests" / "support" / "recording-proxy.php"


def _proxy(upstream: str, record: Path, log: Path, delay_ms: int = 0) -> tuple[subprocess.Popen, str]:
    port = free_port()
    # One process: PHP_CLI_SERVER_WORKERS's forked workers would outlive a stopped parent.
    env = dict(os.environ, UPSTREAM=upstream, RECORD_FILE=str(record), DELAY_MS=str(delay_ms))
    proc = spawn(["php", "-S", f"127.0.0.1:{port}", str(PROXY)], log, env=env)
    base = f"http://127.0.0.1:{port}/v2"

    def ready() -> bool:
        import urllib.request
        with urllib.request.urlopen(f"{base}/ServiceProviderConfig", timeout=2) as r:
            return r.status == 200
    wait_for(ready, "the recording proxy", limit=60, process=proc, log=log)
    return proc, base


def _held(site: WordPressSite) -> dict[str, int]:
    """Rows under a live lease, by owner."""
    rows = site.mariadb.query(site.db_name, "SELECT claimed_by, COUNT(*) FROM wp_scim_outbox "
                              "WHERE claimed_until >= UNIX_TIMESTAMP() GROUP BY claimed_by")
    return {owner: int(n) for owner, n in rows}


def _pending(site: WordPressSite) -> int:
    return int(site.mariadb.query(site.db_name, "SELECT COUNT(*) FROM wp_scim_outbox WHERE parked = 0")[0][0])


def _queue_changes(site: WordPressSite, scim2_server: Scim2Server, base_url: str, lease: int) -> str:
    """The client configured for base_url with a lease of `lease` seconds (SCIM_TEST_BASE_URL
    points one worker elsewhere), and USERS users' CHANGES changes queued; returns the logins' prefix."""
    mu = site.path / "wp-content" / "mu-plugins"
    mu.mkdir(exist_ok=True)
    (mu / "scim-test-workers.php").write_text(f"""<?php
add_filter('scim_provisioner_outbox_lease', static fn () => {lease});
$scimTestUrl = getenv('SCIM_TEST_BASE_URL');
if (is_string($scimTestUrl) && $scimTestUrl !== '') {{
    add_filter('option_scim_provisioner_client', static function ($v) use ($scimTestUrl) {{
        if (is_array($v)) {{ $v['base_url'] = $scimTestUrl; }}
        return $v;
    }});
}}
""")
    configure_client(site, SimpleNamespace(base_url=base_url, token=scim2_server.token), automatic=False)

    # The users, then their changes queued as a busy site's would be: five users' changes
    # interleaved, so a batch holds several changes of the same users.
    prefix = "mw" + os.urandom(3).hex()
    site.php(f"""
$ids = [];
for ($i = 0; $i < {USERS}; $i++) {{
    $login = sprintf('{prefix}%03d', $i);
    $id = wp_insert_user(['user_login' => $login, 'user_email' => $login . '@example.test', 'role' => 'subscriber',
        'first_name' => 'seq-{CHANGES}-seq', 'last_name' => 'Worker', 'user_pass' => wp_generate_password(16)]);
    if (is_wp_error($id)) {{ fwrite(STDERR, $id->get_error_message()); exit(1); }}
    $ids[] = $id;
}}
global $wpdb;
$wpdb->query("DELETE FROM {{$wpdb->prefix}}scim_outbox");
$plugin = {PLUGIN};
for ($block = 0; $block < {USERS}; $block += 5) {{
    for ($seq = 1; $seq <= {CHANGES}; $seq++) {{
        foreach (array_slice($ids, $block, 5) as $id) {{
            $snapshot = $plugin->client()->fields()->snapshot(get_userdata($id));
            $snapshot['fields']['first_name'] = "seq-$seq-seq";
            $plugin->outbox()->enqueue($id, $seq === 1 ? 'created' : 'updated', $snapshot);
        }}
    }}
}}
""", timeout=600)
    assert _pending(site) == USERS * CHANGES
    return prefix


def _drain_until_empty(site: WordPressSite, argv: list[str], errors: list[str]) -> None:
    """What a system crontab does, quickly: run the worker again while anything is queued."""
    end = time.monotonic() + 300
    try:
        while _pending(site) > 0 and time.monotonic() < end:
            out = subprocess.run(argv, cwd=site.path, capture_output=True, text=True, timeout=300)
            if out.returncode != 0 and "nothing due" not in out.stdout:
                errors.append(f"exit {out.returncode}: " + out.stdout + out.stderr)
            if "0 delivered" in out.stdout:
                time.sleep(0.2)   # others hold the rest, or a dead worker's lease has yet to run out
    except Exception as e:  # the database gone at the end of a failed test
        errors.append(repr(e))


def _writes_per_user(scim2_server: Scim2Server, record: Path | list[Path], prefix: str) -> int:
    """Checks each user on scim2-server once, in its final state, and its changes taken in
    order; returns how many writes were repeats. Several records are read one after the
    other: each user's writes must be in time order across them."""
    remote = {n: u for n, u in users_by_name(scim2_server).items() if n.startswith(prefix)}
    assert len(remote) == USERS, "no user lost, none created twice"
    for name, user in remote.items():
        assert user["name"]["givenName"] == f"seq-{CHANGES}-seq", (name, user["name"])

    # What the server saw, per user, in the order it took the writes.
    id_to_name = {u["id"]: n for n, u in remote.items()}
    seen: dict[str, list[int]] = {}
    lines = [line for r in (record if isinstance(record, list) else [record]) for line in r.read_text().splitlines()]
    for line in lines:
        w = json.loads(line)
        name = w.get("userName") or id_to_name.get(w.get("id"))
        if name and name.startswith(prefix):
            seen.setdefault(name, []).append(w["seq"])
    assert len(seen) == USERS
    repeats = 0
    for name, seqs in seen.items():
        assert seqs == sorted(seqs), f"{name}: the server took its changes out of order: {seqs}"
        assert sorted(set(seqs)) == list(range(1, CHANGES + 1)), f"{name}: {seqs}"
        repeats += len(seqs) - CHANGES
    return repeats


def test_four_workers_deliver_every_change_once_in_order_and_a_killed_workers_rows_go_to_the_others(
        wp_site, scim2_server: Scim2Server, tmp_path: Path):
    site = wp_site("workers")
    record = tmp_path / "writes.jsonl"
    record.touch()
    upstream = scim2_server.base_url.removesuffix("/v2")
    fast, fast_url = _proxy(upstream, record, tmp_path / "proxy.log")
    # The victim's writes apart: all of them come before any other worker's write of the
    # same user (it holds the user's head until its lease runs out), so reading its record
    # first keeps each user's writes in order.
    victim_record = tmp_path / "victim-writes.jsonl"
    victim_record.touch()
    slow, slow_url = _proxy(upstream, victim_record, tmp_path / "slow-proxy.log", delay_ms=20)
    prefix = _queue_changes(site, scim2_server, fast_url, LEASE_SECONDS)

    worker = site.path / "wp-content" / "plugins" / "scim-provisioner" / "bin" / "worker"
    argv = as_user(WEB_USER, ["php", str(worker), f"--path={site.path}", "drain"])
    started = time.monotonic()
    victim = subprocess.Popen(argv, env=dict(os.environ, SCIM_TEST_BASE_URL=slow_url), cwd=site.path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(_held(site)) == 1, "the first worker holding a batch", limit=60, process=victim)
    victim_owner, batch = next(iter(_held(site).items()))

    errors: list[str] = []

    others = [threading.Thread(target=_drain_until_empty, args=(site, argv, errors)) for _ in range(3)]
    for t in others:
        t.start()
    # Mid-batch: the victim has delivered part of its batch (a few writes went through its
    # proxy) and, settling a batch at once, still holds all of it. Its owner name is
    # host:pid:random; the pid is the PHP process itself (runuser is its parent).
    try:
        wait_for(lambda: len(victim_record.read_text().splitlines()) >= 3, "the victim part-way through its batch",
                 limit=120, process=victim)
    except Exception:
        out, err = victim.communicate(timeout=30)
        raise AssertionError(f"the victim: {victim.returncode}\n{out[-3000:]}\n{err[-3000:]}")
    os.kill(int(victim_owner.split(":")[1]), signal.SIGKILL)
    victim.wait(timeout=30)
    held_at_death = _held(site).get(victim_owner, 0)
    assert held_at_death > 0, "the killed worker still held rows"

    for t in others:
        t.join(timeout=400)
    seconds = time.monotonic() - started
    stop_process(fast)
    stop_process(slow)
    assert not errors, errors[0][-3000:]
    counts = call(site, f"{PLUGIN}->outbox()->counts()")
    assert counts == {"pending": 0, "parked": 0, "claimed": 0}, counts

    repeats = _writes_per_user(scim2_server, [victim_record, record], prefix)
    # The victim recorded nothing of its batch (a batch is settled at once): what it sent
    # (the row in flight included) may be sent again, nothing else.
    victim_writes = len(victim_record.read_text().splitlines())
    assert repeats <= victim_writes, (repeats, victim_writes)
    print(f"\n4 bin/worker processes, {USERS * CHANGES} changes, one killed holding {held_at_death} of {batch}: "
          f"{seconds:.1f} s, {repeats} writes repeated")


def test_short_leases_against_a_slow_server_every_change_once_in_order(
        wp_site, scim2_server: Scim2Server, tmp_path: Path):
    """Leases much shorter than a batch: each worker extends its lease between rows (every
    third of it), and one that lost a row changes nothing (no repeat, no failure, no link error)."""
    site = wp_site("shortlease")
    record = tmp_path / "writes.jsonl"
    record.touch()
    upstream = scim2_server.base_url.removesuffix("/v2")
    slow, slow_url = _proxy(upstream, record, tmp_path / "slow-proxy.log", delay_ms=SLOW_SERVER_MS)
    prefix = _queue_changes(site, scim2_server, slow_url, SHORT_LEASE_SECONDS)

    worker = site.path / "wp-content" / "plugins" / "scim-provisioner" / "bin" / "worker"
    argv = as_user(WEB_USER, ["php", str(worker), f"--path={site.path}", "drain"])
    started = time.monotonic()
    errors: list[str] = []
    workers = [threading.Thread(target=_drain_until_empty, args=(site, argv, errors)) for _ in range(4)]
    for t in workers:
        t.start()
    # The first batch (50 heads, one request or two each through the slow server) outlasts the lease.
    for t in workers:
        t.join(timeout=400)
    seconds = time.monotonic() - started
    stop_process(slow)
    assert not errors, errors[0][-3000:]
    assert seconds > 2 * SHORT_LEASE_SECONDS, f"the batches took {seconds:.1f} s, not longer than a lease"
    counts = call(site, f"{PLUGIN}->outbox()->counts()")
    assert counts == {"pending": 0, "parked": 0, "claimed": 0}, counts
    repeats = _writes_per_user(scim2_server, record, prefix)
    assert repeats == 0, f"{repeats} writes repeated: a worker delivered a row after its lease ran out"
    print(f"\n4 bin/worker processes, {USERS * CHANGES} changes, {SHORT_LEASE_SECONDS} s leases, "
          f"{SLOW_SERVER_MS} ms a request: {seconds:.1f} s")


def _cron_through_outages(site: WordPressSite, argv: list[str], runs: list[tuple[int, str]], errors: list[str]) -> None:
    """What a system crontab does, quickly, on a site whose database may be away: run the
    worker again while anything is queued; while the database does not answer (the queue
    cannot even be counted), wait and try again, 0.2 s doubling to 1.6 s."""
    end = time.monotonic() + 300
    backoff = 0.2
    try:
        while time.monotonic() < end:
            try:
                pending = _pending(site)
                backoff = 0.2
            except HarnessError:
                time.sleep(backoff)
                backoff = min(1.6, backoff * 2)
                continue
            if pending == 0:
                return
            out = subprocess.run(argv, cwd=site.path, capture_output=True, text=True, timeout=300)
            runs.append((out.returncode, out.stdout + out.stderr))
            if "0 delivered" in out.stdout or out.returncode != 0:
                time.sleep(0.2)   # others hold the rest, a dead run's lease has yet to run out, or the database is away
        errors.append("the queue was not drained within 300 s")
    except Exception as e:
        errors.append(repr(e))


def test_four_workers_through_a_database_outage_every_change_once_in_order(
        wp_site, scim2_server: Scim2Server, mariadb: MariaDB, tmp_path: Path):
    """MariaDB stopped for OUTAGE_SECONDS while 4 workers drain, then started again: the runs
    wait (wpdb's reconnect) or end cleanly (no PHP fatal error), the next runs go on from what
    was recorded, and every change still reaches scim2-server once and in order."""
    site = wp_site("outage")
    record = tmp_path / "writes.jsonl"
    record.touch()
    upstream = scim2_server.base_url.removesuffix("/v2")
    # A little slow, so that the outage falls in the middle of the run on any machine.
    proxy, proxy_url = _proxy(upstream, record, tmp_path / "proxy.log", delay_ms=20)
    prefix = _queue_changes(site, scim2_server, proxy_url, SHORT_LEASE_SECONDS)
    total = USERS * CHANGES

    worker = site.path / "wp-content" / "plugins" / "scim-provisioner" / "bin" / "worker"
    argv = as_user(WEB_USER, ["php", str(worker), f"--path={site.path}", "drain"])
    runs: list[tuple[int, str]] = []
    errors: list[str] = []
    started = time.monotonic()
    crons = [threading.Thread(target=_cron_through_outages, args=(site, argv, runs, errors)) for _ in range(4)]
    for t in crons:
        t.start()
    writes = lambda: len(record.read_text().splitlines())  # noqa: E731
    try:
        wait_for(lambda: writes() >= total // 4 or not any(t.is_alive() for t in crons), "a quarter delivered",
                 limit=120)
        at_stop = writes()
        assert at_stop < total, "the workers were done before the database could be stopped"
        mariadb.stop()
        # The outage itself: a fault of a set length, not a wait for something to happen.
        time.sleep(OUTAGE_SECONDS)
    finally:
        mariadb.start()
    for t in crons:
        t.join(timeout=400)
    seconds = time.monotonic() - started
    stop_process(proxy)
    assert not errors, errors[0][-3000:]
    # wpdb bridges a short outage itself (it reconnects, up to 5 tries a second apart); a run
    # cut off in a claim's transaction ends with exit 1 (WpdbOutboxSql) and the next goes on.
    failed = [out for rc, out in runs if rc != 0]
    for rc, out in runs:
        assert "Fatal error" not in out and "Uncaught" not in out, out[-3000:]
    counts = call(site, f"{PLUGIN}->outbox()->counts()")
    assert counts == {"pending": 0, "parked": 0, "claimed": 0}, counts
    repeats = _writes_per_user(scim2_server, record, prefix)
    # At most the row each of the 4 cut-off runs had sent but not yet recorded.
    assert repeats <= 4, repeats
    print(f"\n4 bin/worker loops, {total} changes, MariaDB down {OUTAGE_SECONDS} s after {at_stop} writes: "
          f"{seconds:.1f} s, {len(failed)} runs cut off, {repeats} writes repeated")
