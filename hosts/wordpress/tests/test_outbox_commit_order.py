"""The WordPress outbox hands out one user's events in the order their transactions commit, not
the order they took their ids (``Outbox::enqueue`` locks the user's row in
``wp_scim_outbox_users`` first); an enqueue inside a caller's transaction joins it instead of
committing it, and one outside opens its own, on MariaDB and (forced) as on MySQL; a deleted
user's ``wp_scim_outbox_users`` row goes with their last event; and a site on the outbox's schema version 1, with an event still queued,
is upgraded to version 2 without losing it.

The race is two real PHP processes inside WordPress: A opens a transaction (as the plugin's
server role does around ``wp_insert_user``, whose hooks queue the change), queues event 1 and
holds the transaction open; B then queues event 2 on its own. B must wait on the user's lock
(seen in ``information_schema.INNODB_TRX``) until A commits, so event 2 takes the later id.
Without the lock B commits at once, and a deliverer would send 2 while 1 is still to come."""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path

import pytest

from harness import WEB_USER, WordPressSite, as_user, chown, stop_process, wait_for
from plugin_calls import PLUGIN, call, save_settings

# One child: queues event SEQ for USER_ID; with MODE=hold inside a transaction of its own that
# stays open until a line arrives on stdin. Prints "connection N", "enqueued ID", "committed".
# With NO_IN_TRANSACTION=1, as on MySQL: enqueue cannot ask @@in_transaction. With
# PAUSE_BEFORE_EVENT=1 it stops between the user's row and the event, printing "paused".
ENQUEUER = r"""<?php
$_SERVER['HTTP_HOST'] = getenv('SITE_HOST');
require getenv('SITE_PATH') . '/wp-load.php';
global $wpdb;
$say = static function (string $line): void { fwrite(STDOUT, $line . "\n"); fflush(STDOUT); };
if (getenv('NO_IN_TRANSACTION') === '1') {
    // MySQL, which has no @@in_transaction, played by MariaDB: the variable's name is changed.
    add_filter('query', static fn (string $q): string => str_replace('@@in_transaction', '@@no_such_in_transaction', $q));
}
if (getenv('PAUSE_BEFORE_EVENT') === '1') {
    // Between the user's row and the event's: says "paused" and waits for a line.
    add_filter('query', static function (string $q) use ($wpdb, $say): string {
        static $paused = false;
        if (!$paused && str_starts_with(ltrim($q), "INSERT INTO {$wpdb->prefix}scim_outbox (")) {
            $paused = true;
            $say('paused');
            fgets(STDIN);
        }
        return $q;
    });
}
$userId = (int) getenv('USER_ID');
$seq = (int) getenv('SEQ');
$say('connection ' . (int) $wpdb->get_var('SELECT CONNECTION_ID()'));
$hold = getenv('MODE') === 'hold';
if ($hold) {
    $wpdb->query('START TRANSACTION');
    // The caller's own write in the same transaction: it must not be committed by enqueue.
    $wpdb->query($wpdb->prepare("INSERT INTO {$wpdb->options} (option_name, option_value, autoload)
        VALUES (%s, %s, 'no')", 'scim_test_caller_write', (string) $seq));
}
$snapshot = ['id' => (string) $userId, 'fields' => ['seq' => $seq, 'note' => '50% ? off'], 'active' => true];
$say('enqueued ' . \ScimProvisioner\WordPress\Plugin::instance()->outbox()->enqueue($userId, 'updated', $snapshot));
if ($hold) {
    fgets(STDIN);
    $wpdb->query('COMMIT');
}
$say('committed');
"""


def _start(site: WordPressSite, script: Path, user_id: int, seq: int, mode: str, log: Path,
           no_in_transaction: bool = False, pause: bool = False) -> subprocess.Popen:
    env = dict(os.environ, SITE_HOST=f"127.0.0.1:{site.port}", SITE_PATH=str(site.path), USER_ID=str(user_id),
               SEQ=str(seq), MODE=mode, NO_IN_TRANSACTION="1" if no_in_transaction else "0",
               PAUSE_BEFORE_EVENT="1" if pause else "0")
    with open(log, "ab") as err:
        # Unbuffered bytes: _line reads the pipe itself, so no line waits in a reader's buffer
        # while select() says there is nothing to read.
        return subprocess.Popen(as_user(WEB_USER, ["php", "-d", "display_errors=stderr", str(script)]),
                                cwd=site.path, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err, bufsize=0)


