<?php

declare(strict_types=1);

/*
 * claims.php: the PHP outbox's claim overhead (issue 30), on MariaDB and on PostgreSQL, in
 * one run (a benchmark, not a timed test).
 *
 * N events are queued through PdoOutbox::enqueue (users of 4 events each, queued in rounds,
 * so each user's later events wait behind the first), then drained by 1, 2 and 4 worker
 * processes on one database, each with its own PDO connection, as bin/worker processes
 * would be, against a server that answers at once: each worker claims a batch
 * (PdoOutbox::claim) and records it as OutboxWorker does: the batch's links read in one query
 * (PdoOutbox::links), then the whole batch settled in one transaction (PdoOutbox::settle: the
 * links saved, the events removed, fenced by the lease). `--settle event` completes event by
 * event instead (PdoOutbox::complete, one transaction each: what OutboxWorker did before
 * batches were settled at once), for comparison. No component call and no HTTP: only the
 * queue's cost. Reported: events per second, from
 * the moment every worker is connected and ready to the moment the last one finds the
 * outbox empty, and the check that every event was completed exactly once; beside it where
 * the time went: the workers' own CPU seconds (getrusage, from "go"), the database server's
 * (its process tree in /proc, PostgreSQL's ended backends included) and, on MariaDB, the
 * statements sent per batch claimed (its `Questions` counter: claims, links, settles, and
 * the empty claims and counts near the end). On a shared machine the events/s swing with
 * the load; the CPU columns much less.
 *
 *   php hosts/php/bench/claims.php [--events 20000] [--workers 1,2,4] [--batch 100]
 *       [--databases mariadb,postgres] [--settle batch|event]
 *
 * The databases are the run's own throwaway servers (tests/support/DatabaseServer: a temp
 * data directory, a free loopback port, stopped and removed at the end), one fresh
 * database per row of the table. Needs mariadb-server, postgresql and php8.2-mysql/-pgsql.
 */

require dirname(__DIR__) . '/lib/autoload.php';
require dirname(__DIR__) . '/samples/lib/PhpServer.php';
require dirname(__DIR__) . '/tests/support/Peers.php';
require dirname(__DIR__) . '/tests/support/DatabaseServer.php';

use ScimProvisioner\CmsUser;
use ScimProvisioner\Link;
use ScimProvisioner\OutboxEvent;
use ScimProvisioner\PdoOutbox;
use ScimProvisioner\Settlement;
use ScimProvisioner\Tests\Support\DatabaseServer;

if (($argv[1] ?? '') === '--worker') {
    exit(worker($argv[2], $argv[3], (string) getenv('SCIM_BENCH_DB_PASSWORD'), $argv[4], (int) $argv[5], $argv[6] === 'batch'));
}

$options = getopt('', ['events:', 'workers:', 'batch:', 'databases:', 'settle:', 'help']);
if (isset($options['help'])) {
    fwrite(STDOUT, "usage: php claims.php [--events N] [--workers 1,2,4] [--batch N]"
        . " [--databases mariadb,postgres] [--settle batch|event]\n");
    exit(0);
}
$events = (int) ($options['events'] ?? 20000);
$batch = (int) ($options['batch'] ?? 100);
$workerCounts = array_map('intval', explode(',', (string) ($options['workers'] ?? '1,2,4')));
$kinds = explode(',', (string) ($options['databases'] ?? 'mariadb,postgres'));
$settle = (string) ($options['settle'] ?? 'batch');
if (
    $events < 1 || $batch < 1 || min($workerCounts) < 1 || array_diff($kinds, ['mariadb', 'postgres']) !== []
    || !in_array($settle, ['batch', 'event'], true)
) {
    fwrite(STDERR, "claims.php: --events, --batch and --workers must be positive;"
        . " --databases mariadb and/or postgres; --settle batch or event\n");
    exit(2);
}

