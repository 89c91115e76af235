<?php

declare(strict_types=1);

namespace ScimProvisioner\Tests;

use PHPUnit\Framework\TestCase;
use ScimProvisioner\CmsUser;
use ScimProvisioner\PdoOutbox;
use ScimProvisioner\Tests\Support\DatabaseServer;
use ScimProvisioner\Tests\Support\Peer;
use ScimProvisioner\Tests\Support\Peers;
use ScimSamples\PhpServer;

/**
 * Many PHP worker processes drain one PdoOutbox into a real scim2-server, on MariaDB and on
 * PostgreSQL: 4 workers × 1,000 queued events (250 users × 4 changes, each change carrying
 * its sequence number in the user's first name). One worker is killed with SIGKILL while it
 * holds a claimed batch, partly sent and not yet recorded; after its lease the others deliver
 * its events (those it had sent, again: at most its batch).
 * In a second run the database server itself is stopped mid-run and started again; the
 * workers (the library's OutboxWorker) back off, reconnect and finish.
 *
 * Checked from outside the workers: a recording proxy in front of scim2-server logs every
 * write the server accepted with the sequence number it stored, so per-user order is what
 * the server saw; the users are read back from scim2-server itself (each exactly once, in
 * its final state); the outbox is empty and nothing is parked.
 */
final class OutboxWorkersTest extends TestCase
{
    private const USERS = 250;
    private const CHANGES = 4;
    private const LEASE_SECONDS = 3;
    /** Longer than the outage and the workers' backoff after it: what a worker holds stays its own. */
    private const OUTAGE_LEASE_SECONDS = 15;
    private const OUTAGE_SECONDS = 3;

    /** @return array<string, array{string}> */
    public static function databases(): array
    {
        return ['mariadb' => ['mariadb'], 'postgres' => ['postgres']];
    }

    /** @dataProvider databases */
    public function testFourWorkersDeliverEveryUserOnceInOrderWhenOneIsKilledMidBatch(string $kind): void
    {
        [$server, $db, $pdo, $outbox, $prefix] = $this->queue($kind, self::LEASE_SECONDS);
        [$scim, $proxy, $record] = $this->scimBehindProxy();
        try {
            $started = microtime(true);
            $workers = [];
            $victimSent = Peers::tempDir('victim') . '/sent';
            foreach (['victim' => 150, 'w1' => 0, 'w2' => 0, 'w3' => 0] as $owner => $pauseMs) {
                $workers[$owner] = $this->worker($server, $db, $proxy->baseUrl, $scim->token, $owner, self::LEASE_SECONDS, $pauseMs, $owner === 'victim' ? $victimSent : null);
            }
            // Mid-batch: the victim holds a claimed batch and has sent part of it (it records a batch once it is all sent).
            $held = fn (): int => (int) $pdo->query("SELECT COUNT(*) FROM scim_outbox WHERE claimed_by = 'victim'")->fetchColumn();
            $sent = static fn (): int => is_file($victimSent) ? count(file($victimSent) ?: []) : 0;
            $this->waitFor(fn (): bool => $sent() % 10 >= 3 && $held() > 0, 60.0, 'the victim holding a batch it has partly sent');
            $victimPid = proc_get_status($workers['victim'][0])['pid'];
            posix_kill($victimPid, SIGKILL);
            $this->waitFor(fn (): bool => !proc_get_status($workers['victim'][0])['running'], 10.0, 'the victim to die');
            $heldAtDeath = $held();
            $this->assertGreaterThan(0, $heldAtDeath, 'the killed worker still held events');

            $this->finish(array_diff_key($workers, ['victim' => 1]));
            proc_close($workers['victim'][0]);
            $seconds = microtime(true) - $started;

            $this->assertSame(['pending' => 0, 'parked' => 0, 'claimed' => 0], $outbox->counts(), 'all delivered, none parked');
            $this->assertSame(0, (int) $pdo->query("SELECT COUNT(*) FROM scim_outbox WHERE claimed_by = 'victim'")->fetchColumn());
            $repeats = $this->assertEveryUserOnceInOrder($scim, $record, $prefix);
            // Only the victim's batch may have been sent twice: it had recorded none of it (batch 10).
            $this->assertLessThanOrEqual(10, $repeats);
            fwrite(STDERR, sprintf(
                "\n%s: 4 workers, %d events, one killed holding %d: %.1f s, %d writes repeated\n",
                $kind,
                self::USERS * self::CHANGES,
                $heldAtDeath,
                $seconds,
                $repeats,
            ));
        } finally {
            $this->stopAll($workers ?? [], $proxy, $scim);
        }
    }

