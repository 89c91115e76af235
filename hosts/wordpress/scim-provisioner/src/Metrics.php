<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

use ScimProvisioner\PrometheusText;

/**
 * Live counters (issue 31, part 3), the same families as host-example's `--metrics-listen`:
 * kept in the plugin's own table `{prefix}scim_metrics` (one row per metric and label set),
 * so every PHP process, WP-Cron and bin/worker add to the same numbers. Shown on the
 * dashboard ({@see Admin\DashboardWidget}) and served in the Prometheus text format at the
 * token-protected REST route {@see MetricsRoutes}.
 *
 * A process adds to an in-memory buffer; {@see flush()} writes it in one
 * `INSERT … ON DUPLICATE KEY UPDATE value = value + VALUES(value)` (atomic in MariaDB, so
 * concurrent processes never lose an increment), at the end of a request and after each
 * sync round. Gauges that the database already knows (outbox depth, parked events) are
 * read when rendered, not stored.
 *
 * Labels never hold a secret or a user's data: a target is the SCIM origin, a route the
 * path's template (`/Users/{id}`), a status the HTTP status.
 */
final class Metrics
{
    public const TABLE = 'scim_metrics';
    /** This table's own schema version (the plugin's Schema has its own). */
    private const SCHEMA_OPTION = 'scim_provisioner_metrics_schema';
    private const SCHEMA_VERSION = 1;
    /** The metrics token's SHA-256 (hex); the token itself is shown once and kept nowhere. */
    public const TOKEN_OPTION = 'scim_provisioner_metrics_token_sha256';

    /** Latency buckets in seconds, as host-example's (1 ms, doubling, 16 buckets). */
    public const BUCKETS = [
        0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192,
        16.384, 32.768,
    ];

    /** name => [type, help] of every family rendered. */
    public const FAMILIES = [
        'scim_users_provisioned_total' => ['counter', 'Users provisioned by the client role, by action and result'],
        'scim_client_requests_total' => ['counter', 'Requests the client role sent, by target'],
        'scim_client_retries_total' => ['counter', 'Outbox deliveries that failed and were scheduled again, by reason'],
        'scim_outbox_depth' => ['gauge', 'Outbox events waiting for delivery (parked ones not included)'],
        'scim_outbox_parked' => ['gauge', 'Outbox events parked after failing for good'],
        'scim_client_concurrency' => ['gauge', 'Connectors a sync runs at once against a target'],
        'scim_syncs_total' => ['counter', 'Syncs run, by result'],
        'scim_server_requests_total' => ['counter', 'Requests the server role answered, by method, route and status'],
        'scim_server_request_duration_seconds' => ['histogram', 'Time the server role took to answer, by route'],
    ];

    /** @var array<string, float> "metric\0labels" => increment not yet written */
    private static array $pending = [];
    /** @var array<string, float> "metric\0labels" => gauge value not yet written */
    private static array $gauges = [];
    private static bool $flushAtShutdown = false;

    public static function table(): string
    {
        global $wpdb;
        return $wpdb->prefix . self::TABLE;
    }

    /** Creates the table when this version has not yet (called at boot; one option read otherwise). */
    public static function maybeInstall(): void
    {
        if ((int) get_option(self::SCHEMA_OPTION, 0) >= self::SCHEMA_VERSION) {
            return;
        }
        global $wpdb;
        require_once ABSPATH . 'wp-admin/includes/upgrade.php';
        $table = self::table();
        $charset = $wpdb->get_charset_collate();
        dbDelta("CREATE TABLE {$table} (
  metric varchar(64) NOT NULL,
  labels varchar(191) NOT NULL DEFAULT '',
  value double NOT NULL DEFAULT 0,
  PRIMARY KEY  (metric,labels)
) {$charset};");
        update_option(self::SCHEMA_OPTION, self::SCHEMA_VERSION, true);
    }

    public static function drop(): void
    {
        global $wpdb;
        $table = self::table();
        // The table name is the plugin's own, not input.
        $wpdb->query("DROP TABLE IF EXISTS {$table}"); // phpcs:ignore WordPress.DB.PreparedSQL
        delete_option(self::SCHEMA_OPTION);
        delete_option(self::TOKEN_OPTION);
    }

    /** Adds $by to a counter. */
    public static function add(string $metric, array $labels, float $by = 1.0): void
    {
        $key = $metric . "\0" . self::labelText($labels);
        self::$pending[$key] = (self::$pending[$key] ?? 0.0) + $by;
        self::scheduleFlush();
    }

