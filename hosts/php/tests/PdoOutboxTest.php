<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\CmsUser;
use ScimProvisioner\Link;
use ScimProvisioner\OutboxEvent;
use ScimProvisioner\PdoOutbox;
use ScimProvisioner\ProvisioningException;
use ScimProvisioner\Tests\Support\DatabaseServer;

/**
 * PdoOutbox on a real MariaDB and PostgreSQL: the schema from an empty database, enqueue in
 * the caller's transaction, claims that hold one event per user and only a user's oldest,
 * leases that run out, fenced completion, backoff and parking. (Many worker processes
 * against a SCIM server: OutboxWorkersTest.)
 */
final class PdoOutboxTest extends TestCase
{
    /** @return array<string, array{string}> */
    public static function databases(): array
    {
        return ['mariadb' => ['mariadb'], 'postgres' => ['postgres']];
    }

    /** @param array{lease_seconds?: int, max_attempts?: int} $options */
    private function open(string $kind, array $options = [], ?\PDO &$pdo = null): PdoOutbox
    {
        if (!DatabaseServer::available($kind)) {
            $this->markTestSkipped("{$kind} is not installed (scripts/debian-packages)");
        }
        $server = DatabaseServer::get($kind);
        $pdo = $server->pdo($server->createDatabase('outbox'));
        return new PdoOutbox($pdo, $options);
    }

    private static function user(string $id, int $seq): CmsUser
    {
        return new CmsUser($id, ['name' => "user{$id}", 'mail' => "user{$id}@example.com", 'seq' => $seq, 'roles' => ['a']]);
    }

    /** @param list<OutboxEvent> $events @return list<string> "user:seq" */
    private static function held(array $events): array
    {
        return array_map(static fn (OutboxEvent $e): string => $e->user->id . ':' . $e->user->fields['seq'], $events);
    }

    /** @dataProvider databases */
    public function testSchemaEnqueueInTheCallersTransactionAndRoundTrip(string $kind): void
    {
        $outbox = $this->open($kind, [], $pdo);
        $this->assertSame(PdoOutbox::SCHEMA_VERSION, $outbox->schemaVersion());
        $this->assertSame(PdoOutbox::SCHEMA_VERSION, (new PdoOutbox($pdo))->schemaVersion(), 'reopening migrates nothing');

        $pdo->beginTransaction();
        $outbox->enqueue(self::user('1', 1), 'created');
        $pdo->rollBack();
        $this->assertSame(['pending' => 0, 'parked' => 0, 'claimed' => 0], $outbox->counts(), 'rolled back with the caller');

        $pdo->beginTransaction();
        $id = $outbox->enqueue(new CmsUser('7', ['name' => 'Zoë', 'n' => 2.5, 'ok' => true, 'roles' => ['x', 'y'], 'none' => null], false), 'blocked');
        $pdo->commit();
        [$event] = $outbox->claim('w1', 10);
        $this->assertSame($id, $event->id);
        $this->assertSame('blocked', $event->event->value);
        $this->assertSame(['name' => 'Zoë', 'n' => 2.5, 'ok' => true, 'roles' => ['x', 'y'], 'none' => null], $event->user->fields);
        $this->assertFalse($event->user->active);
        $this->assertSame(0, $event->attempts);
    }

    /** @dataProvider databases */
    public function testOneEventPerUserTheOldestAndNeverAUserHeldElsewhere(string $kind): void
    {
        $outbox = $this->open($kind);
        foreach ([['a', 1], ['b', 1], ['a', 2], ['c', 1], ['a', 3], ['b', 2]] as [$u, $seq]) {
            $outbox->enqueue(self::user($u, $seq), $seq === 1 ? 'created' : 'updated');
        }
        $w1 = $outbox->claim('w1', 2);
        $this->assertSame(['a:1', 'b:1'], self::held($w1), 'oldest first, one per user');
        $this->assertSame(['c:1'], self::held($outbox->claim('w2', 10)), 'a:2 and b:2 wait behind events w1 holds');
        $this->assertSame([], $outbox->claim('w3', 10));

        $this->assertTrue($outbox->complete($w1[0], 'w1', new Link('remote-a', 'W/"1"', '{"userName":"usera"}')));
        $this->assertSame('remote-a', $outbox->link('a')?->remoteId);
        $this->assertSame(['a:2'], self::held($outbox->claim('w3', 10)), 'a:2 is the head once a:1 is done');
        $this->assertFalse($outbox->complete($w1[0], 'w1', null), 'already done');
        $this->assertSame(['pending' => 5, 'parked' => 0, 'claimed' => 3], $outbox->counts());
        $this->assertSame(1, $outbox->extendLease('w1'), 'w1 still holds b:1');
    }

