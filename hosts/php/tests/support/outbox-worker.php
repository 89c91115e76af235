<?php

declare(strict_types=1);

/*
 * One outbox worker process (OutboxWorkersTest): the library's OutboxWorker draining a
 * PdoOutbox with a Connector until the outbox has nothing left to deliver, reconnecting
 * with backoff when the database goes away.
 *
 *   php outbox-worker.php DSN USER PASSWORD BASE_URL TOKEN OWNER LEASE_SECONDS [PAUSE_MS [SENT_FILE]]
 *
 * PAUSE_MS: a pause after each write the SCIM server answered, so the test can kill this
 * worker in the middle of a claimed batch; SENT_FILE gets a line per such write (what this
 * worker has sent, recorded or not). Writes "delivered N reconnects R" when done. (A real site's worker
 * is a few lines like these in its cron or queue runner; the password comes on the command
 * line only because this is a test's throwaway database.)
 */

require dirname(__DIR__, 2) . '/vendor/autoload.php';

use ScimProvisioner\Connector;
use ScimProvisioner\CurlTransport;
use ScimProvisioner\HttpRequest;
use ScimProvisioner\HttpResponse;
use ScimProvisioner\OutboxWorker;
use ScimProvisioner\Runtime;
use ScimProvisioner\StreamLogger;
use ScimProvisioner\Transport;

[, $dsn, $user, $password, $baseUrl, $token, $owner, $lease] = $argv;
$pauseMs = (int) ($argv[8] ?? 0);
$sentFile = $argv[9] ?? null;
$transport = new class (new CurlTransport($baseUrl), $pauseMs, $sentFile) implements Transport {
    public function __construct(private readonly Transport $inner, private readonly int $pauseMs, private readonly ?string $sentFile)
    {
    }

    public function send(HttpRequest $request): HttpResponse
    {
        $response = $this->inner->send($request);
        if ($request->method !== 'GET') {
            if ($this->sentFile !== null) {
                file_put_contents($this->sentFile, "sent\n", FILE_APPEND);
            }
            usleep($this->pauseMs * 1000);
        }
        return $response;
    }
};
$connector = Connector::open(new Runtime(), [
    'base_url' => $baseUrl,
    'token' => $token,
    'timeout' => 15000,
    'policy' => ['operations' => ['create' => true, 'update' => true, 'deactivate' => true, 'delete' => true]],
], $transport);
$worker = new OutboxWorker(
    static fn (): PDO => new PDO($dsn, $user, $password, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]),
    $connector,
    ['lease_seconds' => (int) $lease, 'batch' => 10, 'idle_ms' => 50, 'outage_seconds' => 120],
    new StreamLogger(STDERR, 'info'),
    null,
    $owner,
);
$stats = $worker->drain();
echo "delivered {$stats['delivered']} reconnects {$stats['reconnects']}\n";