    /** Sets a gauge kept in the table. */
    public static function set(string $metric, array $labels, float $value): void
    {
        self::$gauges[$metric . "\0" . self::labelText($labels)] = $value;
        self::scheduleFlush();
    }

    /** Records one observation of a histogram (its buckets, sum and count). */
    public static function observe(string $metric, array $labels, float $seconds): void
    {
        foreach (self::BUCKETS as $le) {
            if ($seconds <= $le) {
                self::add($metric . '_bucket', $labels + ['le' => PrometheusText::number($le)]);
            }
        }
        self::add($metric . '_bucket', $labels + ['le' => '+Inf']);
        self::add($metric . '_sum', $labels, $seconds);
        self::add($metric . '_count', $labels);
    }

    /** A user's provisioning: the action done (or attempted, for a failure). */
    public static function userProvisioned(string $action, bool $ok): void
    {
        self::add('scim_users_provisioned_total', ['action' => $action, 'result' => $ok ? 'ok' : 'failed']);
    }

    /** The action label of a failed outbox event or sync item, from its event or plan. */
    public static function attemptedAction(string $eventOrPlan): string
    {
        return match ($eventOrPlan) {
            'created', 'create' => 'created',
            'blocked', 'deactivate' => 'deactivated',
            'deleted', 'delete' => 'deleted',
            'skip' => 'skipped',
            default => 'updated',
        };
    }

    /** The reason label of a delivery that will be tried again. */
    public static function retryReason(?int $status, string $retry): string
    {
        return match (true) {
            $status === 429 => 'rate_limited',
            $status === 503 => 'unavailable',
            $status !== null && $status >= 500 => 'server_error',
            $status === null && $retry === 'backoff' => 'transport_or_trap',
            default => 'other',
        };
    }

