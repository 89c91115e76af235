<?php

declare(strict_types=1);

/*
 * Holds an outbox locked against claims (OutboxClaimTimeoutTest), from a process of its
 * own, until a claim statement has waited for it WAITS times: each wait is a claim
 * statement of its own, so the first WAITS - 1 were rolled back by their timeout and made
 * again. Then it lets go.
 *
 *   php outbox-lock-holder.php DSN USER PASSWORD TABLE WAITS
 *
 * PostgreSQL: the table, in ACCESS EXCLUSIVE mode (as a long `ALTER TABLE` or `VACUUM FULL`
 * holds it), and a wait is a claim statement waiting for a lock with a start of its own.
 * MySQL/MariaDB: the queue's first row, `FOR UPDATE` (as a long transaction of the site's
 * would), and a wait is the claim's `UPDATE` running again (its time went back, or it had
 * gone). Writes "locked" once the lock is held, then "released after N claims" (or gives
 * up with exit status 1 after 60 s). The password comes on the command line only because
 * this is a test's throwaway database.
 */

[, $dsn, $user, $password, $table, $waits] = $argv;
if (!preg_match('/^[A-Za-z_][A-Za-z0-9_]*$/', $table)) {
    fwrite(STDERR, "not a table name: {$table}\n");
    exit(2);
}
$pdo = new PDO($dsn, $user, $password, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
$pgsql = $pdo->getAttribute(PDO::ATTR_DRIVER_NAME) === 'pgsql';
$pdo->beginTransaction();
if ($pgsql) {
    $pdo->exec("LOCK TABLE {$table} IN ACCESS EXCLUSIVE MODE");
    // Watched from a connection of its own, outside the lock's transaction: a transaction
    // reads the activity of other sessions once, at its first look.
    $waiting = (new PDO($dsn, $user, $password, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]))->prepare(
        "SELECT pid AS id, CAST(query_start AS TEXT) AS started FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND wait_event_type = 'Lock' AND query LIKE '%WITH picked AS%'",
    );
} else {
    $pdo->query("SELECT id FROM {$table} ORDER BY id LIMIT 1 FOR UPDATE")->fetchAll();
    $waiting = $pdo->prepare(
        "SELECT ID AS id, TIME_MS AS started FROM information_schema.PROCESSLIST
         WHERE ID <> CONNECTION_ID() AND INFO LIKE 'UPDATE {$table} o SET o.claimed_by%'",
    );
}
echo "locked\n";
flush();
$seen = 0;
$last = []; // MySQL: each waiting connection's time at the last look
$deadline = microtime(true) + 60;
while ($seen < (int) $waits) {
    if (microtime(true) > $deadline) {
        fwrite(STDERR, "saw {$seen} claims wait, not {$waits}\n");
        exit(1);
    }
    $waiting->execute();
    $now = [];
    foreach ($waiting->fetchAll(PDO::FETCH_ASSOC) as $row) {
        if ($pgsql) {
            $now["{$row['id']} {$row['started']}"] = true;
            continue;
        }
        $now[$row['id']] = (float) $row['started'];
        if (!isset($last[$row['id']]) || $now[$row['id']] < $last[$row['id']]) {
            $seen++;
        }
    }
    if ($pgsql) {
        $last += $now;
        $seen = count($last);
    } else {
        $last = $now;
    }
    usleep(5000);
}
$pdo->commit();
echo "released after {$seen} claims\n";
