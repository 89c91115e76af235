<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\CmsUser;
use ScimProvisioner\Connector;
use ScimProvisioner\CurlTransport;
use ScimProvisioner\HttpRequest;
use ScimProvisioner\HttpResponse;
use ScimProvisioner\OutboxWorker;
use ScimProvisioner\PdoOutbox;
use ScimProvisioner\Transport;
use ScimProvisioner\Tests\Support\DatabaseServer;
use ScimProvisioner\Tests\Support\Peer;
use ScimProvisioner\Tests\Support\Peers;

/**
 * OutboxWorker when its database connection dies at the worst moment, on MariaDB and on
 * PostgreSQL: right after scim2-server accepted a user's creation, in the middle of a batch
 * the worker has not recorded yet. The connection is ended from the server's side (`KILL` /
 * `pg_terminate_backend`), as a restart or a failover would. The worker sends the rest of
 * the batch (that needs no database), fails to record it, reconnects and records the whole
 * batch (it still holds the lease), then goes on: the creation is sent once, every event is
 * delivered in order, nothing is lost.
 * (Many workers and a database stopped mid-run: OutboxWorkersTest.)
 */
final class OutboxWorkerTest extends TestCase
{
    /** @return array<string, array{string}> */
    public static function databases(): array
    {
        return ['mariadb' => ['mariadb'], 'postgres' => ['postgres']];
    }

    /** @dataProvider databases */
    public function testADeliveredEventIsRecordedOnceAfterTheConnectionDiesBeforeItsRecord(string $kind): void
    {
        if (!DatabaseServer::available($kind)) {
            $this->markTestSkipped("{$kind} is not installed (scripts/debian-packages)");
        }
        $server = DatabaseServer::get($kind);
        $db = $server->createDatabase('worker');
        $admin = $server->pdo($db);
        $outbox = new PdoOutbox($admin);
        $prefix = 'ow' . bin2hex(random_bytes(3));
        $user = static fn (string $id, int $seq): CmsUser => new CmsUser($id, [
            'name' => "{$prefix}-{$id}",
            'mail' => "{$prefix}-{$id}@example.com",
            'field_first_name' => "seq{$seq}",
            'field_last_name' => 'Worker',
        ]);
        $outbox->enqueue($user('a', 1), 'created');
        $outbox->enqueue($user('b', 1), 'created');
        $outbox->enqueue($user('a', 2), 'updated');
        $outbox->enqueue($user('a', 3), 'updated');

        // Each connection the worker opens, by its id on the server.
        $connections = [];
        $connect = static function () use ($server, $db, $kind, &$connections): \PDO {
            $pdo = $server->pdo($db);
            $id = $kind === 'postgres' ? 'SELECT pg_backend_pid()' : 'SELECT CONNECTION_ID()';
            $connections[] = (int) $pdo->query($id)->fetchColumn();
            return $pdo;
        };
        $scim = new Peer('scim2-server');
        try {
            // Once the server has taken the first creation, the worker's connection is ended.
            $transport = new class (new CurlTransport($scim->baseUrl), static function () use ($admin, $kind, &$connections): void {
                $victim = (int) end($connections);
                $admin->query($kind === 'postgres' ? "SELECT pg_terminate_backend({$victim})" : "KILL {$victim}");
            }) implements Transport {
                /** @var list<string> */
                public array $writes = [];
                private bool $killed = false;

                public function __construct(private readonly Transport $inner, private readonly \Closure $kill)
                {
                }

                public function send(HttpRequest $request): HttpResponse
                {
                    $response = $this->inner->send($request);
                    if ($request->method !== 'GET') {
                        $this->writes[] = $request->method;
                        if (!$this->killed) {
                            $this->killed = true;
                            ($this->kill)();
                        }
                    }
                    return $response;
                }
            };
            $connector = Connector::open(Peers::runtime(), [
                'base_url' => $scim->baseUrl,
                'token' => $scim->token,
                'timeout' => 10000,
                'policy' => ['operations' => ['create' => true, 'update' => true, 'deactivate' => true, 'delete' => true]],
            ], $transport);
            $results = [];
            $worker = new OutboxWorker(
                $connect,
                $connector,
                ['batch' => 10, 'idle_ms' => 20, 'outage_seconds' => 30],
                null,
                static function ($event, string $result) use (&$results): void {
                    $results[] = $event->user->id . ':' . $event->user->fields['field_first_name'] . ':' . $result;
                },
            );
            $stats = $worker->drain();

            $this->assertSame(1, $stats['reconnects'], 'one lost connection, one reconnect');
            $this->assertCount(2, $connections);
            $this->assertSame(['delivered' => 4, 'failed' => 0, 'parked' => 0, 'lost' => 0, 'reconnects' => 1], $stats);
            $this->assertSame(
                ['a:seq1:delivered', 'b:seq1:delivered', 'a:seq2:delivered', 'a:seq3:delivered'],
                $results,
                'a:1 and b:1 (one batch) recorded after the reconnect, then a in order',
            );
            $this->assertSame(2, count(array_keys($transport->writes, 'POST', true)), 'each user created once: a:1 not sent again');
            $this->assertSame(['pending' => 0, 'parked' => 0, 'claimed' => 0], $outbox->counts());
            $this->assertNotNull($outbox->link('a'));

            [$status, $page] = $scim->json('GET', '/Users?count=1000');
            $this->assertSame(200, $status);
            $byName = array_filter(
                array_column($page['Resources'] ?? [], null, 'userName'),
                static fn (string $name): bool => str_starts_with($name, $prefix),
                ARRAY_FILTER_USE_KEY,
            );
            $this->assertCount(2, $byName);
            $this->assertSame('seq3', $byName["{$prefix}-a"]['name']['givenName'] ?? null, "a's final state");
            $this->assertSame($outbox->link('a')?->remoteId, $byName["{$prefix}-a"]['id']);
        } finally {
            $scim->stop();
        }
    }
}