    /**
     * A request the server role answered; $path relative to the SCIM namespace. $seconds is
     * null for a request WordPress refused before the component saw it (no token): counted,
     * not timed.
     */
    public static function serverRequest(string $method, string $path, int $status, ?float $seconds): void
    {
        $method = strtoupper($method);
        if (!in_array($method, ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'], true)) {
            $method = 'OTHER';
        }
        $route = self::routeOf($path);
        self::add('scim_server_requests_total', ['method' => $method, 'route' => $route, 'status' => (string) $status]);
        if ($seconds !== null) {
            self::observe('scim_server_request_duration_seconds', ['route' => $route], $seconds);
        }
    }

    /** The scheme://host[:port] of a URL, never its path or user info. */
    public static function origin(string $url): string
    {
        $p = parse_url($url);
        if (!is_array($p) || !isset($p['scheme'], $p['host'])) {
            return 'invalid';
        }
        return strtolower($p['scheme']) . '://' . strtolower($p['host']) . (isset($p['port']) ? ':' . $p['port'] : '');
    }

    /** The template of a SCIM path: ids become {id}; a path no SCIM endpoint has is `other`. */
    public static function routeOf(string $path): string
    {
        $segments = array_values(array_filter(explode('/', $path), static fn (string $s): bool => $s !== ''));
        $n = count($segments);
        if ($n === 0) {
            return '/';
        }
        $first = $segments[0];
        $collections = ['Users', 'Groups', 'ResourceTypes', 'Schemas'];
        if ($n === 1 && in_array($first, [...$collections, 'Me', 'Bulk', 'ServiceProviderConfig', '.search'], true)) {
            return '/' . $first;
        }
        if ($n === 2 && in_array($first, $collections, true)) {
            return $segments[1] === '.search' && in_array($first, ['Users', 'Groups'], true)
                ? "/{$first}/.search"
                : "/{$first}/{id}";
        }
        // Schema ids are URNs, which may hold slashes in what a client sends.
        return $first === 'Schemas' ? '/Schemas/{id}' : 'other';
    }

    /** Writes what this process added; a database that is gone keeps nothing (counters are best effort). */
    public static function flush(): void
    {
        if (self::$pending === [] && self::$gauges === []) {
            return;
        }
        global $wpdb;
        $table = self::table();
        $pending = self::$pending;
        $gauges = self::$gauges;
        self::$pending = [];
        self::$gauges = [];
        $suppress = $wpdb->suppress_errors(true);
        try {
            foreach (['value + VALUES(value)' => $pending, 'VALUES(value)' => $gauges] as $update => $rows) {
                if ($rows === []) {
                    continue;
                }
                $values = [];
                foreach ($rows as $key => $value) {
                    [$metric, $labels] = explode("\0", $key, 2);
                    $values[] = $wpdb->prepare('(%s, %s, %f)', $metric, $labels, $value);
                }
                // Each tuple is prepared above; the table name is the plugin's own.
                $wpdb->query(
                    "INSERT INTO {$table} (metric, labels, value) VALUES " . implode(', ', $values) // phpcs:ignore
                    . " ON DUPLICATE KEY UPDATE value = {$update}",
                );
            }
        } catch (\Throwable) {
            // The database went away (DatabaseGuard's wp_die handler throws): the counters
            // are not worth failing the request for.
        } finally {
            $wpdb->suppress_errors($suppress);
        }
    }

    /**
     * Every stored row, with the outbox gauges read now.
     *
     * @return list<array{metric: string, labels: string, value: float}>
     */
    public static function rows(Plugin $plugin): array
    {
        self::flush();
        global $wpdb;
        $table = self::table();
        // The table name is the plugin's own; no input in the query.
        $stored = $wpdb->get_results("SELECT metric, labels, value FROM {$table}", ARRAY_A); // phpcs:ignore
        $rows = [];
        foreach (is_array($stored) ? $stored : [] as $r) {
            $rows[] = ['metric' => (string) $r['metric'], 'labels' => (string) $r['labels'], 'value' => (float) $r['value']];
        }
        $counts = $plugin->outbox()->counts();
        $rows[] = ['metric' => 'scim_outbox_depth', 'labels' => '', 'value' => (float) $counts['pending']];
        $rows[] = ['metric' => 'scim_outbox_parked', 'labels' => '', 'value' => (float) $counts['parked']];
        return $rows;
    }

    /** Every family in the Prometheus text format (version 0.0.4). */
    public static function render(Plugin $plugin): string
    {
        return PrometheusText::render(self::FAMILIES, self::rows($plugin));
    }

    /**
     * The counters for people: users by action and result, requests, retries, outbox.
     *
     * @return array<string, float> a short label => value
     */
    public static function summary(Plugin $plugin): array
    {
        $out = [];
        foreach (self::rows($plugin) as $row) {
            $name = match ($row['metric']) {
                'scim_users_provisioned_total' => 'users ' . self::labelValues($row['labels']),
                'scim_client_requests_total' => 'requests sent',
                'scim_client_retries_total' => 'retries ' . self::labelValues($row['labels']),
                'scim_outbox_depth' => 'outbox: waiting',
                'scim_outbox_parked' => 'outbox: parked',
                'scim_syncs_total' => 'syncs ' . self::labelValues($row['labels']),
                'scim_server_requests_total' => 'SCIM requests answered',
                default => null,
            };
            if ($name !== null) {
                $out[$name] = ($out[$name] ?? 0.0) + $row['value'];
            }
        }
        ksort($out);
        return $out;
    }

    /** Makes a new metrics token (the old one stops at once); returns it to show once. */
    public static function rotateToken(): string
    {
        $token = bin2hex(random_bytes(32));
        update_option(self::TOKEN_OPTION, PrometheusText::tokenHash($token), false);
        return $token;
    }

    public static function hasToken(): bool
    {
        return (string) get_option(self::TOKEN_OPTION, '') !== '';
    }

    /** Compares a presented token with the stored hash in constant time. */
    public static function verifyToken(string $presented): bool
    {
        return PrometheusText::verifyToken((string) get_option(self::TOKEN_OPTION, ''), $presented);
    }

    /** `a="x",b="y"` with the text format's escaping, cut to the table's key width. */
    private static function labelText(array $labels): string
    {
        return substr(PrometheusText::labelText($labels), 0, 191);
    }

    /** "created ok" from `action="created",result="ok"`. */
    private static function labelValues(string $labels): string
    {
        preg_match_all('/="((?:[^"\\\\]|\\\\.)*)"/', $labels, $m);
        return implode(' ', $m[1]);
    }

    private static function scheduleFlush(): void
    {
        if (!self::$flushAtShutdown) {
            self::$flushAtShutdown = true;
            register_shutdown_function([self::class, 'flush']);
        }
    }
}
