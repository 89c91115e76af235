<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

/**
 * The running sync's progress, for the "Sync now" screen to poll while the sync's own
 * request is still working (REST `scim-provisioner/v1/sync-progress`): users in all, done,
 * failed, and when it started. One option, not autoloaded, written once per batch round.
 */
final class SyncProgress
{
    public const OPTION = 'scim_provisioner_sync_progress';

    /** A sync of $total users starts, $done of them (with $failed failures) already done since $started. */
    public static function start(int $total, int $done = 0, int $failed = 0, ?float $started = null): void
    {
        self::write([
            'running' => true,
            'total' => $total,
            'done' => $done,
            'failed' => $failed,
            'started' => $started ?? microtime(true),
        ]);
    }

    public static function advance(int $done, int $failed): void
    {
        $p = self::read();
        self::write(['done' => $done, 'failed' => $failed] + $p);
    }

    public static function finish(): void
    {
        $p = self::read();
        if ($p['running']) {
            self::write(['running' => false] + $p);
        }
    }

    /**
     * With users/s and the users remaining worked out.
     *
     * @return array{running: bool, total: int, done: int, failed: int, remaining: int, per_second: float,
     *     elapsed: float, started: float}
     */
    public static function read(): array
    {
        $p = get_option(self::OPTION, []);
        $p = is_array($p) ? $p : [];
        $total = (int) ($p['total'] ?? 0);
        $done = (int) ($p['done'] ?? 0);
        $started = (float) ($p['started'] ?? 0.0);
        $until = (bool) ($p['running'] ?? false) ? microtime(true) : (float) ($p['updated'] ?? $started);
        $elapsed = $started > 0 ? max(0.0, $until - $started) : 0.0;
        return [
            'running' => (bool) ($p['running'] ?? false),
            'total' => $total,
            'done' => $done,
            'failed' => (int) ($p['failed'] ?? 0),
            'remaining' => max(0, $total - $done),
            'per_second' => $elapsed > 0 ? round($done / $elapsed, 1) : 0.0,
            'elapsed' => round($elapsed, 1),
            'started' => $started,
        ];
    }

    private static function write(array $p): void
    {
        $p['updated'] = microtime(true);
        $keep = array_intersect_key($p, array_flip(['running', 'total', 'done', 'failed', 'started', 'updated']));
        update_option(self::OPTION, $keep, false);
    }
}
