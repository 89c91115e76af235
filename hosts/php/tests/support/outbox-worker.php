<?php

declare(strict_types=1);

/*
 * One outbox worker process (OutboxWorkersTest): the library's OutboxWorker draining a
 * PdoOutbox with a Connector until the outbox has nothing left to deliver, reconnecting
 * with backoff when the database goes away.
 *
 *   php outbox-worker.php DSN USER PASSWORD BASE_URL TOKEN OWNER LEASE_SECONDS [PAUSE_MS]
 *
 * PAUSE_MS: a pause after each delivered event, so the test can kill this worker while it
 * holds a claimed batch. Writes "delivered N reconnects R" when done. (A real site's worker
 * is a few lines like these in its cron or queue runner; the password comes on the command
 * line only because this is a test's throwaway database.)
 */

require dirname(__DIR__, 2) . '/vendor/autoload.php';

use ScimProvisioner\Connector;
use ScimProvisioner\OutboxEvent;
use ScimProvisioner\OutboxWorker;
use ScimProvisioner\Runtime;
use ScimProvisioner\StreamLogger;

[, $dsn, $user, $password, $baseUrl, $token, $owner, $lease] = $argv;
$pauseMs = (int) ($argv[8] ?? 0);
$connector = Connector::open(new Runtime(), [
    'base_url' => $baseUrl,
    'token' => $token,
    'timeout' => 15000,
    'policy' => ['operations' => ['create' => true, 'update' => true, 'deactivate' => true, 'delete' => true]],
]);
$worker = new OutboxWorker(
    static fn (): PDO => new PDO($dsn, $user, $password, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]),
    $connector,
    ['lease_seconds' => (int) $lease, 'batch' => 10, 'idle_ms' => 50, 'outage_seconds' => 120],
    new StreamLogger(STDERR, 'info'),
    static function (OutboxEvent $event, string $result) use ($pauseMs): void {
        if ($pauseMs > 0) {
            usleep($pauseMs * 1000);
        }
    },
    $owner,
);
$stats = $worker->drain();
echo "delivered {$stats['delivered']} reconnects {$stats['reconnects']}\n";
