"""MariaDB stopped in the middle of a sync and started again: nothing is lost (every WordPress
user ends up on the server, linked) and nothing is sent twice (no user is created twice)."""

from __future__ import annotations

import re
import subprocess

from harness import WEB_USER, MariaDB, Scim2Server, as_user, wait_for
from plugin_calls import configure_client, users_by_name

USERS = 1000


def remote_total(server: Scim2Server) -> int:
    status, body = server.get("/Users?count=0")
    assert status == 200, body
    return int(body["totalResults"])


def test_mariadb_stopped_mid_sync(wp_site, scim2_server: Scim2Server, mariadb: MariaDB):
    site = wp_site("dbloss")
    site.php(f"""
for ($i = 0; $i < {USERS}; $i++) {{
    $login = sprintf('loss%04d', $i);
    $id = wp_insert_user(['user_login' => $login, 'user_email' => $login . '@example.test', 'role' => 'subscriber', 'user_pass' => 'x']);
    if (is_wp_error($id)) {{ fwrite(STDERR, $id->get_error_message()); exit(1); }}
}}""", timeout=1800)
    configure_client(site, scim2_server, automatic=False)
    # Small batches, one at a time: the sync takes long enough for the database to go away in
    # its middle on any machine.
    mu = site.path / "wp-content" / "mu-plugins"
    mu.mkdir(exist_ok=True)
    (mu / "small-batches.php").write_text("<?php add_filter('scim_provisioner_sync_batch_size', fn () => 5);"
                                          " add_filter('scim_provisioner_sync_workers', fn () => 1);\n")
    worker = site.plugin_dir / "bin" / "worker"
    proc = subprocess.Popen(as_user(WEB_USER, ["php", str(worker), f"--path={site.path}", "sync"]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=site.path)
    try:
        wait_for(lambda: remote_total(scim2_server) >= 50 or proc.poll() is not None, "the sync under way", limit=600)
        assert remote_total(scim2_server) < USERS, "the sync was nearly done before the database could be stopped"
        assert proc.poll() is None, "the sync ended before the database could be stopped: " + proc.communicate()[0]
        mariadb.stop()
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
        mariadb.start()
    assert proc.returncode == 1, (out, err)
    assert "sync:" in out, (out, err)
    sent_before = remote_total(scim2_server)
    assert 50 <= sent_before <= USERS + 1

    out = site.worker("sync", timeout=1800).stdout
    assert "0 failed" in out, out
    remote = users_by_name(scim2_server)  # fails on a userName the server holds twice
    assert len(remote) == USERS + 1  # and the administrator
    assert all(f"loss{i:04d}" in remote for i in range(USERS))
    rows = mariadb.query(site.db_name, "SELECT u.user_login, JSON_VALUE(m.meta_value, '$.remote_id') FROM wp_users u"
                                       " LEFT JOIN wp_usermeta m ON m.user_id = u.ID AND m.meta_key = '_scim_provisioner_link'")
    assert len(rows) == USERS + 1
    for login, remote_id in rows:
        assert remote_id is not None, f"{login} is not linked"
        assert remote[login]["id"] == remote_id
    # Users sent before the database went away but not recorded as linked were adopted, not
    # created again: the second sync created exactly the ones the server did not have.
    counts = {word: int(n) for n, word in re.findall(r"(\d+) ([a-z]+)", out.split("sync:", 1)[1])}
    assert counts["created"] == USERS + 1 - sent_before, out
    assert site.worker("sync").stdout.count(f"{USERS + 1} unchanged") == 1
