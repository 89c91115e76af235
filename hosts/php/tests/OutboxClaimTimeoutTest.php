<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\CmsUser;
use ScimProvisioner\Internal\PdoOutboxSql;
use ScimProvisioner\OutboxClaims;
use ScimProvisioner\PdoOutbox;
use ScimProvisioner\Tests\Support\DatabaseServer;

/**
 * A claim the database rolled back on a timeout is made again, as the Rust host's is, and
 * hands out the same events, each once and in order: on PostgreSQL the claim's statement
 * timeout (SQLSTATE 57014), on MariaDB the lock wait timeout (1205). One rolled back every
 * time gives up after a few attempts with an error that says so, having leased nothing.
 * Another process holds the outbox locked against claims (support/outbox-lock-holder.php)
 * and lets go once it has seen the claim wait twice: the first attempt was rolled back
 * after its timeout (200 ms and 1 s here; 30 s and 50 s by default), the second one waits.
 */
final class OutboxClaimTimeoutTest extends TestCase
{
    public function testAClaimCancelledByItsStatementTimeoutOnPostgresIsMadeAgainOrSaysSo(): void
    {
        $server = $this->server('postgres');
        $db = $server->createDatabase('claimtimeout');
        $pdo = $server->pdo($db);
        $outbox = $this->outboxOfThreeUsers($pdo, ['claim_timeout_ms' => 200]);
        // The claim goes out in one message with its plan settings, which it is planned under:
        // on six rows the planner would otherwise scan the table.
        [$sql, $params] = OutboxClaims::postgresClaimStatement('scim_outbox', null, false);
        $plan = implode("\n", array_map(
            static fn (array $row): string => (string) reset($row),
            (new PdoOutboxSql($pdo))->selectUnder(OutboxClaims::postgresQueuePlan(), "EXPLAIN {$sql}", [...$params, 10, 'x', 60]) ?? [],
        ));
        $this->assertStringContainsString('Tid Scan', $plan);
        $this->assertStringNotContainsString('Seq Scan', $plan);
        $this->claimWhileHeldUntilMadeAgain($server, $db, $outbox);

        [$holder] = $this->holdTheOutbox($server, $db, 1000);
        try {
            $outbox->claim('w2', 10, null, true);
            $this->fail('a claim cancelled every time must fail');
        } catch (\PDOException $e) {
            $this->assertStringContainsString('rolled back by the database 5 times in a row', $e->getMessage());
            $this->assertStringContainsString('statement timeout', $e->getMessage());
            $previous = $e->getPrevious();
            $this->assertInstanceOf(\PDOException::class, $previous);
            $this->assertSame('57014', (string) $previous->getCode());
        } finally {
            proc_terminate($holder);
            proc_close($holder);
        }
        // The failed claim leased nothing: w1's three events are the only ones held.
        $this->assertSame(
            [['w1', 3]],
            $pdo->query('SELECT claimed_by, COUNT(*) FROM scim_outbox WHERE claimed_by IS NOT NULL GROUP BY claimed_by')
                ->fetchAll(\PDO::FETCH_NUM),
        );
    }

    public function testAClaimRolledBackByALockWaitTimeoutOnMariaDbIsMadeAgain(): void
    {
        $server = $this->server('mariadb');
        $db = $server->createDatabase('claimtimeout');
        $pdo = $server->pdo($db);
        $outbox = $this->outboxOfThreeUsers($pdo, []);
        // The claim's UPDATE waits for the row the holder locked: 1 s (the least there is).
        $pdo->exec('SET SESSION innodb_lock_wait_timeout = 1');
        $this->claimWhileHeldUntilMadeAgain($server, $db, $outbox);
    }

    private function server(string $kind): DatabaseServer
    {
        if (!DatabaseServer::available($kind)) {
            $this->markTestSkipped("{$kind} is not installed (scripts/debian-packages)");
        }
        return DatabaseServer::get($kind);
    }

    /** @param array{claim_timeout_ms?: int} $options */
    private function outboxOfThreeUsers(\PDO $pdo, array $options): PdoOutbox
    {
        $outbox = new PdoOutbox($pdo, $options);
        foreach ([1, 2] as $seq) {
            foreach (['a', 'b', 'c'] as $user) {
                $outbox->enqueue(new CmsUser($user, ['name' => $user, 'seq' => $seq]), 'updated');
            }
        }
        return $outbox;
    }

    /** w1 claims while the outbox is held until its claim was made twice: each user's oldest event, oldest first, once. */
    private function claimWhileHeldUntilMadeAgain(DatabaseServer $server, string $db, PdoOutbox $outbox): void
    {
        [$holder, $out] = $this->holdTheOutbox($server, $db, 2);
        $claimed = $outbox->claim('w1', 10);
        $this->assertSame('released after 2 claims', trim((string) fgets($out)), 'the first claim was rolled back');
        $this->assertSame(0, proc_close($holder));
        $this->assertSame(['a', 'b', 'c'], array_map(static fn ($e): string => $e->user->id, $claimed));
        $this->assertSame([1, 1, 1], array_map(static fn ($e): int => $e->user->fields['seq'], $claimed));
        $ids = array_map(static fn ($e): int => $e->id, $claimed);
        $this->assertSame([$ids[0], $ids[0] + 1, $ids[0] + 2], $ids);
        $this->assertSame([], $outbox->claim('w2', 10), "the users' heads are w1's");
    }

    /**
     * Starts support/outbox-lock-holder.php on $db and waits until it holds the lock.
     *
     * @return array{0: resource, 1: resource} the process and its stdout
     */
    private function holdTheOutbox(DatabaseServer $server, string $db, int $waits): array
    {
        $holder = proc_open(
            [PHP_BINARY, __DIR__ . '/support/outbox-lock-holder.php', $server->dsn($db), $server->user(),
                $server->password, 'scim_outbox', (string) $waits],
            [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => STDERR],
            $pipes,
        );
        if (!is_resource($holder)) {
            throw new \RuntimeException('cannot start the lock holder');
        }
        $this->assertSame('locked', trim((string) fgets($pipes[1])));
        return [$holder, $pipes[1]];
    }
}