    /** @dataProvider databases */
    public function testALeaseRunsOutAndTheLateWorkerChangesNothing(string $kind): void
    {
        $outbox = $this->open($kind, ['lease_seconds' => 1]);
        $outbox->enqueue(self::user('a', 1), 'created');
        $outbox->enqueue(self::user('a', 2), 'updated');
        [$held] = $outbox->claim('dead', 10);
        $this->assertSame([], $outbox->claim('w2', 10), 'held while the lease runs');
        $taken = self::waitFor(static fn (): array => $outbox->claim('w2', 10), 10.0);
        $this->assertSame(['a:1'], self::held($taken), 'after the lease, the same event, still first');
        $this->assertFalse($outbox->complete($held, 'dead', new Link('stale')), 'the first holder no longer holds it');
        $this->assertNull($outbox->link('a'), 'and wrote nothing');
        $this->assertSame('lost', $outbox->fail($held, 'dead', new ProvisioningException('transport', 'late', null, null, null, 'backoff')));
        $this->assertTrue($outbox->complete($taken[0], 'w2', new Link('r')));
        $this->assertSame(['a:2'], self::held($outbox->claim('w2', 10)));
    }

    /** @dataProvider databases */
    public function testFailuresBackOffAndPermanentOnesAreParkedWithTheirReason(string $kind): void
    {
        $outbox = $this->open($kind, ['max_attempts' => 2]);
        $outbox->enqueue(self::user('a', 1), 'created');
        $outbox->enqueue(self::user('a', 2), 'updated');
        $outbox->enqueue(self::user('b', 1), 'created');
        $outbox->enqueue(self::user('b', 2), 'updated');
        [$a, $b] = $outbox->claim('w', 10);
        $this->assertSame('retry', $outbox->fail($a, 'w', new ProvisioningException('http', 'busy', 503, null, null, 'after-seconds', 60)));
        $this->assertSame('parked', $outbox->fail($b, 'w', new ProvisioningException('http', 'bad request', 400, 'invalidValue', null, 'permanent')));
        $this->assertSame(['b:2'], self::held($outbox->claim('w', 10)), 'a waits 60 s and holds a:2 back; b:1 is parked, b:2 goes on');
        [$again] = $outbox->claim('w', 10, null, true);
        $this->assertSame(['a:1', 1], [self::held([$again])[0], $again->attempts], 'ignoring retry times: the same head, one attempt counted');
        $this->assertSame('parked', $outbox->fail($again, 'w', new ProvisioningException('transport', 'down', null, null, null, 'backoff')), 'max_attempts reached');
        $parked = $outbox->parked();
        $this->assertSame([['a', null, 'down'], ['b', 400, 'bad request']], array_map(
            static fn (array $p): array => [$p['user_id'], $p['last_status'], $p['last_error']],
            $parked,
        ));
        $this->assertSame(['pending' => 2, 'parked' => 2, 'claimed' => 1], $outbox->counts());
        $this->assertTrue($outbox->unpark($parked[0]['id']));
        $this->assertSame(['pending' => 3, 'parked' => 1, 'claimed' => 1], $outbox->counts());
    }

    /**
     * @template T
     * @param callable(): T $probe returns a non-empty value when done
     * @return T
     */
    private static function waitFor(callable $probe, float $seconds): mixed
    {
        $deadline = microtime(true) + $seconds;
        while (($v = $probe()) === [] || $v === null || $v === false) {
            if (microtime(true) > $deadline) {
                throw new \RuntimeException("condition not met within {$seconds} s");
            }
            usleep(100_000);
        }
        return $v;
    }
}