    /**
     * The database dies mid-run: 4 workers are draining when the database server is shut
     * down (open sessions ended, as a crash or a restart would), kept down for OUTAGE_SECONDS
     * and started again on the same data. The workers back off, reconnect and finish: every
     * user once, in its final state, each user's changes in order, nothing parked. Each
     * worker records the batch it had in hand after the reconnect, while it still holds it,
     * so few writes are sent twice (checked: at most one per worker).
     *
     * @dataProvider databases
     */
    public function testFourWorkersWaitAndResumeWhenTheDatabaseIsStoppedMidRun(string $kind): void
    {
        [$server, $db, $pdo, $outbox, $prefix] = $this->queue($kind, self::OUTAGE_LEASE_SECONDS);
        [$scim, $proxy, $record] = $this->scimBehindProxy();
        $pdo = null; // this connection dies with the server
        try {
            $started = microtime(true);
            $workers = [];
            foreach (['w0', 'w1', 'w2', 'w3'] as $owner) {
                $workers[$owner] = $this->worker($server, $db, $proxy->baseUrl, $scim->token, $owner, self::OUTAGE_LEASE_SECONDS, 5);
            }
            $writes = fn (): int => count(file($record, FILE_SKIP_EMPTY_LINES) ?: []);
            $total = self::USERS * self::CHANGES;
            $this->waitFor(fn (): bool => $writes() >= $total / 5, 120.0, 'a fifth of the events delivered');
            $server->stop(true);
            $atStop = $writes();
            $this->assertLessThan($total, $atStop, 'the database stopped mid-run');
            // The outage itself: a fault of a set length, not a wait for something to happen.
            usleep(self::OUTAGE_SECONDS * 1_000_000);
            foreach ($workers as $owner => [$proc]) {
                $this->assertTrue(proc_get_status($proc)['running'], "{$owner} waits for the database");
            }
            $server->start();

            $outputs = $this->finish($workers);
            $seconds = microtime(true) - $started;
            $reconnects = array_sum(array_map(
                static fn (string $out): int => preg_match('/reconnects (\d+)/', $out, $m) ? (int) $m[1] : 0,
                $outputs,
            ));
            $this->assertGreaterThanOrEqual(1, $reconnects, 'the workers reconnected');

            $outbox = new PdoOutbox($server->pdo($db));
            $this->assertSame(['pending' => 0, 'parked' => 0, 'claimed' => 0], $outbox->counts(), 'all delivered, none parked');
            $repeats = $this->assertEveryUserOnceInOrder($scim, $record, $prefix);
            $this->assertLessThanOrEqual(4, $repeats, 'at most one write repeated per worker');
            fwrite(STDERR, sprintf(
                "\n%s: 4 workers, %d events, the database down %d s after %d writes: %.1f s, %d reconnects, %d writes repeated\n",
                $kind,
                $total,
                self::OUTAGE_SECONDS,
                $atStop,
                $seconds,
                $reconnects,
                $repeats,
            ));
        } finally {
            $server->start(); // for the tests after this one, whatever happened
            $this->stopAll($workers ?? [], $proxy, $scim);
        }
    }

    /**
     * A fresh database with USERS × CHANGES events queued (a user's changes close together,
     * five users' changes interleaved, as a busy site's would be: a batch of 10 holds two
     * changes of five users, and the next batch, taken by another worker, their next two;
     * only the head rule keeps those waiting). Each change carries its sequence number in
     * the user's first name.
     *
     * @return array{0: DatabaseServer, 1: string, 2: \PDO, 3: PdoOutbox, 4: string} the last: the userName prefix
     */
    private function queue(string $kind, int $leaseSeconds): array
    {
        if (!DatabaseServer::available($kind)) {
            $this->markTestSkipped("{$kind} is not installed (scripts/debian-packages)");
        }
        $server = DatabaseServer::get($kind);
        $db = $server->createDatabase('workers');
        $pdo = $server->pdo($db);
        $outbox = new PdoOutbox($pdo, ['lease_seconds' => $leaseSeconds]);
        $prefix = 'w' . bin2hex(random_bytes(3));
        $pdo->beginTransaction();
        for ($block = 0; $block < self::USERS; $block += 5) {
            for ($seq = 1; $seq <= self::CHANGES; $seq++) {
                for ($u = $block; $u < $block + 5; $u++) {
                    $outbox->enqueue(new CmsUser((string) $u, [
                        'name' => "{$prefix}-{$u}",
                        'mail' => "{$prefix}-{$u}@example.com",
                        'field_first_name' => "seq-{$seq}-seq",
                        'field_last_name' => 'Worker',
                    ]), $seq === 1 ? 'created' : 'updated');
                }
            }
        }
        $pdo->commit();
        return [$server, $db, $pdo, $outbox, $prefix];
    }

    /**
     * scim2-server, and a recording proxy in front of it that logs every write the server
     * accepted with the sequence number it stored.
     *
     * @return array{0: Peer, 1: PhpServer, 2: string} the last: the record file
     */
    private function scimBehindProxy(): array
    {
        $scim = new Peer('scim2-server');
        $record = Peers::tempDir('proxy') . '/writes.jsonl';
        touch($record);
        $upstream = (string) preg_replace('#/v2$#', '', $scim->baseUrl);
        $proxy = new PhpServer(__DIR__ . '/support/recording-proxy.php', [
            // One process (no PHP_CLI_SERVER_WORKERS: its forked workers outlive a stopped parent).
            'UPSTREAM' => $upstream, 'RECORD_FILE' => $record,
        ], Peers::logDir() . '/recording-proxy-' . getmypid() . '.log', '/v2');
        return [$scim, $proxy, $record];
    }

