<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\CmsUser;
use ScimProvisioner\Link;
use ScimProvisioner\OutboxClaims;
use ScimProvisioner\PdoOutbox;
use ScimProvisioner\ProvisioningException;
use ScimProvisioner\Settlement;
use ScimProvisioner\Tests\Support\DatabaseServer;

/**
 * The trap a churned outbox sets on PostgreSQL: statistics taken while the outbox was empty
 * (`reltuples` 0) with its pages still there, then a burst queued. The claim as it was read
 * the whole `(user_id, id)` index for each candidate (and the whole primary key for each
 * row it leased); it now reads by index whatever the statistics say, and still hands out
 * each user's events in order. (The Rust store's twin:
 * a_claim_after_the_outbox_churned_reads_by_index_on_postgres.)
 */
final class PgOutboxChurnTest extends TestCase
{
    private const EVENTS = 2000;

    /** The claim before it was rewritten, on the same outbox: the trap is real. */
    private const OLD_CLAIM = "WITH picked AS (
            SELECT o.id FROM scim_outbox o
            WHERE o.parked = 0 AND o.claimed_until < CAST(EXTRACT(EPOCH FROM statement_timestamp()) AS BIGINT)
            AND o.next_attempt_at <= CAST(EXTRACT(EPOCH FROM statement_timestamp()) AS BIGINT)
            AND NOT EXISTS (SELECT 1 FROM scim_outbox p WHERE p.user_id = o.user_id AND p.parked = 0 AND p.id < o.id)
            ORDER BY o.id LIMIT ? FOR UPDATE OF o SKIP LOCKED)
         UPDATE scim_outbox SET claimed_by = ?, claimed_until = 1
         FROM picked WHERE scim_outbox.id = picked.id RETURNING scim_outbox.id";

    public function testAClaimAfterTheOutboxChurnedReadsByIndexAndKeepsEachUsersOrder(): void
    {
        if (!DatabaseServer::available('postgres')) {
            $this->markTestSkipped('postgres is not installed (scripts/debian-packages)');
        }
        $server = DatabaseServer::get('postgres');
        $pdo = $server->pdo($server->createDatabase('churn'));
        $outbox = new PdoOutbox($pdo);
        // Autovacuum would truncate the emptied table at a moment of its own; the statistics
        // are taken by hand, as its analyze takes them between bursts.
        $pdo->exec('ALTER TABLE scim_outbox SET (autovacuum_enabled = off)');
        $this->enqueueBurst($outbox, $pdo, 0);
        $pdo->exec('DELETE FROM scim_outbox');
        $pdo->exec('ANALYZE scim_outbox');
        $this->enqueueBurst($outbox, $pdo, 1);
        [$tuples, $pages] = $pdo->query(
            "SELECT CAST(reltuples AS BIGINT), CAST(relpages AS BIGINT) FROM pg_class WHERE relname = 'scim_outbox'",
        )->fetch(\PDO::FETCH_NUM);
        $this->assertTrue((int) $tuples === 0 && (int) $pages > 0, "the trap: {$tuples} rows on {$pages} pages");

        [$sql, $params] = OutboxClaims::postgresClaimStatement('scim_outbox', null, false);
        $new = $this->claimBuffers($pdo, $sql, [...$params, 100, 'explain', 60]);
        $old = $this->claimBuffers($pdo, self::OLD_CLAIM, [100, 'explain']);
        // 100 candidates, each with one probe of the user index: a few hundred buffers. The
        // old plan walked the user index's 2,000 live entries (and 2,000 dead) per candidate.
        fwrite(STDERR, "\nbuffers touched by one claim: {$new['buffers']}, by the old claim {$old['buffers']}\n");
        $this->assertLessThan(3000, $new['buffers'], $new['plan']);
        $this->assertGreaterThan(10 * $new['buffers'], $old['buffers'], $old['plan']);
        $this->assertStringContainsString('Tid Scan', $new['plan'], 'the lease finds the rows it locked by ctid');

        // The library's claim and settle on the same outbox: 100 events, one per user, oldest
        // first; settled (a delivery, a retry), then each user's next event is their head.
        $claimed = $outbox->claim('w1', 100);
        $this->assertCount(100, $claimed);
        $ids = array_map(static fn ($e): int => $e->id, $claimed);
        $sorted = $ids;
        sort($sorted);
        $this->assertSame($sorted, $ids);
        $this->assertSame(array_fill(0, 100, 2), array_map(static fn ($e): int => $e->user->fields['seq'], $claimed));
        $results = $outbox->settle('w1', [
            ...array_map(
                static fn ($e): Settlement => Settlement::delivered($e, new Link("r{$e->user->id}")),
                array_slice($claimed, 0, 99),
            ),
            Settlement::failed($claimed[99], new ProvisioningException('http', 'down', 503, null, null, 'backoff')),
        ]);
        $this->assertSame(99, count(array_filter($results, static fn (string $r): bool => $r === 'delivered')));
        $this->assertSame('retry', $results[$claimed[99]->id]);
        $this->assertSame(1901, (int) $pdo->query('SELECT COUNT(*) FROM scim_outbox')->fetchColumn());
        $this->assertSame(
            [1, 'down'],
            $pdo->query("SELECT attempts, last_error FROM scim_outbox WHERE id = {$claimed[99]->id}")
                ->fetch(\PDO::FETCH_NUM),
        );

        // A claim for some users goes by the user index and sorts (a walk of the primary key
        // in order, which the planner took for one row, read the whole queue for 3 users).
        [$sql, $params] = OutboxClaims::postgresClaimStatement('scim_outbox', ['u1', 'u2', 'u3'], false);
        $some = $this->claimBuffers($pdo, $sql, [...$params, 100, 'explain', 60], true);
        fwrite(STDERR, "buffers touched by one claim for 3 users: {$some['buffers']}\n");
        $this->assertLessThan(200, $some['buffers'], $some['plan']);
        $this->assertStringContainsString('Index Cond: ((user_id)::text = ANY', $some['plan']);

        // A claim for those users (the other plan): the delivered users' next events, and
        // nothing of the user whose event waits for its retry.
        $users = array_map(static fn ($e): string => $e->user->id, $claimed);
        $next = $outbox->claim('w2', 200, $users);
        $this->assertSame(
            array_slice($users, 0, 99),
            array_map(static fn ($e): string => $e->user->id, $next),
        );
        $this->assertSame(array_fill(0, 99, 3), array_map(static fn ($e): int => $e->user->fields['seq'], $next));
    }

    /** Queues EVENTS events of EVENTS / 2 users, two each, in one transaction; seq: 2 × $burst, then 2 × $burst + 1. */
    private function enqueueBurst(PdoOutbox $outbox, \PDO $pdo, int $burst): void
    {
        $pdo->beginTransaction();
        for ($i = 0; $i < self::EVENTS; $i++) {
            $userId = 'u' . ($i % (self::EVENTS / 2));
            $seq = $burst * 2 + intdiv($i, self::EVENTS / 2);
            $outbox->enqueue(new CmsUser($userId, ['name' => $userId, 'seq' => $seq]), 'updated');
        }
        $pdo->commit();
    }

    /**
     * Shared buffers (hits and reads) $sql touches, run with the claim's plan settings (for
     * some users' rows when $someUsers), then rolled back; and its plan.
     *
     * @param list<int|string> $params
     * @return array{buffers: int, plan: string}
     */
    private function claimBuffers(\PDO $pdo, string $sql, array $params, bool $someUsers = false): array
    {
        $pdo->beginTransaction();
        $pdo->query(OutboxClaims::postgresQueuePlan($someUsers));
        $explain = $pdo->prepare("EXPLAIN (ANALYZE, BUFFERS) {$sql}");
        $explain->execute($params);
        $lines = $explain->fetchAll(\PDO::FETCH_COLUMN);
        $pdo->rollBack();
        $plan = implode("\n", $lines);
        // The top node's line, `Buffers: shared hit=H read=R …`, counts its children's too.
        foreach ($lines as $line) {
            if (preg_match('/^\s*Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?/', $line, $m)) {
                return ['buffers' => (int) ($m[1] ?? 0) + (int) ($m[2] ?? 0), 'plan' => $plan];
            }
        }
        $this->fail("no buffers in\n{$plan}");
    }
}
