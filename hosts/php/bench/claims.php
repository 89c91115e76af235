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
 * (PdoOutbox::claim) and completes every event in it as a delivery does
 * (PdoOutbox::complete: the link saved, the event removed, fenced by the lease). No
 * component call and no HTTP: only the queue's cost. Reported: events per second, from
 * the moment every worker is connected and ready to the moment the last one finds the
 * outbox empty, and the check that every event was completed exactly once.
 *
 *   php hosts/php/bench/claims.php [--events 20000] [--workers 1,2,4] [--batch 100]
 *       [--databases mariadb,postgres]
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
use ScimProvisioner\PdoOutbox;
use ScimProvisioner\Tests\Support\DatabaseServer;

if (($argv[1] ?? '') === '--worker') {
    exit(worker($argv[2], $argv[3], (string) getenv('SCIM_BENCH_DB_PASSWORD'), $argv[4], (int) $argv[5]));
}

$options = getopt('', ['events:', 'workers:', 'batch:', 'databases:', 'help']);
if (isset($options['help'])) {
    fwrite(STDOUT, "usage: php claims.php [--events N] [--workers 1,2,4] [--batch N]"
        . " [--databases mariadb,postgres]\n");
    exit(0);
}
$events = (int) ($options['events'] ?? 20000);
$batch = (int) ($options['batch'] ?? 100);
$workerCounts = array_map('intval', explode(',', (string) ($options['workers'] ?? '1,2,4')));
$kinds = explode(',', (string) ($options['databases'] ?? 'mariadb,postgres'));
if ($events < 1 || $batch < 1 || min($workerCounts) < 1 || array_diff($kinds, ['mariadb', 'postgres']) !== []) {
    fwrite(STDERR, "claims.php: --events, --batch and --workers must be positive;"
        . " --databases mariadb and/or postgres\n");
    exit(2);
}

$load = trim((string) @file_get_contents('/proc/loadavg'));
printf(
    "\n## PHP outbox claim + complete: %d events, 4 per user, batch %d (load average before: %s)\n\n",
    $events,
    $batch,
    $load,
);
printf("| database | workers | seconds | events/s |\n| --- | ---: | ---: | ---: |\n");
foreach ($kinds as $kind) {
    if (!DatabaseServer::available($kind)) {
        fwrite(STDERR, "claims.php: {$kind} is not installed (scripts/debian-packages)\n");
        exit(1);
    }
    $server = DatabaseServer::get($kind);
    foreach ($workerCounts as $workers) {
        $db = $server->createDatabase('claims');
        enqueueAll($server->pdo($db), $events);
        [$seconds, $settled] = drain($server, $db, $workers, $batch);
        $left = (int) $server->pdo($db)->query('SELECT COUNT(*) FROM scim_outbox')->fetchColumn();
        if ($settled !== $events || $left !== 0) {
            fwrite(STDERR, "claims.php: {$kind}, {$workers} workers: {$settled} completed, {$left} left\n");
            exit(1);
        }
        printf("| %s | %d | %.2f | %s |\n", $kind, $workers, $seconds, number_format($events / $seconds));
    }
    $server->stop();
}
printf("\nload average after: %s\n", trim((string) @file_get_contents('/proc/loadavg')));
DatabaseServer::stopAll();

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
 * and waits for all. Returns the seconds from "go" to the last one done, and the events
 * completed (their sum).
 *
 * @return array{float, int}
 */
function drain(DatabaseServer $server, string $db, int $workers, int $batch): array
{
    $env = getenv();
    $env['SCIM_BENCH_DB_PASSWORD'] = $server->password; // not on the command line, where ps shows it
    $procs = [];
    for ($i = 0; $i < $workers; $i++) {
        $proc = proc_open(
            [PHP_BINARY, __FILE__, '--worker', $server->dsn($db), $server->user(), "bench-{$i}", (string) $batch],
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
    foreach ($procs as [$proc, $pipes]) {
        $out = trim((string) stream_get_contents($pipes[1]));
        if (proc_close($proc) !== 0 || !preg_match('/^completed (\d+)$/', $out, $m)) {
            throw new RuntimeException("a worker failed: {$out}");
        }
        $settled += (int) $m[1];
    }
    return [(hrtime(true) - $started) / 1e9, $settled];
}

/** One worker: claims and completes until the outbox is empty; prints how many it completed. */
function worker(string $dsn, string $user, string $password, string $owner, int $batch): int
{
    $pdo = new PDO($dsn, $user, $password, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
    $outbox = new PdoOutbox($pdo, ['lease_seconds' => 60]);
    echo "ready\n";
    fgets(STDIN);
    $completed = 0;
    while (true) {
        $events = $outbox->claim($owner, $batch);
        if ($events === []) {
            if ($outbox->counts()['pending'] === 0) {
                break;
            }
            usleep(1000); // every user left has an event in flight on another worker
            continue;
        }
        foreach ($events as $event) {
            $link = new Link("remote-{$event->user->id}", 'W/"' . $event->id . '"', null);
            if ($outbox->complete($event, $owner, $link)) {
                $completed++;
            }
        }
    }
    echo "completed {$completed}\n";
    return 0;
}
