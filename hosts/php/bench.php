<?php

declare(strict_types=1);

/*
 * bench.php: what the PHP bridge costs, measured in one run (not a timed test).
 *
 * 1. Per call, from PHP through the bridge (FFI, JSON, suspend/resume): `plan` and `mapUser`
 *    (pure guest work, no import), a no-change `provision` (the guest compares with the
 *    snapshot and sends nothing), and `getUser` (one GET through CurlTransport to
 *    scim2-server). Warm-up, then the median of 5 runs, in microseconds per call.
 * 2. Memory: memory_get_usage() and the process RSS (VmRSS in /proc/self/status) before and
 *    after 100,000 `plan` calls; the growth must stay flat.
 * 3. A 2,000-user first sync from PHP (the drupal-site sample's sync: plan per user, one
 *    listing of the remote users, provisionBatch through /Bulk on 4 connectors at once via
 *    curl_multi) into a fresh scim2-server; then a second sync with nothing changed.
 *
 *   php hosts/php/bench.php [--plan-calls N] [--calls N] [--sync-users N] [--concurrency N] [--json FILE]
 *
 * --json FILE also writes the figures as one JSON object, which the Rust host's
 * `bench --hosts` reads to print every host side by side with the Rust host.
 *
 * Uses target/release/libscim_bridge.so when it is the newer build (SCIM_BRIDGE_LIB
 * overrides), and target/peers/venv/bin/scim2-server.
 */

require __DIR__ . '/lib/autoload.php';
require __DIR__ . '/samples/lib/PhpServer.php';
require __DIR__ . '/samples/drupal-site/src/Site.php';
require __DIR__ . '/tests/support/Peers.php';
require __DIR__ . '/tests/support/Peer.php';

use ScimProvisioner\Action;
use ScimProvisioner\CmsUser;
use ScimProvisioner\Connector;
use ScimProvisioner\NullLogger;
use ScimProvisioner\Runtime;
use ScimProvisioner\StreamLogger;
use ScimProvisioner\Tests\Support\Peers;
use ScimSamples\DrupalSite\Site;

$opts = getopt('', ['plan-calls:', 'calls:', 'sync-users:', 'concurrency:', 'json:']);
$jsonOut = isset($opts['json']) ? (string) $opts['json'] : null;
/** @var array<string, mixed> $figures what --json writes */
$figures = ['host' => 'php', 'runtime' => 'PHP ' . PHP_VERSION . ' FFI + native bridge (wasmtime 48)'];
$planCalls = (int) ($opts['plan-calls'] ?? 100_000);
$calls = (int) ($opts['calls'] ?? 2_000);
$syncUsers = (int) ($opts['sync-users'] ?? 2_000);
$concurrency = (int) ($opts['concurrency'] ?? 4);
foreach (['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY'] as $var) {
    putenv($var);
}

/** VmRSS of this process, in KiB. */
function rss_kib(): int
{
    $status = (string) file_get_contents('/proc/self/status');
    return preg_match('/^VmRSS:\s+(\d+)\s+kB/m', $status, $m) ? (int) $m[1] : -1;
}

/** Median microseconds per call of $fn over $n calls, after one warm-up pass. */
function per_call(int $n, callable $fn): float
{
    for ($i = 0; $i < min($n, 200); $i++) {
        $fn($i);
    }
    $runs = [];
    for ($r = 0; $r < 5; $r++) {
        $t = hrtime(true);
        for ($i = 0; $i < $n; $i++) {
            $fn($i);
        }
        $runs[] = (hrtime(true) - $t) / 1000 / $n;
    }
    sort($runs);
    return $runs[2];
}

function user(int $i, string $last = 'Lovelace'): CmsUser
{
    return new CmsUser((string) $i, [
        'name' => "bench{$i}", 'mail' => "bench{$i}@drupal.example",
        'field_first_name' => 'Ada', 'field_last_name' => $last, 'roles' => ['member'],
    ]);
}

$t = hrtime(true);
$runtime = new Runtime();
$info = $runtime->info();
printf("bridge %s (%s), component loaded in %.1f ms (%s)\n", $info['bridge_version'] ?? '?', basename(dirname($runtime->libraryPath)),
    (hrtime(true) - $t) / 1e6, ($info['loaded_from_cache'] ?? false) ? 'precompiled, from the cache' : 'compiled now');
printf("PHP %s, %s\n\n", PHP_VERSION, php_uname('m'));

$peer = Peers::get('scim2-server');
$config = ['base_url' => $peer->baseUrl, 'token' => $peer->token, 'timeout' => 30000];
$c = Connector::open($runtime, $config, null, new NullLogger());
$created = $c->provision(user(1), 'created');
if ($created->action !== Action::Created || $created->link === null) {
    throw new RuntimeException('the bench user was not created');
}
$link = $created->link;
$u = user(1);

