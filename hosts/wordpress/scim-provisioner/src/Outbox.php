<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

use ScimProvisioner\OutboxClaims;

/**
 * The client role's outbox: one row per user event, in WordPress's database
 * (`{prefix}scim_outbox`), delivered in order per user.
 *
 * Several deliverers may run at once (the shutdown delivery of two admin requests, WP-Cron,
 * any number of bin/worker processes on any number of hosts sharing the database). They claim
 * with the PHP library's {@see OutboxClaims}, the same code as its PdoOutbox: a batch taken
 * with `SELECT … FOR UPDATE SKIP LOCKED` and a lease (`claimed_by`, `claimed_until`, on the
 * database's clock), and only the oldest unparked row of a user (its head), never a user whose
 * older row another deliverer holds: a user's events go out one at a time and in order; the
 * next one becomes the head when the delivered one is deleted or parked. A deliverer that dies
 * leaves its lease to run out (`LEASE_SECONDS`, filter `scim_provisioner_outbox_lease`), and
 * another delivers the row again (the component matches the remote user, so a repeat does
 * not create a second one). Completing, failing and releasing are fenced by `claimed_by`: a
 * deliverer whose lease ran out changes nothing.
 *
 * @phpstan-type OutboxRow array{id: int, user_id: int, event: string, user_json: string, link_json: ?string,
 *     created_at: int, attempts: int, next_attempt_at: int, last_error: ?string, last_status: ?int, parked: bool}
 */
final class Outbox
{
    /** How long a claim holds: longer than one user's delivery (a few requests, each with its timeout). */
    public const LEASE_SECONDS = 300;

    private readonly string $table;
    private readonly OutboxClaims $claims;

    public function __construct()
    {
        $this->table = Schema::tables()['outbox'];
        $this->claims = new OutboxClaims(new WpdbOutboxSql(), $this->table);
    }

    /** The lease a claim takes, in seconds (filter `scim_provisioner_outbox_lease`, at least 1). */
    public static function leaseSeconds(): int
    {
        return max(1, (int) apply_filters('scim_provisioner_outbox_lease', self::LEASE_SECONDS));
    }

    /**
     * Queues an event.
     *
     * @param array{id: string, fields: array<string, mixed>, active: bool} $snapshot the user as the event saw them
     * @param array<string, mixed>|null $link the link, for a deleted user whose meta is gone by delivery
     */
    public function enqueue(int $userId, string $event, array $snapshot, ?array $link = null): int
    {
        global $wpdb;
        $ok = $wpdb->insert($this->table, [
            'user_id' => $userId,
            'event' => $event,
            'user_json' => (string) wp_json_encode($snapshot),
            'link_json' => $link === null ? null : (string) wp_json_encode($link),
            'created_at' => time(),
        ], ['%d', '%s', '%s', '%s', '%d']);
        if ($ok === false) {
            throw new \RuntimeException('the outbox could not be written: ' . $wpdb->last_error);
        }
        return (int) $wpdb->insert_id;
    }

    /**
     * Replaces a not-yet-claimed row's event and snapshot (several hooks of one request for
     * the same user become one event). False when the row was claimed meanwhile.
     *
     * @param array{id: string, fields: array<string, mixed>, active: bool} $snapshot
     * @param array<string, mixed>|null $link
     */
    public function rewrite(int $id, string $event, array $snapshot, ?array $link = null): bool
    {
        global $wpdb;
        $updated = $wpdb->query($wpdb->prepare(
            "UPDATE {$this->table} SET event = %s, user_json = %s, link_json = %s
             WHERE id = %d AND claimed_until < %d AND attempts = 0",
            $event,
            (string) wp_json_encode($snapshot),
            $link === null ? '' : (string) wp_json_encode($link),
            $id,
            time(),
        ));
        return $updated === 1;
    }

    /**
     * Claims the due head rows (at most one per user), oldest first.
     *
     * @param list<int>|null $userIds only these users; null for all
     * @return list<array<string, mixed>> the rows this owner now holds
     */
    public function claimDue(string $owner, int $limit, ?array $userIds = null, bool $ignoreRetryTimes = false): array
    {
        $ids = $userIds === null ? null : array_map('intval', $userIds);
        $rows = $this->claims->claim($owner, $limit, self::leaseSeconds(), $ids, $ignoreRetryTimes);
        foreach ($rows as $row) {
            // Another worker may have delivered this user's previous row and saved its link
            // since this process cached the user's meta: read the link afresh.
            wp_cache_delete((int) $row['user_id'], 'user_meta');
            wp_cache_delete((int) $row['user_id'], 'users');
        }
        return array_map(self::typed(...), $rows);
    }

    /**
     * Extends this owner's leases (a batch longer than one lease) and tells whether it still
     * holds row $id: false once its lease ran out, whether or not another deliverer took it
     * since. A deliverer checks before each row (and before saving what it sent), so one
     * slower than its lease leaves the row to the deliverer that holds it now.
     */
    public function stillHolds(int $id, string $owner): bool
    {
        global $wpdb;
        $this->claims->extend($owner, self::leaseSeconds());
        // The database's clock, as the claims measure leases on it.
        $held = $wpdb->get_var($wpdb->prepare(
            "SELECT COUNT(*) FROM {$this->table}
             WHERE id = %d AND claimed_by = %s AND claimed_until >= UNIX_TIMESTAMP()",
            $id,
            $owner,
        ));
        return (int) $held === 1;
    }