    /**
     * Waits for each worker to finish and checks it succeeded; returns their outputs.
     *
     * @param array<string, array{0: resource, 1: array<int, resource>}> $workers
     * @return array<string, string>
     */
    private function finish(array $workers): array
    {
        $outputs = [];
        foreach ($workers as $owner => [$proc, $pipes]) {
            // The exit code is reported once, by the first status that says it stopped.
            $exit = null;
            $this->waitFor(function () use ($proc, &$exit): bool {
                $status = proc_get_status($proc);
                $exit = $status['running'] ? null : $status['exitcode'];
                return !$status['running'];
            }, 180.0, "{$owner} to finish");
            $out = (string) stream_get_contents($pipes[1]);
            $err = (string) stream_get_contents($pipes[2]);
            proc_close($proc);
            $this->assertSame(0, $exit, "{$owner}: {$out}\n{$err}");
            $this->assertMatchesRegularExpression('/^delivered \d+ reconnects \d+$/m', $out);
            $outputs[$owner] = $out;
        }
        return $outputs;
    }

    /**
     * Checks from outside the workers: scim2-server holds each user exactly once, in its
     * final state, and the recording proxy saw each user's changes in order, every one of
     * them. Returns how many writes were repeated.
     */
    private function assertEveryUserOnceInOrder(Peer $scim, string $record, string $prefix): int
    {
        $remote = [];
        for ($start = 1;; $start += 200) {
            [$status, $page] = $scim->json('GET', "/Users?startIndex={$start}&count=200");
            $this->assertSame(200, $status);
            foreach ($page['Resources'] ?? [] as $r) {
                $remote[] = $r;
            }
            if ($start + 200 > (int) $page['totalResults']) {
                break;
            }
        }
        $names = array_column($remote, 'userName');
        $this->assertCount(self::USERS, $remote, 'no user lost, none created twice');
        $this->assertSame(count($names), count(array_unique($names)));
        $byName = array_column($remote, null, 'userName');
        for ($u = 0; $u < self::USERS; $u++) {
            $r = $byName["{$prefix}-{$u}"] ?? null;
            $this->assertNotNull($r, "user {$u}");
            $this->assertSame('seq-' . self::CHANGES . '-seq', $r['name']['givenName'] ?? null, "user {$u}'s final state");
            $this->assertTrue($r['active'] ?? true, "user {$u} is active");
        }

        // What the server saw, user by user, in the order it took the writes.
        $idToName = array_column($remote, 'userName', 'id');
        $seen = [];
        foreach (file($record, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) as $line) {
            $w = json_decode($line, true);
            $name = $w['userName'] ?? ($idToName[$w['id']] ?? null);
            $this->assertNotNull($name, $line);
            $seen[$name][] = $w['seq'];
        }
        $this->assertCount(self::USERS, $seen);
        $repeats = 0;
        foreach ($seen as $name => $seqs) {
            $sorted = $seqs;
            sort($sorted);
            $this->assertSame($sorted, $seqs, "{$name}: the server took its changes out of order");
            $this->assertSame(range(1, self::CHANGES), array_values(array_unique($seqs)), "{$name}: every change reached the server");
            $repeats += count($seqs) - self::CHANGES;
        }
        return $repeats;
    }

    /** @param array<string, array{0: resource, 1: array<int, resource>}> $workers */
    private function stopAll(array $workers, PhpServer $proxy, Peer $scim): void
    {
        foreach ($workers as [$proc]) {
            if (is_resource($proc) && proc_get_status($proc)['running']) {
                proc_terminate($proc, SIGKILL);
            }
        }
        $proxy->stop();
        $scim->stop();
    }

    /** @return array{0: resource, 1: array<int, resource>} */
    private function worker(
        DatabaseServer $server,
        string $db,
        string $baseUrl,
        string $token,
        string $owner,
        int $leaseSeconds,
        int $pauseMs,
        ?string $sentFile = null,
    ): array {
        $proc = proc_open(
            [PHP_BINARY, __DIR__ . '/support/outbox-worker.php', $server->dsn($db), $server->user(), $server->password,
                $baseUrl, $token, $owner, (string) $leaseSeconds, (string) $pauseMs, ...($sentFile === null ? [] : [$sentFile])],
            [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
            $pipes,
            null,
            PhpServer::baseEnv(),
        );
        if (!is_resource($proc)) {
            throw new \RuntimeException('cannot start a worker');
        }
        return [$proc, $pipes];
    }

    private function waitFor(callable $condition, float $seconds, string $what): void
    {
        $deadline = microtime(true) + $seconds;
        while (!$condition()) {
            if (microtime(true) > $deadline) {
                $this->fail("timed out after {$seconds} s waiting for {$what}");
            }
            usleep(20_000);
        }
    }
}
