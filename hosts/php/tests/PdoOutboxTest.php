<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\CmsUser;
use ScimProvisioner\Link;
use ScimProvisioner\OutboxEvent;
use ScimProvisioner\PdoOutbox;
use ScimProvisioner\ProvisioningException;
use ScimProvisioner\Settlement;
use ScimProvisioner\Tests\Support\DatabaseServer;
use ScimProvisioner\Tests\Support\Peers;

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

    /**
     * A database at schema version 1 (no outbox_users, PostgreSQL's old outbox_due index)
     * with an event queued is brought to version 2 on open: the event is kept and claimable,
     * and enqueue (which now locks the user's row) works on the migrated tables.
     *
     * @dataProvider databases
     */
    public function testAVersion1OutboxIsMigratedWithItsQueuedEvents(string $kind): void
    {
        $this->open($kind, [], $pdo);
        $pdo->exec('DROP TABLE scim_outbox_users');
        if ($kind === 'postgres') {
            $pdo->exec('DROP INDEX scim_outbox_parked');
            $pdo->exec('CREATE INDEX scim_outbox_due ON scim_outbox (parked, next_attempt_at)');
        }
        $pdo->exec("UPDATE scim_schema SET version = 1 WHERE name = 'outbox'");
        $json = json_encode(['id' => 'a', 'fields' => ['seq' => 1], 'active' => true]);
        $pdo->exec("INSERT INTO scim_outbox (user_id, event, user_json, created_at) VALUES ('a', 'created', '{$json}', 1)");

        $outbox = new PdoOutbox($pdo);
        $this->assertSame(2, $outbox->schemaVersion());
        $outbox->enqueue(self::user('a', 2), 'updated');
        [$first] = $outbox->claim('w', 10);
        $this->assertSame(['a:1'], self::held([$first]), 'the version 1 event kept, still first');
        $this->assertTrue($outbox->complete($first, 'w', null));
        $this->assertSame(['a:2'], self::held($outbox->claim('w', 10)));
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
        $this->assertSame(['a:2'], self::held($a2 = $outbox->claim('w3', 10)), 'a:2 is the head once a:1 is done');
        $this->assertFalse($outbox->complete($w1[0], 'w1', null), 'already done');
        $this->assertSame('remote-a', $outbox->link('a')?->remoteId, 'and a late complete forgot no link');
        $this->assertFalse($outbox->complete($a2[0], 'w1', null), 'not the holder');
        $this->assertSame('remote-a', $outbox->link('a')?->remoteId);
        $this->assertSame(['pending' => 5, 'parked' => 0, 'claimed' => 3], $outbox->counts());
        $this->assertSame(1, $outbox->extendLease('w1'), 'w1 still holds b:1');
        $this->assertTrue($outbox->complete($a2[0], 'w3', null), 'a deleted remote user: its link forgotten');
        $this->assertNull($outbox->link('a'));
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
     * A batch settled at once: delivered events removed and their links saved or forgotten,
     * a failure given its retry, a permanent one parked, and an event whose lease ran out and
     * that another worker took left alone ('lost': neither it nor its link is written).
     *
     * @dataProvider databases
     */
    public function testABatchIsSettledAtOnceOnlyWhereTheWorkerStillHoldsIt(string $kind): void
    {
        $outbox = $this->open($kind, ['lease_seconds' => 1]);
        $outbox->enqueue(self::user('lost', 1), 'created');
        [$lost] = $outbox->claim('w1', 1);
        self::waitFor(static fn (): array => $outbox->claim('w2', 1, ['lost']), 10.0);
        foreach (['a', 'b', 'c', 'd', 'e'] as $u) {
            $outbox->enqueue(self::user($u, 1), 'created');
            $outbox->enqueue(self::user($u, 2), 'updated');
        }
        $this->assertTrue($outbox->complete($outbox->claim('w0', 10, ['d'])[0], 'w0', new Link('remote-d')));
        $batch = $outbox->claim('w1', 10, ['a', 'b', 'c', 'd', 'e']);
        $this->assertSame(['a:1', 'b:1', 'c:1', 'd:2', 'e:1'], self::held($batch));
        [$a, $b, $c, $d, $e] = $batch;
        $results = $outbox->settle('w1', [
            Settlement::delivered($a, new Link('remote-a', 'W/"1"', '{"userName":"usera"}')),
            Settlement::failed($b, new ProvisioningException('http', 'busy', 503, null, null, 'after-seconds', 60)),
            Settlement::failed($c, new ProvisioningException('http', 'bad request', 400, 'invalidValue', null, 'permanent')),
            Settlement::delivered($d, null),
            Settlement::parked($e, 'held back by hand'),
            Settlement::delivered($lost, new Link('stale')),
        ]);
        $this->assertSame([$a->id => 'delivered', $b->id => 'retry', $c->id => 'parked', $d->id => 'delivered',
            $e->id => 'parked', $lost->id => 'lost'], $results);
        $this->assertSame('remote-a', $outbox->link('a')?->remoteId);
        $this->assertSame('W/"1"', $outbox->link('a')?->version);
        $this->assertNull($outbox->link('d'), "d's link forgotten");
        $this->assertNull($outbox->link('lost'), 'the lost event wrote no link');
        $this->assertSame(['a', 'c', 'e'], array_map(
            static fn (OutboxEvent $x): string => $x->user->id,
            $outbox->claim('w3', 10, ['a', 'b', 'c', 'd', 'e']),
        ), 'a:2 next; b waits 60 s; c:2 and e:2 go on past their parked events; d is done');
        $this->assertSame([[$c->user->id, 400, 'bad request', 1], [$e->user->id, null, 'held back by hand', 0]], array_map(
            static fn (array $p): array => [$p['user_id'], $p['last_status'], $p['last_error'], $p['attempts']],
            $outbox->parked(),
        ));
        $this->assertSame([], $outbox->settle('w1', []));
        $this->assertSame([$a->id => 'lost'], $outbox->settle('w1', [Settlement::delivered($a, null)]), 'settled once');
        $this->assertSame('remote-a', $outbox->link('a')?->remoteId);
    }

    /**
     * A deleted user's row in outbox_users goes with their last event: kept while anything of
     * theirs is queued or parked, and for users who were not deleted; removed once their
     * `deleted` event is delivered and nothing else of theirs is left.
     *
     * @dataProvider databases
     */
    public function testADeletedUsersOutboxUsersRowIsRemovedWithTheirLastEvent(string $kind): void
    {
        $outbox = $this->open($kind, [], $pdo);
        $rows = static fn (): array => array_map('strval', $pdo->query('SELECT user_id FROM scim_outbox_users ORDER BY user_id')
            ->fetchAll(\PDO::FETCH_COLUMN));
        $outbox->enqueue(self::user('kept', 1), 'created');
        $outbox->enqueue(self::user('gone', 1), 'created');
        $outbox->enqueue(self::user('gone', 2), 'deleted');
        $outbox->enqueue(self::user('parked', 1), 'created');
        $outbox->enqueue(self::user('parked', 2), 'deleted');
        $outbox->enqueue(self::user('again', 1), 'deleted');
        $outbox->enqueue(self::user('again', 2), 'created');
        $this->assertSame(['again', 'gone', 'kept', 'parked'], $rows());

        $first = $outbox->claim('w', 10);
        $this->assertSame(['kept:1', 'gone:1', 'parked:1', 'again:1'], self::held($first));
        $outbox->settle('w', [
            Settlement::delivered($first[0], new Link('r-kept')),
            Settlement::delivered($first[1], new Link('r-gone')),
            Settlement::parked($first[2], 'stuck'),
            Settlement::delivered($first[3], null),
        ]);
        $this->assertSame(['again', 'gone', 'kept', 'parked'], $rows(), 'again has a newer event queued');
        $second = $outbox->claim('w', 10);
        $this->assertSame(['gone:2', 'parked:2', 'again:2'], self::held($second));
        $outbox->settle('w', array_map(static fn (OutboxEvent $x): Settlement => Settlement::delivered($x, null), $second));
        $this->assertSame(['again', 'kept', 'parked'], $rows(), 'gone: deleted with nothing left; parked: its parked event stays');
        $this->assertSame(['pending' => 0, 'parked' => 1, 'claimed' => 0], $outbox->counts());
    }

    /**
     * The clean-up against a concurrent enqueue: a transaction queues a change for a user
     * (and holds the user's row) while a worker settles that user's `deleted` event. The
     * settle waits for it and, seeing the new event, keeps the row; the event is claimable.
     *
     * @dataProvider databases
     */
    public function testTheCleanUpKeepsTheRowOfAUserQueuedAgainMeanwhile(string $kind): void
    {
        if (!DatabaseServer::available($kind)) {
            $this->markTestSkipped("{$kind} is not installed (scripts/debian-packages)");
        }
        $server = DatabaseServer::get($kind);
        $db = $server->createDatabase('cleanup');
        $pdo = $server->pdo($db);
        $outbox = new PdoOutbox($pdo);
        $outbox->enqueue(new CmsUser('u', ['name' => 'useru', 'seq' => 1]), 'deleted');
        [$deleted] = $outbox->claim('w', 10);
        $a = $this->enqueuer($server, $db, 2, 'hold');
        $settler = null;
        try {
            $this->assertMatchesRegularExpression('/^connection \d+$/', self::line($a));
            $this->assertMatchesRegularExpression('/^enqueued \d+$/', self::line($a), 'A queued and holds the user');
            $settler = $this->enqueuer($server, $db, $deleted->id, 'settle-deleted');
            $this->assertSame(1, preg_match('/^connection (\d+)$/', self::line($settler), $m));
            $this->waitForLockWait($kind, $pdo, (int) $m[1]);
            fwrite($a[1][0], "commit\n");
            $this->assertSame('committed', self::line($a));
            $this->assertSame('settled delivered', self::line($settler));
            $this->assertSame(['u'], $pdo->query('SELECT user_id FROM scim_outbox_users')->fetchAll(\PDO::FETCH_COLUMN));
            $this->assertSame(['u:2'], self::held($outbox->claim('w', 10)));
        } finally {
            foreach ([$a, $settler] as $child) {
                if ($child !== null) {
                    proc_terminate($child[0], SIGKILL);
                    proc_close($child[0]);
                }
            }
        }
    }

    private function waitForLockWait(string $kind, \PDO $pdo, int $connection): void
    {
        $waiting = $kind === 'postgres'
            ? "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = {$connection} AND wait_event_type = 'Lock'"
            : "SELECT COUNT(*) FROM information_schema.INNODB_TRX
               WHERE trx_mysql_thread_id = {$connection} AND trx_state = 'LOCK WAIT'";
        self::waitFor(static fn (): bool => (int) $pdo->query($waiting)->fetchColumn() === 1, 30.0);
    }

    /**
     * Two transactions queue an event for one user at once, as two requests saving the user
     * would: A takes its id first and commits last (held open by the test), B queues after A
     * and commits at once. The user's events must become claimable in commit order: while A
     * is open nothing of the user's is claimable (B waits for A's lock on the user, instead
     * of committing a later id that a worker would deliver before A's), then A's, then B's.
     *
     * @dataProvider databases
     */
    public function testOneUsersEventsAreClaimableInCommitOrderWhenTwoTransactionsRace(string $kind): void
    {
        if (!DatabaseServer::available($kind)) {
            $this->markTestSkipped("{$kind} is not installed (scripts/debian-packages)");
        }
        $server = DatabaseServer::get($kind);
        $db = $server->createDatabase('order');
        $pdo = $server->pdo($db);
        $outbox = new PdoOutbox($pdo);
        $a = $this->enqueuer($server, $db, 1, 'hold');
        $b = null;
        try {
            $this->assertMatchesRegularExpression('/^connection \d+$/', self::line($a));
            $this->assertMatchesRegularExpression('/^enqueued \d+$/', self::line($a), 'A queued and holds its transaction open');
            $b = $this->enqueuer($server, $db, 2, 'commit');
            $this->assertSame(1, preg_match('/^connection (\d+)$/', self::line($b), $m));
            $connection = (int) $m[1];
            // B either waits for A (the user's lock) or, without it, commits its later id first.
            $waiting = $kind === 'postgres'
                ? "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = {$connection} AND wait_event_type = 'Lock'"
                : "SELECT COUNT(*) FROM information_schema.INNODB_TRX
                   WHERE trx_mysql_thread_id = {$connection} AND trx_state = 'LOCK WAIT'";
            $bCommitted = false;
            self::waitFor(static function () use ($pdo, $waiting, &$bCommitted): bool {
                $bCommitted = (int) $pdo->query("SELECT COUNT(*) FROM scim_outbox WHERE user_id = 'u'")->fetchColumn() > 0;
                return $bCommitted || (int) $pdo->query($waiting)->fetchColumn() === 1;
            }, 30.0);
            $this->assertFalse($bCommitted, 'B committed a later event while A, queued first, was still open');
            $this->assertSame([], $outbox->claim('w', 10), 'nothing of the user is claimable while A is open');

            fwrite($a[1][0], "commit\n");
            $this->assertSame('committed', self::line($a));
            $this->assertMatchesRegularExpression('/^enqueued \d+$/', self::line($b), 'B goes on once A committed');
            $this->assertSame('committed', self::line($b));

            $delivered = [];
            while (($events = $outbox->claim('w', 10)) !== []) {
                $this->assertCount(1, $events, 'one event of the user at a time');
                $delivered[] = $events[0]->user->fields['seq'];
                $this->assertTrue($outbox->complete($events[0], 'w', null));
            }
            $this->assertSame([1, 2], $delivered, 'A (committed first) before B');
        } finally {
            foreach ([$a, $b] as $child) {
                if ($child !== null) {
                    proc_terminate($child[0], SIGKILL);
                    proc_close($child[0]);
                }
            }
        }
    }

    /**
     * A child that queues event $seq for user "u", or settles event $seq (a `deleted` one
     * claimed by "w") as delivered (tests/support/outbox-enqueue.php).
     *
     * @return array{0: resource, 1: array<int, resource>}
     */
    private function enqueuer(DatabaseServer $server, string $db, int $seq, string $mode): array
    {
        $env = getenv();
        $env['PDO_PASSWORD'] = $server->password;
        $proc = proc_open(
            [PHP_BINARY, __DIR__ . '/support/outbox-enqueue.php', $server->dsn($db), $server->user(), 'u', (string) $seq, $mode],
            [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['file', Peers::logDir() . '/outbox-enqueue.log', 'a']],
            $pipes,
            null,
            $env,
        );
        if (!is_resource($proc)) {
            throw new \RuntimeException('cannot start a child');
        }
        return [$proc, $pipes];
    }

    /**
     * The child's next line of output ('' when it ended without one), waited for up to 60 s.
     *
     * @param array{0: resource, 1: array<int, resource>} $child
     */
    private static function line(array $child): string
    {
        $out = $child[1][1];
        $read = [$out];
        $none = null;
        if (stream_select($read, $none, $none, 60) !== 1) {
            throw new \RuntimeException('the child printed nothing for 60 s');
        }
        return trim((string) fgets($out));
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