    /** A delivered row: removed, if this owner still holds it. */
    public function complete(int $id, string $owner): bool
    {
        return $this->claims->complete($id, $owner);
    }

    /** A failed row: its next attempt time and reason, or parked; the claim is released. */
    public function fail(
        int $id,
        string $owner,
        int $attempts,
        int $nextAttemptAt,
        string $error,
        ?int $status,
        bool $park,
    ): bool {
        return $this->claims->fail($id, $owner, $attempts, $nextAttemptAt, $error, $status, $park);
    }

    /** Gives a row back without counting an attempt (the deliverer could not start). */
    public function release(int $id, string $owner): bool
    {
        return $this->claims->release($id, $owner);
    }

    /**
     * Replaces all of a user's queued rows by one, in one transaction (a retry sends the user
     * as they are now, never an older state over a newer one). Refused (false) while another
     * deliverer holds one of them.
     *
     * @param array{id: string, fields: array<string, mixed>, active: bool} $snapshot
     * @param array<string, mixed>|null $link
     */
    public function replaceForUser(int $userId, string $event, array $snapshot, ?array $link = null): bool
    {
        global $wpdb;
        $wpdb->query('START TRANSACTION');
        try {
            $held = (int) $wpdb->get_var($wpdb->prepare(
                "SELECT COUNT(*) FROM {$this->table} WHERE user_id = %d AND claimed_until >= %d FOR UPDATE",
                $userId,
                time(),
            ));
            if ($held > 0) {
                $wpdb->query('ROLLBACK');
                return false;
            }
            $wpdb->query($wpdb->prepare("DELETE FROM {$this->table} WHERE user_id = %d", $userId));
            $this->enqueue($userId, $event, $snapshot, $link);
            $wpdb->query('COMMIT');
            return true;
        } catch (\Throwable $e) {
            $wpdb->query('ROLLBACK');
            throw $e;
        }
    }

    /** @return array<string, mixed>|null */
    public function get(int $id): ?array
    {
        global $wpdb;
        $row = $wpdb->get_row($wpdb->prepare("SELECT * FROM {$this->table} WHERE id = %d", $id), ARRAY_A);
        return is_array($row) ? self::typed($row) : null;
    }

    /**
     * The newest row of a user, or null.
     *
     * @return array<string, mixed>|null
     */
    public function latestForUser(int $userId): ?array
    {
        global $wpdb;
        $row = $wpdb->get_row(
            $wpdb->prepare("SELECT * FROM {$this->table} WHERE user_id = %d ORDER BY id DESC LIMIT 1", $userId),
            ARRAY_A,
        );
        return is_array($row) ? self::typed($row) : null;
    }

    /**
     * Users with rows still to deliver (not parked): a reconcile leaves them to the outbox,
     * so an older queued change never lands after the newer state a sync would send.
     *
     * @return array<int, true>
     */
    public function waitingUsers(): array
    {
        global $wpdb;
        $ids = $wpdb->get_col("SELECT DISTINCT user_id FROM {$this->table} WHERE parked = 0");
        return array_fill_keys(array_map('intval', (array) $ids), true);
    }

    /** @return array{pending: int, parked: int, claimed: int} */
    public function counts(?int $userId = null): array
    {
        global $wpdb;
        $where = $userId === null ? '' : $wpdb->prepare(' WHERE user_id = %d', $userId);
        $row = $wpdb->get_row($wpdb->prepare(
            "SELECT SUM(parked = 0) AS pending, SUM(parked = 1) AS parked, SUM(claimed_until >= %d) AS claimed
             FROM {$this->table}{$where}",
            time(),
        ), ARRAY_A);
        return [
            'pending' => (int) ($row['pending'] ?? 0),
            'parked' => (int) ($row['parked'] ?? 0),
            'claimed' => (int) ($row['claimed'] ?? 0),
        ];
    }

    /**
     * Rows for display, oldest first.
     *
     * @return list<array<string, mixed>>
     */
    public function page(int $offset, int $limit): array
    {
        global $wpdb;
        $rows = $wpdb->get_results($wpdb->prepare(
            "SELECT id, user_id, event, created_at, attempts, next_attempt_at, last_error, last_status, parked
             FROM {$this->table} ORDER BY id LIMIT %d OFFSET %d",
            $limit,
            $offset,
        ), ARRAY_A);
        return array_map(self::typed(...), is_array($rows) ? $rows : []);
    }

    /**
     * @param array<string, mixed> $row
     * @return array<string, mixed>
     */
    private static function typed(array $row): array
    {
        foreach (['id', 'user_id', 'created_at', 'attempts', 'next_attempt_at', 'claimed_until'] as $k) {
            if (array_key_exists($k, $row)) {
                $row[$k] = (int) $row[$k];
            }
        }
        if (array_key_exists('parked', $row)) {
            $row['parked'] = (bool) (int) $row['parked'];
        }
        if (array_key_exists('last_status', $row)) {
            $row['last_status'] = $row['last_status'] === null ? null : (int) $row['last_status'];
        }
        return $row;
    }
}
