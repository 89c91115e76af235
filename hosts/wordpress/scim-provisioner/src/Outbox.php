<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

/**
 * The client role's outbox: one row per user event, in WordPress's database
 * (`{prefix}scim_outbox`), delivered in order per user.
 *
 * Several deliverers may run at once (the shutdown delivery of two admin requests, WP-Cron,
 * bin/worker). Each takes a row with a lease: an atomic
 * `UPDATE … SET claimed_by = me, claimed_until = now + lease WHERE id = … AND claimed_until < now`
 * that only one of them can win. Only the oldest unparked row of a user (its head) is ever
 * claimed, so a user's events go out one at a time and in order; the next one becomes the
 * head when the delivered one is deleted. A deliverer that dies leaves its lease to expire,
 * and the row is delivered again (the component matches the remote user, so a repeat does
 * not create a second one).
 *
 * @phpstan-type OutboxRow array{id: int, user_id: int, event: string, user_json: string, link_json: ?string,
 *     created_at: int, attempts: int, next_attempt_at: int, last_error: ?string, last_status: ?int, parked: bool}
 */
final class Outbox
{
    /** How long a claim holds: longer than one user's delivery (a few requests, each with its timeout). */
    public const LEASE_SECONDS = 300;

    private readonly string $table;

    public function __construct()
    {
        $this->table = Schema::tables()['outbox'];
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
        global $wpdb;
        $now = time();
        $where = 'o.parked = 0 AND o.claimed_until < %d';
        $args = [$now];
        if (!$ignoreRetryTimes) {
            $where .= ' AND o.next_attempt_at <= %d';
            $args[] = $now;
        }
        if ($userIds !== null) {
            if ($userIds === []) {
                return [];
            }
            $where .= ' AND o.user_id IN (' . implode(',', array_map('intval', $userIds)) . ')';
        }
        $args[] = $limit;
        $heads = $wpdb->get_results($wpdb->prepare(
            "SELECT o.* FROM {$this->table} o
             WHERE {$where}
               AND o.id = (SELECT MIN(h.id) FROM {$this->table} h WHERE h.user_id = o.user_id AND h.parked = 0)
             ORDER BY o.id LIMIT %d",
            ...$args,
        ), ARRAY_A);
        if (!is_array($heads)) {
            throw new \RuntimeException('the outbox could not be read: ' . $wpdb->last_error);
        }
        $claimed = [];
        foreach ($heads as $row) {
            $won = $wpdb->query($wpdb->prepare(
                "UPDATE {$this->table} SET claimed_by = %s, claimed_until = %d
                 WHERE id = %d AND parked = 0 AND claimed_until < %d",
                $owner,
                $now + self::LEASE_SECONDS,
                (int) $row['id'],
                $now,
            ));
            if ($won === 1) {
                $claimed[] = self::typed($row);
            }
        }
        return $claimed;
    }

    /** A delivered row: removed, if this owner still holds it. */
    public function complete(int $id, string $owner): void
    {
        global $wpdb;
        $wpdb->query($wpdb->prepare("DELETE FROM {$this->table} WHERE id = %d AND claimed_by = %s", $id, $owner));
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
    ): void {
        global $wpdb;
        $wpdb->query($wpdb->prepare(
            "UPDATE {$this->table} SET attempts = %d, next_attempt_at = %d, last_error = %s, last_status = "
            . ($status === null ? 'NULL' : (string) (int) $status) . ", parked = %d,
             claimed_by = NULL, claimed_until = 0 WHERE id = %d AND claimed_by = %s",
            $attempts,
            $nextAttemptAt,
            $error,
            $park ? 1 : 0,
            $id,
            $owner,
        ));
    }

    /** Gives a row back without counting an attempt (the deliverer could not start). */
    public function release(int $id, string $owner): void
    {
        global $wpdb;
        $wpdb->query($wpdb->prepare(
            "UPDATE {$this->table} SET claimed_by = NULL, claimed_until = 0 WHERE id = %d AND claimed_by = %s",
            $id,
            $owner,
        ));
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