echo "== per call, from PHP through the bridge ({$calls} calls, median of 5) ==\n";
$rows = [
    ['plan (pure)', per_call($calls, static fn () => $c->plan($u, 'updated', true))],
    ['mapUser (pure)', per_call($calls, static fn () => $c->mapUser($u))],
    ['provision, no change', per_call($calls, static function () use ($c, $u, $link): void {
        if ($c->provision($u, 'updated', $link)->action !== Action::Unchanged) {
            throw new RuntimeException('expected unchanged');
        }
    })],
    ['getUser (1 GET)', per_call(max(1, intdiv($calls, 4)), static fn () => $c->getUser($link->remoteId))],
];
printf("%-24s %12s %12s\n", 'call', 'us/call', 'calls/s');
$figures['plan_us'] = $rows[0][1];
$figures['map_us'] = $rows[1][1];
$figures['provision_unchanged_us'] = $rows[2][1];
$figures['get_user_us'] = $rows[3][1];
foreach ($rows as [$name, $us]) {
    printf("%-24s %12.1f %12.0f\n", $name, $us, 1e6 / $us);
}

echo "\n== memory over {$planCalls} plan calls ==\n";
for ($i = 0; $i < 2000; $i++) {
    $c->plan($u, 'updated', true);
}
// The bookkeeping exists before the first reading, so only the calls can grow memory.
$marks = [0, 0, 0, 0];
$quarter = max(1, intdiv($planCalls, 4));
[$i, $seconds, $mem1, $rss1] = [0, 0.0, 0, 0];
gc_collect_cycles();
[$mem0, $rss0] = [memory_get_usage(), rss_kib()];
$t = hrtime(true);
for ($i = 1; $i <= $planCalls; $i++) {
    $c->plan($u, 'updated', true);
    if ($i % $quarter === 0 && $i / $quarter <= 4) {
        $marks[$i / $quarter - 1] = rss_kib();
    }
}
$seconds = (hrtime(true) - $t) / 1e9;
gc_collect_cycles();
[$mem1, $rss1] = [memory_get_usage(), rss_kib()];
printf("%-24s %12s %12s %12s\n", '', 'before', 'after', 'growth');
printf("%-24s %12d %12d %+12d\n", 'memory_get_usage (B)', $mem0, $mem1, $mem1 - $mem0);
printf("%-24s %12d %12d %+12d\n", 'RSS (KiB)', $rss0, $rss1, $rss1 - $rss0);
printf("RSS after each quarter: %s KiB; %.1f us per plan call\n", implode(', ', $marks), $seconds * 1e6 / $planCalls);
$figures['memory_calls'] = $planCalls;
$figures['memory_growth_bytes'] = $mem1 - $mem0;
$figures['rss_growth_kib'] = $rss1 - $rss0;

echo "\n== a {$syncUsers}-user first sync from PHP into a fresh scim2-server ==\n";
$peer->stop();
Peers::stopAll();
$fresh = Peers::get('scim2-server');
$dir = Peers::tempDir('bench-sync');
$siteConfig = [
    'connector' => ['base_url' => $fresh->baseUrl, 'token' => $fresh->token, 'timeout' => 60000],
    'database' => "{$dir}/drupal.db", 'max_attempts' => 8, 'batch_size' => 100, 'concurrency' => $concurrency,
    'deprovision_threshold' => '10%',
];
$site = new Site($runtime, $siteConfig, new StreamLogger(STDERR, 'warning'));
$insert = $site->db->prepare('INSERT INTO users (name, mail, fields, active) VALUES (?, ?, ?, 1)');
$site->db->beginTransaction();
for ($i = 1; $i <= $syncUsers; $i++) {
    $insert->execute(["sync{$i}", "sync{$i}@drupal.example", json_encode(['field_first_name' => 'Sync', 'field_last_name' => "User{$i}", 'roles' => ['member']])]);
}
$site->db->commit();
printf("%-28s %9s %10s %10s %9s %8s\n", 'sync', 'seconds', 'users/s', 'created', 'requests', 'bulk');
foreach (['first sync' => true, 'second sync (no change)' => false] as $label => $_) {
    $t = hrtime(true);
    $counts = $site->sync();
    $s = (hrtime(true) - $t) / 1e9;
    if ($label === 'first sync') {
        $figures += ['sync_users' => $syncUsers, 'sync_concurrency' => $concurrency, 'sync_seconds' => $s,
            'sync_created' => $counts['created'], 'sync_requests' => $counts['requests'], 'sync_bulk' => $counts['bulk_requests']];
    }
    printf("%-28s %9.2f %10.0f %10d %9d %8d%s\n", $label, $s, $syncUsers / $s, $counts['created'], $counts['requests'], $counts['bulk_requests'],
        $counts['failed'] > 0 ? "  ({$counts['failed']} FAILED)" : ($label === 'second sync (no change)' ? "  ({$counts['unchanged']} unchanged)" : ''));
}
[$status, $list] = $fresh->json('GET', '/Users?count=1');
printf("scim2-server holds %d users (read back with a plain GET)\n", $list['totalResults'] ?? -1);
Peers::stopAll();
Peers::removeTempDirs();
if ($jsonOut !== null) {
    file_put_contents($jsonOut, json_encode($figures, JSON_PRETTY_PRINT | JSON_THROW_ON_ERROR) . "\n");
}
