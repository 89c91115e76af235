<?php

declare(strict_types=1);

/*
 * A child process of PdoOutboxTest's commit-order race: queues one event for a user in a
 * transaction of its own, like a CMS request saving that user.
 *
 *   php outbox-enqueue.php DSN USER USER_ID SEQ hold|commit
 *   php outbox-enqueue.php DSN USER USER_ID EVENT_ID settle-deleted
 *
 * Prints "connection N" (its database connection's id, so the test can see it wait for a
 * lock), then "enqueued ID" once enqueue returned. With `hold`, the transaction stays open
 * until a line arrives on stdin (a request still busy after queueing its event). Prints
 * "committed" at the end. With `settle-deleted`, it settles event EVENT_ID (the user's
 * `deleted` event, claimed by "w") as delivered instead, and prints "settled RESULT". The password comes in PDO_PASSWORD (a test's throwaway database).
 */

require dirname(__DIR__, 2) . '/vendor/autoload.php';

use ScimProvisioner\CmsUser;
use ScimProvisioner\OutboxEvent;
use ScimProvisioner\PdoOutbox;
use ScimProvisioner\Settlement;
use ScimProvisioner\UserEvent;

[, $dsn, $user, $userId, $seq, $mode] = $argv;
$pdo = new PDO($dsn, $user, (string) getenv('PDO_PASSWORD'), [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
$outbox = new PdoOutbox($pdo);
$connection = str_starts_with($dsn, 'pgsql:') ? 'SELECT pg_backend_pid()' : 'SELECT CONNECTION_ID()';
echo 'connection ', (int) $pdo->query($connection)->fetchColumn(), "\n";
if ($mode === 'settle-deleted') {
    $event = new OutboxEvent((int) $seq, UserEvent::Deleted, new CmsUser($userId, []), 0, 0);
    $results = $outbox->settle('w', [Settlement::delivered($event, null)]);
    echo "settled {$results[(int) $seq]}\n";
    exit(0);
}
$pdo->beginTransaction();
$id = $outbox->enqueue(new CmsUser($userId, ['name' => "user{$userId}", 'seq' => (int) $seq]), 'updated');
echo "enqueued {$id}\n";
if ($mode === 'hold') {
    fgets(STDIN);
}
$pdo->commit();
echo "committed\n";