$load = trim((string) @file_get_contents('/proc/loadavg'));
printf(
    "\n## PHP outbox claim + settle (by %s): %d events, 4 per user, batch %d (load average before: %s)\n\n",
    $settle,
    $events,
    $batch,
    $load,
);
printf("| database | workers | seconds | events/s | workers' CPU s | database CPU s | statements per batch |\n"
    . "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
foreach ($kinds as $kind) {
    if (!DatabaseServer::available($kind)) {
        fwrite(STDERR, "claims.php: {$kind} is not installed (scripts/debian-packages)\n");
        exit(1);
    }
    $server = DatabaseServer::get($kind);
    foreach ($workerCounts as $workers) {
        $db = $server->createDatabase('claims');
        enqueueAll($server->pdo($db), $events);
        $questions = $kind === 'mariadb' ? mariadbQuestions($server) : null;
        $dbCpu = $server->cpuSeconds();
        [$seconds, $settled, $workerCpu, $batches] = drain($server, $db, $workers, $batch, $settle);
        $dbCpu = $server->cpuSeconds() - $dbCpu;
        // Every statement the workers sent (claims, links, settles, the empty claims and
        // counts near the end), over the batches they claimed; MariaDB counts them for us.
        $statements = $questions === null ? 'n/a'
            : sprintf('%.1f', (mariadbQuestions($server) - $questions - 1) / max(1, $batches));
        $left = (int) $server->pdo($db)->query('SELECT COUNT(*) FROM scim_outbox')->fetchColumn();
        if ($settled !== $events || $left !== 0) {
            fwrite(STDERR, "claims.php: {$kind}, {$workers} workers: {$settled} completed, {$left} left\n");
            exit(1);
        }
        printf(
            "| %s | %d | %.2f | %s | %.2f | %.2f | %s |\n",
            $kind,
            $workers,
            $seconds,
            number_format($events / $seconds),
            $workerCpu,
            $dbCpu,
            $statements,
        );
    }
    $server->stop();
}
printf("\nload average after: %s\n", trim((string) @file_get_contents('/proc/loadavg')));
DatabaseServer::stopAll();

/** The server's statement counter (`Questions`: every statement clients sent, this one included). */
function mariadbQuestions(DatabaseServer $server): int
{
    return (int) $server->pdo('mysql')->query("SHOW GLOBAL STATUS LIKE 'Questions'")->fetch(PDO::FETCH_NUM)[1];
}

/** Queues $events events: a first round creating every user, then rounds of updates. */
function enqueueAll(PDO $pdo, int $events): void
{
    $outbox = new PdoOutbox($pdo);
    $users = max(1, intdiv($events + 3, 4));
    $queued = 0;
    for ($round = 1; $queued < $events; $round++) {
        $pdo->beginTransaction();
        for ($u = 0; $u < $users && $queued < $events; $u++, $queued++) {
            $outbox->enqueue(new CmsUser("u{$u}", [
                'name' => "claims-{$u}",
                'mail' => "claims-{$u}@example.com",
                'seq' => $round,
            ]), $round === 1 ? 'created' : 'updated');
        }
        $pdo->commit();
    }
}

/**
 * Starts $workers worker processes, waits until each is connected, lets them go at once
 * and waits for all. Returns the seconds from "go" to the last one done, the events
 * completed, the workers' CPU seconds from "go" on and the batches they claimed (sums).
 *
 * @return array{float, int, float, int}
 */
function drain(DatabaseServer $server, string $db, int $workers, int $batch, string $settle): array
{
    $env = getenv();
    $env['SCIM_BENCH_DB_PASSWORD'] = $server->password; // not on the command line, where ps shows it
    $procs = [];
    for ($i = 0; $i < $workers; $i++) {
        $proc = proc_open(
            [PHP_BINARY, __FILE__, '--worker', $server->dsn($db), $server->user(), "bench-{$i}", (string) $batch, $settle],
            [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => STDERR],
            $pipes,
            null,
            $env,
        );
        if (!is_resource($proc)) {
            throw new RuntimeException('cannot start a worker');
        }
        $procs[] = [$proc, $pipes];
    }
    foreach ($procs as [, $pipes]) {
        if (trim((string) fgets($pipes[1])) !== 'ready') {
            throw new RuntimeException('a worker did not start (see above)');
        }
    }
    $started = hrtime(true);
    foreach ($procs as [, $pipes]) {
        fwrite($pipes[0], "go\n");
        fflush($pipes[0]);
    }
    $settled = 0;
    $cpu = 0.0;
    $batches = 0;
    foreach ($procs as [$proc, $pipes]) {
        $out = trim((string) stream_get_contents($pipes[1]));
        if (proc_close($proc) !== 0 || !preg_match('/^completed (\d+) cpu ([0-9.]+) batches (\d+)$/', $out, $m)) {
            throw new RuntimeException("a worker failed: {$out}");
        }
        $settled += (int) $m[1];
        $cpu += (float) $m[2];
        $batches += (int) $m[3];
    }
    return [(hrtime(true) - $started) / 1e9, $settled, $cpu, $batches];
}

/** One worker: claims and settles until the outbox is empty; prints how many it completed. */
function worker(string $dsn, string $user, string $password, string $owner, int $batch, bool $byBatch): int
{
    $pdo = new PDO($dsn, $user, $password, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
    $outbox = new PdoOutbox($pdo, ['lease_seconds' => 60]);
    echo "ready\n";
    fgets(STDIN);
    $cpu = static function (): float {
        $r = getrusage();
        return $r['ru_utime.tv_sec'] + $r['ru_stime.tv_sec'] + ($r['ru_utime.tv_usec'] + $r['ru_stime.tv_usec']) / 1e6;
    };
    $cpuAtGo = $cpu();
    $completed = 0;
    $batches = 0;
    while (true) {
        $events = $outbox->claim($owner, $batch);
        $batches += $events === [] ? 0 : 1;
        if ($events === []) {
            if ($outbox->counts()['pending'] === 0) {
                break;
            }
            usleep(1000); // every user left has an event in flight on another worker
            continue;
        }
        if ($byBatch) {
            $links = $outbox->links(array_map(static fn (OutboxEvent $e): string => $e->user->id, $events));
            $settlements = array_map(static fn (OutboxEvent $e): Settlement => Settlement::delivered(
                $e,
                new Link($links[$e->user->id]->remoteId ?? "remote-{$e->user->id}", 'W/"' . $e->id . '"', null),
            ), $events);
            $completed += count(array_keys($outbox->settle($owner, $settlements), 'delivered', true));
            continue;
        }
        foreach ($events as $event) {
            $link = new Link("remote-{$event->user->id}", 'W/"' . $event->id . '"', null);
            if ($outbox->complete($event, $owner, $link)) {
                $completed++;
            }
        }
    }
    printf("completed %d cpu %.3f batches %d\n", $completed, $cpu() - $cpuAtGo, $batches);
    return 0;
}