# What each child (by pid) printed past its last line read.
_unread: dict[int, bytes] = {}


def _line(proc: subprocess.Popen, log: Path, limit: float = 60) -> str:
    """The child's next line of output, waited for up to `limit` seconds."""
    end = time.monotonic() + limit
    buf = _unread.get(proc.pid, b"")
    while b"\n" not in buf:
        left = end - time.monotonic()
        ready = left > 0 and select.select([proc.stdout], [], [], left)[0]
        chunk = os.read(proc.stdout.fileno(), 4096) if ready else b""
        if not chunk:
            raise AssertionError(f"no line from the child (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
        buf += chunk
    line, _, _unread[proc.pid] = buf.partition(b"\n")
    return line.decode().strip()


def _has_line(proc: subprocess.Popen) -> bool:
    """Whether the child has printed anything not read yet (without waiting)."""
    return bool(_unread.get(proc.pid)) or bool(select.select([proc.stdout], [], [], 0)[0])


def _user_rows(site: WordPressSite, user_id: int) -> int:
    return int(site.mariadb.query(site.db_name, f"SELECT COUNT(*) FROM wp_scim_outbox WHERE user_id = {user_id}")[0][0])


def _claim_all(site: WordPressSite, user_id: int) -> list[int]:
    """Claims and completes the user's rows one claim at a time (as a deliverer does); returns
    each row's `seq` in the order they were handed out."""
    return call(site, f"""(function () {{
    $outbox = {PLUGIN}->outbox();
    $seen = [];
    while (($rows = $outbox->claimDue('order-test', 10, [{user_id}])) !== []) {{
        if (count($rows) !== 1) {{ throw new \\RuntimeException('more than one row of one user at once'); }}
        $seen[] = json_decode($rows[0]['user_json'], true)['fields']['seq'];
        if (!$outbox->complete($rows[0]['id'], 'order-test')) {{ throw new \\RuntimeException('not held'); }}
    }}
    return $seen;
}})()""")


@pytest.mark.parametrize("no_in_transaction", [False, True], ids=["mariadb", "mysql_without_in_transaction"])
def test_one_users_events_are_claimable_in_commit_order_when_two_requests_race(wp_site, tmp_path: Path,
                                                                              no_in_transaction: bool):
    """Also as on MySQL (no @@in_transaction, forced on MariaDB by renaming the variable in
    every query): A's enqueue must still see A's transaction and join it, and B's must still
    open its own, or B would not wait on A's lock."""
    site = wp_site("order")
    user_id = site.create_user("orderuser")   # the client role is not configured: nothing queued yet
    assert _user_rows(site, user_id) == 0
    script = site.dir / "enqueue-child.php"
    script.write_text(ENQUEUER)
    chown(script, WEB_USER, 0o644)
    log = tmp_path / "children.log"

    a = _start(site, script, user_id, 1, "hold", log, no_in_transaction)
    b = None
    try:
        assert _line(a, log).startswith("connection ")
        assert _line(a, log).startswith("enqueued "), "A queued and holds its transaction open"
        # Enqueue joined A's transaction: neither A's own write nor its event is visible outside.
        assert _user_rows(site, user_id) == 0, "enqueue committed the caller's transaction"
        assert site.mariadb.query(site.db_name, "SELECT COUNT(*) FROM wp_options "
                                  "WHERE option_name = 'scim_test_caller_write'") == [["0"]]

        b = _start(site, script, user_id, 2, "commit", log, no_in_transaction)
        b_connection = int(_line(b, log).split()[1])
        waiting = ("SELECT COUNT(*) FROM information_schema.INNODB_TRX "
                   f"WHERE trx_mysql_thread_id = {b_connection} AND trx_state = 'LOCK WAIT'")
        b_committed = False

        def b_waits_or_committed() -> bool:
            nonlocal b_committed
            b_committed = _user_rows(site, user_id) > 0
            return b_committed or site.mariadb.query(None, waiting) == [["1"]]
        wait_for(b_waits_or_committed, "B waiting on the user's lock", limit=60)
        assert not b_committed, "B committed a later event while A, queued first, was still open"
        assert _claim_all(site, user_id) == [], "nothing of the user is claimable while A is open"

        a.stdin.write(b"commit\n")
        a.stdin.flush()
        assert _line(a, log) == "committed"
        assert _line(b, log).startswith("enqueued "), "B goes on once A committed"
        assert _line(b, log) == "committed"
        assert _claim_all(site, user_id) == [1, 2], "A (committed first) before B"
        assert site.mariadb.query(site.db_name, "SELECT option_value FROM wp_options "
                                  "WHERE option_name = 'scim_test_caller_write'") == [["1"]]
    finally:
        for child in (a, b):
            if child is not None:
                stop_process(child, limit=30)

    # The caller's rollback takes the event with it; a retry's replaceForUser (its own
    # transaction, the same lock order) still works.
    out = call(site, f"""(function () {{
    global $wpdb;
    $outbox = {PLUGIN}->outbox();
    $snapshot = ['id' => '{user_id}', 'fields' => ['seq' => 3], 'active' => true];
    $wpdb->query('START TRANSACTION');
    $outbox->enqueue({user_id}, 'updated', $snapshot);
    $wpdb->query('ROLLBACK');
    $afterRollback = $outbox->counts({user_id})['pending'];
    $replaced = $outbox->replaceForUser({user_id}, 'reconcile', ['id' => '{user_id}', 'fields' => ['seq' => 4], 'active' => true]);
    return [$afterRollback, $replaced, $outbox->counts({user_id})['pending'], $wpdb->get_var('SELECT @@in_transaction')];
}})()""")
    assert out == [0, True, 1, "0"], out
    assert _claim_all(site, user_id) == [4]


@pytest.mark.parametrize("no_in_transaction", [False, True], ids=["mariadb", "mysql_without_in_transaction"])
def test_an_enqueue_outside_a_transaction_holds_the_user_until_its_event_commits(wp_site, tmp_path: Path,
                                                                                 no_in_transaction: bool):
    """B queues outside any transaction and is stopped between the user's row and its event;
    A then queues inside a transaction of its own. A must wait for B: enqueue ran B's two
    statements in a transaction it opened itself, which holds the user's row until B's event
    is committed. Had each statement committed alone (the MySQL path before it could tell
    whether a transaction was open), A would take its id while B had not yet taken its own,
    and B would commit the later id first."""
    site = wp_site("own")
    user_id = site.create_user("ownuser")
    script = site.dir / "enqueue-child.php"
    script.write_text(ENQUEUER)
    chown(script, WEB_USER, 0o644)
    log = tmp_path / "children.log"

    b = _start(site, script, user_id, 1, "commit", log, no_in_transaction, pause=True)
    a = None
    try:
        assert _line(b, log).startswith("connection ")
        assert _line(b, log) == "paused", "B holds the user's row, its event not yet queued"
        a = _start(site, script, user_id, 2, "hold", log, no_in_transaction)
        a_connection = int(_line(a, log).split()[1])
        waiting = ("SELECT COUNT(*) FROM information_schema.INNODB_TRX "
                   f"WHERE trx_mysql_thread_id = {a_connection} AND trx_state = 'LOCK WAIT'")
        wait_for(lambda: _has_line(a) or site.mariadb.query(None, waiting) == [["1"]],
                 "A waiting on the user's lock", limit=60)
        assert not _has_line(a), f"A queued while B, first, had not: {_line(a, log)}"

        b.stdin.write(b"go\n")
        b.stdin.flush()
        assert _line(b, log).startswith("enqueued ")
        assert _line(b, log) == "committed"
        assert _line(a, log).startswith("enqueued "), "A goes on once B committed"
        a.stdin.write(b"commit\n")
        a.stdin.flush()
        assert _line(a, log) == "committed"
        assert _claim_all(site, user_id) == [1, 2], "B (first to hold the user) before A"
    finally:
        for child in (a, b):
            if child is not None:
                stop_process(child, limit=30)


def test_upgrade_from_schema_version_1_keeps_a_queued_event(wp_site):
    site = wp_site("upgrade")
    user_id = site.create_user("upgradeuser")
    # What version 1 left: no wp_scim_outbox_users, the option at 1, and a row its enqueue
    # wrote (the outbox table itself is the same in both versions).
    site.mariadb.query(site.db_name, f"""
DROP TABLE wp_scim_outbox_users;
UPDATE wp_options SET option_value = '1' WHERE option_name = 'scim_provisioner_schema';
INSERT INTO wp_scim_outbox (user_id, event, user_json, link_json, created_at)
VALUES ({user_id}, 'created', '{{"id":"{user_id}","fields":{{"seq":1}},"active":true}}', NULL, UNIX_TIMESTAMP());
""")
    queued = site.mariadb.query(site.db_name, "SELECT id, user_json FROM wp_scim_outbox")
    assert len(queued) == 1

    # Any request boots the plugin, which upgrades the schema; then a new event of the same user.
    new_id = call(site, f"""{PLUGIN}->outbox()->enqueue({user_id}, 'updated',
        ['id' => '{user_id}', 'fields' => ['seq' => 2], 'active' => true])""")
    assert site.mariadb.query(site.db_name, "SELECT option_value FROM wp_options "
                              "WHERE option_name = 'scim_provisioner_schema'") == [["2"]]
    assert site.mariadb.query(site.db_name, "SELECT user_id, enqueued FROM wp_scim_outbox_users") == \
        [[str(user_id), "1"]]
    assert site.mariadb.query(site.db_name, f"SELECT id, user_json FROM wp_scim_outbox WHERE id < {new_id}") == \
        queued, "the queued event survived the upgrade unchanged"
    assert _claim_all(site, user_id) == [1, 2]


def test_a_change_queued_inside_the_server_roles_transaction_commits_with_it(wp_site):
    """The server role creates a WordPress user in a transaction (WpDirectory), and its
    user_register hook queues the client role's change inside it: enqueue joins that
    transaction, so the user and the event are there together once the SCIM POST answered."""
    site = wp_site("joined")
    save_settings(site, base_url="http://127.0.0.1:9/v2", auth="bearer", token="not-sent", automatic=False)
    token = call(site, f"{PLUGIN}->server()->rotateToken()")
    status, body = site.scim("POST", "Users", token, {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "joineduser",
        "emails": [{"value": "joineduser@example.test", "primary": True}]})
    assert status == 201, body
    user_id = int(site.mariadb.query(site.db_name, "SELECT ID FROM wp_users WHERE user_login = 'joineduser'")[0][0])
    rows = site.mariadb.query(site.db_name, f"SELECT event FROM wp_scim_outbox WHERE user_id = {user_id}")
    assert rows == [["created"]], rows
    assert site.mariadb.query(site.db_name, "SELECT COUNT(*) FROM wp_scim_log WHERE operation = 'queue'") == [["0"]], \
        "no change failed to queue"

    # A server without @@in_transaction (MySQL), simulated with WordPress's `query` filter:
    # enqueue asks with SET TRANSACTION instead, refused inside the caller's transaction (it
    # joins it: the caller's rollback takes its event) and accepted outside one (it opens its
    # own); replaceForUser likewise. Nothing of the refusal reaches wpdb's error output.
    out = call(site, f"""(function () {{
    global $wpdb;
    $sent = [];
    add_filter('query', static function (string $q) use (&$sent): string {{
        $q = str_replace('@@in_transaction', '@@no_such_in_transaction', $q);
        $sent[] = $q;
        return $q;
    }});
    $outbox = {PLUGIN}->outbox();
    $snapshot = ['id' => '{user_id}', 'fields' => [], 'active' => true];
    $wpdb->query('START TRANSACTION');
    $outbox->enqueue({user_id}, 'updated', $snapshot);
    $joined = [count(preg_grep('/^SET TRANSACTION/', $sent)), count(preg_grep('/START TRANSACTION/', $sent))];
    $wpdb->query('ROLLBACK');
    $afterRollback = $outbox->counts({user_id})['pending'];
    $sent = [];
    $outbox->enqueue({user_id}, 'updated', $snapshot);
    $own = [count(preg_grep('/START TRANSACTION/', $sent)), count(preg_grep('/^COMMIT/', $sent))];
    $asked = count(preg_grep('/no_such_in_transaction/', $sent));
    $replaced = $outbox->replaceForUser({user_id}, 'reconcile', $snapshot);
    // @@session.in_transaction: the same variable, spelt so that the filter leaves it alone.
    return [$joined, $afterRollback, $own, $asked, $replaced, $outbox->counts({user_id})['pending'],
        $wpdb->get_var('SELECT @@session.in_transaction')];
}})()""")
    # Inside the caller's: one SET TRANSACTION (refused), the caller's START TRANSACTION only,
    # and the event gone with its rollback (the POST's alone left). Outside: a transaction of
    # its own, committed; the variable asked for once in the process; the replacement done;
    # no transaction left open.
    assert out == [[1, 1], 1, [1, 1], 0, True, 1, "0"], out


def test_a_deleted_users_outbox_users_row_goes_with_their_last_event(wp_site):
    """Kept while anything of theirs is queued or parked, and for a row that is not a deletion;
    removed once the deleted user's last row is delivered."""
    site = wp_site("cleanup")
    users = "SELECT user_id FROM wp_scim_outbox_users ORDER BY user_id"
    out = call(site, f"""(function () {{
    global $wpdb;
    $outbox = {PLUGIN}->outbox();
    $u = static fn (int $id): array => ['id' => (string) $id, 'fields' => [], 'active' => true];
    $outbox->enqueue(901, 'deleted', $u(901));
    $outbox->enqueue(902, 'updated', $u(902));
    $outbox->enqueue(902, 'deleted', $u(902));
    $outbox->enqueue(903, 'created', $u(903));
    $outbox->enqueue(903, 'deleted', $u(903));
    $outbox->enqueue(904, 'updated', $u(904));
    $users = static fn (): array => array_map('intval', $wpdb->get_col('SELECT user_id FROM ' . $wpdb->prefix . 'scim_outbox_users ORDER BY user_id'));
    $done = static function (array $rows) use ($outbox): void {{
        foreach ($rows as $r) {{
            if ($r['event'] === 'created') {{
                $outbox->fail($r['id'], 'cleanup', 1, 0, 'stuck', null, true);
            }} elseif (!$outbox->complete($r['id'], 'cleanup', $r['event'] === 'deleted' ? $r['user_id'] : null)) {{
                throw new \\RuntimeException('not held');
            }}
        }}
    }};
    $before = $users();
    $done($outbox->claimDue('cleanup', 10));
    $afterFirst = $users();
    $done($outbox->claimDue('cleanup', 10));
    return [$before, $afterFirst, $users(), $outbox->counts(), $wpdb->get_var('SELECT @@in_transaction')];
}})()""")
    # 901: its only row, a deletion, delivered. 902: its deletion waited behind an update, then
    # went. 903: its creation is parked, so its row stays. 904: not deleted.
    assert out == [[901, 902, 903, 904], [902, 903, 904], [903, 904],
                   {"pending": 0, "parked": 1, "claimed": 0}, "0"], out
    assert site.mariadb.query(site.db_name, users) == [["903"], ["904"]]
    _a_batch_is_settled_once_in_one_transaction(site)


def _a_batch_is_settled_once_in_one_transaction(site: WordPressSite) -> None:
    """Outbox::settle (the PHP library's OutboxClaims::settleBatch over $wpdb), on the cleanup
    test's site: a batch of three (a delivered update, a failure, a deleted user's row) in one
    transaction with a fixed number of statements, the link and last results as user meta in
    it; the same batch again is lost; a worker whose lease ran out and whose row another took
    writes nothing; a deleted user's row completed inside the caller's transaction joins it
    (a savepoint, no transaction of its own) and goes with its rollback."""
    out = call(site, f"""(function () {{
    global $wpdb;
    $outbox = {PLUGIN}->outbox();
    $p = $wpdb->prefix;
    $user = static fn (string $login): int => (int) wp_insert_user(['user_login' => $login,
        'user_pass' => wp_generate_password(), 'user_email' => $login . '@example.test']);
    $a = $user('settle-a');
    $b = $user('settle-b');
    $wpdb->query("DELETE FROM {{$p}}scim_outbox");
    $snap = static fn (int $id): array => ['id' => (string) $id, 'fields' => [], 'active' => true];
    $outbox->enqueue($a, 'updated', $snap($a));
    $outbox->enqueue($b, 'updated', $snap($b));
    $outbox->enqueue(911, 'deleted', $snap(911));
    $event = static fn (array $r): \\ScimProvisioner\\OutboxEvent => new \\ScimProvisioner\\OutboxEvent($r['id'],
        \\ScimProvisioner\\UserEvent::from($r['event']), new \\ScimProvisioner\\CmsUser((string) $r['user_id'], [], true),
        $r['attempts'], $r['created_at']);
    $rows = [];
    foreach ($outbox->claimDue('w1', 10) as $r) {{
        $rows[$r['user_id']] = $event($r);
    }}
    $batch = static fn (string $remote): array => [
        \\ScimProvisioner\\Settlement::delivered($rows[$a], new \\ScimProvisioner\\Link($remote, 'W/"1"', null)),
        \\ScimProvisioner\\Settlement::failed($rows[$b],
            new \\ScimProvisioner\\ProvisioningException('http', 'busy', 503, null, null, 'backoff')),
        \\ScimProvisioner\\Settlement::delivered($rows[911], null),
    ];
    $sent = [];
    $count = static function (string $q) use (&$sent): string {{
        $sent[] = $q;
        return $q;
    }};
    add_filter('query', $count);
    $first = $outbox->settle('w1', $batch('remote-a'), [$rows[$a]->id => ['fingerprint' => 'fp-a', 'message' => 'updated']]);
    $statements = count($sent);
    $transactions = [count(preg_grep('/^START TRANSACTION/', $sent)), count(preg_grep('/^COMMIT/', $sent))];
    $again = $outbox->settle('w1', $batch('remote-again'));
    remove_filter('query', $count);
    wp_cache_delete($a, 'user_meta');
    wp_cache_delete($b, 'user_meta');
    $meta = [\\ScimProvisioner\\WordPress\\Links::get($a), \\ScimProvisioner\\WordPress\\Links::lastResult($a)['result'] ?? null,
        \\ScimProvisioner\\WordPress\\Links::get($b), \\ScimProvisioner\\WordPress\\Links::lastResult($b)['result'] ?? null];
    $left = array_map(static fn (array $r): array => [(int) $r['user_id'], (int) $r['attempts'], $r['claimed_by'],
        (int) $r['next_attempt_at'] > time()], $wpdb->get_results("SELECT * FROM {{$p}}scim_outbox ORDER BY id", ARRAY_A));
    $users = array_map('intval', $wpdb->get_col("SELECT user_id FROM {{$p}}scim_outbox_users WHERE user_id IN ($a, $b, 911) ORDER BY user_id"));

    // A lease that ran out, the row taken by w3: w2's late settle writes nothing.
    $outbox->enqueue($a, 'updated', $snap($a));
    $late = $event($outbox->claimDue('w2', 10, [$a])[0]);
    $wpdb->query("UPDATE {{$p}}scim_outbox SET claimed_until = 0 WHERE id = {{$late->id}}");
    $taken = count($outbox->claimDue('w3', 10, [$a]));
    $lost = $outbox->settle('w2', [\\ScimProvisioner\\Settlement::delivered($late, new \\ScimProvisioner\\Link('remote-late', null, null))],
        [$late->id => ['fingerprint' => 'fp-late', 'message' => 'updated']]);
    wp_cache_delete($a, 'user_meta');
    $afterLost = [\\ScimProvisioner\\WordPress\\Links::get($a)['remote_id'] ?? null,
        $wpdb->get_var("SELECT claimed_by FROM {{$p}}scim_outbox WHERE id = {{$late->id}}")];

    // A deleted user's row completed inside the caller's transaction, which then rolls back.
    $outbox->enqueue(912, 'deleted', $snap(912));
    $row = $outbox->claimDue('w4', 10, [912])[0];
    $wpdb->query('START TRANSACTION');
    $sent = [];
    add_filter('query', $count);
    $inside = $outbox->complete($row['id'], 'w4', 912);
    remove_filter('query', $count);
    $stillOpen = (int) $wpdb->get_var('SELECT @@in_transaction');
    $wpdb->query('ROLLBACK');
    $joined = [count(preg_grep('/^START TRANSACTION/', $sent)), count(preg_grep('/^COMMIT/', $sent)),
        count(preg_grep('/SAVEPOINT/', $sent))];
    $rolledBack = [$outbox->counts(912)['pending'],
        (int) $wpdb->get_var("SELECT COUNT(*) FROM {{$p}}scim_outbox_users WHERE user_id = 912")];
    $outside = $outbox->complete($row['id'], 'w4', 912);
    $gone = [$outbox->counts(912)['pending'],
        (int) $wpdb->get_var("SELECT COUNT(*) FROM {{$p}}scim_outbox_users WHERE user_id = 912")];
    return [array_values($first), $statements, $transactions, array_column($again, 'result'), $meta, $left, $users,
        [$a, $b], $taken, array_column($lost, 'result'), $afterLost, $inside, $stillOpen, $joined, $rolledBack,
        $outside, $gone, $wpdb->get_var('SELECT @@in_transaction')];
}})()""")
    (first, statements, transactions, again, meta, left, users, (a, b), taken, lost, after_lost, inside,
     still_open, joined, rolled_back, outside, gone, open_at_end) = out
    assert first == [{"result": "delivered", "message": "updated"},
                     {"result": "retry", "message": "failed, will retry in 16 s: busy"},
                     {"result": "delivered", "message": "delivered"}], first
    # SET TRANSACTION, START; the deleted user's row; the held rows; DELETE; UPDATE; the
    # database's clock (a failure's retry time); the users that exist; usermeta DELETE x2 and
    # INSERT; the deleted user's outbox_users row; COMMIT: 13, whatever the batch's size.
    assert statements == 13, statements
    assert transactions == [1, 1], transactions
    assert again == ["lost", "lost", "lost"], again
    assert meta == [{"remote_id": "remote-a", "version": 'W/"1"', "snapshot": None, "fingerprint": "fp-a"}, "updated",
                    None, "failed, will retry in 16 s: busy"], meta
    assert left == [[b, 1, None, True]], left
    assert users == [a, b], users
    assert taken == 1 and lost == ["lost"], (taken, lost)
    assert after_lost == ["remote-a", "w3"], after_lost
    assert inside is True and still_open == 1, (inside, still_open)
    assert joined == [0, 0, 2], joined
    assert rolled_back == [1, 1], rolled_back
    assert outside is True and gone == [0, 0], (outside, gone)
    assert open_at_end == "0"


# Holds an outbox's first row locked until the claim's UPDATE has waited for it twice (the
# PHP library's test helper, shared).
LOCK_HOLDER = Path(__file__).resolve().parents[2] / "php" / "tests" / "support" / "outbox-lock-holder.php"


def test_a_claim_rolled_back_by_a_lock_wait_timeout_is_made_again(wp_site):
    """The plugin's claim (the library's OutboxClaims over ``$wpdb``) is made again when MariaDB
    rolls its UPDATE back on a lock wait timeout (1205), as the PHP library's and the Rust host's
    are: another connection holds the queued row locked until it has seen the claim wait twice
    (the first wait ended by the timeout, 1 s here, 50 s by default)."""
    site = wp_site("lockwait")
    user_id = 4242
    call(site, f"{PLUGIN}->outbox()->enqueue({user_id}, 'updated', "
               f"['id' => '{user_id}', 'fields' => ['seq' => 1], 'active' => true])")
    db_user, db_password = site.mariadb._databases[site.db_name]
    holder = subprocess.Popen(
        ["php", str(LOCK_HOLDER), f"mysql:host=127.0.0.1;port={site.mariadb.port};dbname={site.db_name}",
         db_user, db_password, "wp_scim_outbox", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        claimed = call(site, f"""(function () {{
    global $wpdb;
    $wpdb->query('SET SESSION innodb_lock_wait_timeout = 1');
    return array_map(static fn (array $r): int => (int) $r['user_id'],
        {PLUGIN}->outbox()->claimDue('lock-wait-test', 10, [{user_id}]));
}})()""")
        out, err = holder.communicate(timeout=60)
    finally:
        stop_process(holder)
    assert out.strip() == "released after 2 claims", err
    assert claimed == [user_id]
