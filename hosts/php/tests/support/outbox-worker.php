<?php

declare(strict_types=1);

/*
 * One outbox worker process (OutboxWorkersTest): claims batches from a PdoOutbox and
 * delivers each event with a Connector, until the outbox has nothing left to deliver.
 *
 *   php outbox-worker.php DSN USER PASSWORD BASE_URL TOKEN OWNER LEASE_SECONDS [PAUSE_MS]
 *
 * PAUSE_MS: a pause after each delivered event, so the test can kill this worker while it
 * holds a claimed batch. Writes "delivered N" when done. (A real site's worker is a few
 * lines like these in its cron or queue runner; the password comes on the command line only
 * because this is a test's throwaway database.)
 */

require dirname(__DIR__, 2) . '/vendor/autoload.php';

use ScimProvisioner\Connector;
use ScimProvisioner\GuestTrapException;
use ScimProvisioner\PdoOutbox;
use ScimProvisioner\ProvisioningException;
use ScimProvisioner\Runtime;
use ScimProvisioner\UserEvent;

[, $dsn, $user, $password, $baseUrl, $token, $owner, $lease] = $argv;
$pauseMs = (int) ($argv[8] ?? 0);
$pdo = new PDO($dsn, $user, $password, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
$outbox = new PdoOutbox($pdo, ['lease_seconds' => (int) $lease]);
$connector = Connector::open(new Runtime(), [
    'base_url' => $baseUrl,
    'token' => $token,
    'timeout' => 15000,
    'policy' => ['operations' => ['create' => true, 'update' => true, 'deactivate' => true, 'delete' => true]],
]);

$delivered = 0;
while (true) {
    $events = $outbox->claim($owner, 10);
    if ($events === []) {
        if ($outbox->counts()['pending'] === 0) {
            break;
        }
        usleep(50_000); // others hold the rest, or a dead worker's lease has yet to run out
        continue;
    }
    foreach ($events as $event) {
        try {
            $outcome = $connector->provision($event->user, $event->event, $outbox->link($event->user->id));
            $link = $event->event === UserEvent::Deleted ? null : $outcome->link;
            if ($outbox->complete($event, $owner, $link)) {
                $delivered++;
            }
        } catch (ProvisioningException | GuestTrapException $e) {
            fwrite(STDERR, "{$owner}: event {$event->id}: {$e->getMessage()}\n");
            $outbox->fail($event, $owner, $e);
        }
        if ($pauseMs > 0) {
            usleep($pauseMs * 1000);
        }
    }
}
echo "delivered {$delivered}\n";
