<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

use ScimProvisioner\CmsUser;
use ScimProvisioner\OutboxClaims;
use ScimProvisioner\OutboxEvent;
use ScimProvisioner\Settlement;
use ScimProvisioner\UserEvent;

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
 * deliverer whose lease ran out changes nothing. A user's events are claimable in the order
 * their transactions commit: enqueue locks the user's row in `{prefix}scim_outbox_users`
 * before it takes the event's id (see {@see enqueue()}).
 *
 * @phpstan-type OutboxRow array{id: int, user_id: int, event: string, user_json: string, link_json: ?string,
 *     created_at: int, attempts: int, next_attempt_at: int, last_error: ?string, last_status: ?int, parked: bool}
 */
final class Outbox
{
    /** How long a claim holds: longer than one user's delivery (a few requests, each with its timeout). */
    public const LEASE_SECONDS = 300;

    /** The `(user_id, id)` index of the outbox table (Schema), which MariaDB is told to use for the head test. */
    public const USER_INDEX = 'user_id';

    private readonly string $table;
    private readonly string $users;
    private readonly OutboxClaims $claims;
    private readonly WpdbOutboxSql $sql;

    public function __construct()
    {
        $tables = Schema::tables();
        $this->table = $tables['outbox'];
        $this->users = $tables['outbox_users'];
        $this->sql = new WpdbOutboxSql();
        $this->claims = new OutboxClaims($this->sql, $this->table, self::USER_INDEX, $this->users);
    }

    /** The lease a claim takes, in seconds (filter `scim_provisioner_outbox_lease`, at least 1). */
    public static function leaseSeconds(): int
    {
        return max(1, (int) apply_filters('scim_provisioner_outbox_lease', self::LEASE_SECONDS));
    }

    /**
     * Queues an event; returns the row's id.
     *
     * A user's events become claimable in the order their transactions commit. Before it
     * takes the event's id, enqueue inserts or updates the user's row in
     * `{prefix}scim_outbox_users`, which InnoDB keeps locked until the transaction ends, so a
     * second writer queueing for the same user waits for the first to commit or roll back and
     * then takes a higher id. (Without that lock, a writer that took id 5 and commits after
     * the one that took id 6 has its event delivered second: a deliverer sees only 6, then
     * the user's oldest.) The PHP library's PdoOutbox::enqueue does the same.
     *
     * Outside a transaction, enqueue runs its own, as short as it can be: START TRANSACTION,
     * the user's row, the event, COMMIT. Inside the caller's (the plugin's server role creates
     * and deletes WordPress users in one, and their hooks queue changes; so may another
     * plugin), it joins it: a START TRANSACTION there would commit the caller's work so far,
     * and its COMMIT would make the caller's ROLLBACK undo nothing. The event then commits or
     * rolls back with the caller's change, and the user's lock is held until the caller ends.
     * The open transaction is read from the server, not from the plugin's own bookkeeping,
     * since any code may have started it on `$wpdb`'s connection: MariaDB's
     * `@@in_transaction`, or, on MySQL, which has no such variable, whether the server refuses
     * `SET TRANSACTION` (see {@see callerTransactionOpen()}).
     *
     * @param array{id: string, fields: array<string, mixed>, active: bool} $snapshot the user as the event saw them
     * @param array<string, mixed>|null $link the link, for a deleted user whose meta is gone by delivery
     */
    public function enqueue(int $userId, string $event, array $snapshot, ?array $link = null): int
    {
        return $this->transaction(function (WpdbOutboxSql $sql) use ($userId, $event, $snapshot, $link): int {
            global $wpdb;
            $this->lockUser($sql, $userId);
            $sql->execute(
                "INSERT INTO {$this->table} (user_id, event, user_json, link_json, created_at) VALUES (?, ?, ?, ?, ?)",
                [$userId, $event, (string) wp_json_encode($snapshot),
                    $link === null ? null : (string) wp_json_encode($link), time()],
            );
            $id = (int) $wpdb->insert_id;
            if ($id < 1) {
                throw new \RuntimeException('the outbox could not be written: no row id');
            }
            return $id;
        });
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

    /**
     * Records a delivered batch at once, the way the PHP library's PdoOutbox settles one
     * (the same code: {@see OutboxClaims::settleBatch()}): one transaction with a fixed
     * number of statements whatever the batch's size, only for the rows $owner still holds
     * (a row whose lease ran out and that another deliverer took is 'lost', and nothing of it
     * is written, its link included). Delivered rows are removed, failed ones get their next
     * attempt or are parked (a permanent error, or $maxAttempts), a delivered `deleted` row
     * takes its user's row in `scim_outbox_users` with it when nothing of theirs is left
     * queued or parked (locked first, as enqueue locks it). In the same transaction the links
     * and last results of the users who still exist are written as user meta
     * ({@see Links::saveMany()}: three statements, through `$wpdb->prepare`). A deadlock rolls
     * it back and it runs again. Inside a transaction the caller opened on `$wpdb`'s
     * connection, it runs in that one (under a savepoint, see {@see WpdbOutboxSql::begin()}),
     * not in one of its own.
     *
     * @param list<Settlement> $settlements at most one per row
     * @param array<int, array{fingerprint: ?string, message: string}> $delivered by row id, for a
     *     delivered row: the fingerprint of what was sent and the result shown in the Users list
     * @return array<int, array{result: string, message: string}> by row id: 'delivered', 'retry',
     *     'parked' or 'lost', and the result as the Users list shows it
     */
    public function settle(
        string $owner,
        array $settlements,
        array $delivered = [],
        int $maxAttempts = ClientService::MAX_ATTEMPTS,
    ): array {
        $userOf = [];
        $texts = [];
        $errors = [];
        foreach ($settlements as $s) {
            $id = $s->event->id;
            $userOf[$id] = (int) $s->event->user->id;
            $texts[$id] = $s->isDelivered() ? ($delivered[$id]['message'] ?? 'delivered') : 'failed';
            $errors[$id] = $s->error?->getMessage() ?? (string) $s->parkReason;
        }
        $results = $this->claims->settleBatch(
            $owner,
            $settlements,
            $maxAttempts,
            function (array $links, array $forgotten, array $held) use ($userOf, $delivered, $errors, &$texts): void {
                global $wpdb;
                $entries = [];
                $isForgotten = array_fill_keys($forgotten, true);
                foreach ($held as $id => $r) {
                    $userId = $userOf[$id];
                    if ($r['result'] === 'delivered') {
                        $key = (string) $userId;
                        $entries[$userId] = [
                            'user_id' => $userId,
                            'link' => $links[$key] ?? (isset($isForgotten[$key]) ? null : false),
                            'fingerprint' => $delivered[$id]['fingerprint'] ?? null,
                            'result' => $texts[$id],
                        ];
                        continue;
                    }
                    $texts[$id] = ($r['result'] === 'parked'
                        ? 'failed, parked: '
                        : "failed, will retry in {$r['retry_in']} s: ") . $errors[$id];
                    $entries[$userId] = ['user_id' => $userId, 'link' => false, 'fingerprint' => null,
                        'result' => $texts[$id]];
                }
                if ($entries === []) {
                    return;
                }
                // Only users who still exist: a deleted user's meta went with them.
                $exist = $this->sql->select("SELECT ID FROM {$wpdb->users} WHERE ID IN ("
                    . implode(', ', array_keys($entries)) . ')');
                Links::saveMany(array_values(array_intersect_key(
                    $entries,
                    array_fill_keys(array_map(static fn (array $u): int => (int) $u['ID'], $exist), true),
                )));
            },
        );
        $out = [];
        foreach ($results as $id => $result) {
            $out[$id] = ['result' => $result, 'message' => $texts[$id]];
        }
        return $out;
    }

    /**
     * A delivered row: removed, if this owner still holds it; one row's {@see settle()}. For a
     * deleted user's row, pass $deletedUserId: the user's row in `scim_outbox_users` goes too
     * when nothing of theirs is left queued or parked, in the settle's transaction (or the
     * caller's, when one is open: never a transaction of its own inside it).
     */
    public function complete(int $id, string $owner, ?int $deletedUserId = null): bool
    {
        if ($deletedUserId === null) {
            return $this->claims->complete($id, $owner);
        }
        $event = new OutboxEvent($id, UserEvent::Deleted, new CmsUser((string) $deletedUserId, [], false), 0, 0);
        return $this->settle($owner, [Settlement::delivered($event, null)])[$id]['result'] === 'delivered';
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
        return $this->transaction(function (WpdbOutboxSql $sql) use ($userId, $event, $snapshot, $link): bool {
            // The user's lock first, as enqueue takes it: the same order, so the two never deadlock.
            $this->lockUser($sql, $userId);
            $held = (int) ($sql->select(
                "SELECT COUNT(*) AS held FROM {$this->table} WHERE user_id = ? AND claimed_until >= ? FOR UPDATE",
                [$userId, time()],
            )[0]['held'] ?? 0);
            if ($held > 0) {
                // Nothing written but the user's counter: committing (or leaving it to the
                // caller's transaction) is as good as a rollback, and never ends the caller's.
                return false;
            }
            $sql->execute("DELETE FROM {$this->table} WHERE user_id = ?", [$userId]);
            $this->enqueue($userId, $event, $snapshot, $link);
            return true;
        });
    }

    /**
     * Runs $work in a transaction: its own (committed, or rolled back when $work throws), or
     * the caller's when one is open on `$wpdb`'s connection (see enqueue()).
     *
     * @template T
     * @param callable(WpdbOutboxSql): T $work
     * @return T
     */
    private function transaction(callable $work): mixed
    {
        if (self::callerTransactionOpen($this->sql)) {
            return $work($this->sql);
        }
        $this->sql->begin();
        try {
            $result = $work($this->sql);
            $this->sql->commit();
            return $result;
        } catch (\Throwable $e) {
            $this->sql->rollback();
            throw $e;
        }
    }

    /**
     * Whether a transaction is open on `$wpdb`'s connection, as the server sees it: from
     * START TRANSACTION (or the first statement with autocommit off) until COMMIT or ROLLBACK.
     *
     * MariaDB says so in `@@in_transaction`. MySQL has no such variable, and its other sources
     * need privileges a site's user rarely has (`performance_schema`, or `innodb_trx`, which
     * besides shows a transaction only once it has touched a table). But both servers refuse
     * `SET TRANSACTION ISOLATION LEVEL …` inside a transaction (error 1568) and accept it
     * outside one, where it only sets the level of the next transaction, the one enqueue is
     * about to open (with that very level). So on MySQL that statement is the question; its
     * refusal changes nothing in the caller's transaction, and wpdb is kept from reporting
     * it. The variable is looked for once per process.
     */
    public static function callerTransactionOpen(WpdbOutboxSql $sql): bool
    {
        static $hasVariable = true;
        if ($hasVariable) {
            try {
                return (int) ($sql->select('SELECT @@in_transaction AS open')[0]['open'] ?? 0) === 1;
            } catch (\RuntimeException $e) {
                if (!str_contains($e->getMessage(), 'in_transaction')) {
                    throw $e;
                }
                // Asked once per process: wpdb logs every failed statement.
                $hasVariable = false;
            }
        }
        return $sql->refusesTransactionSettings();
    }

    /** Inserts or updates the user's row in `scim_outbox_users`: locked until the transaction ends. */
    private function lockUser(WpdbOutboxSql $sql, int $userId): void
    {
        $sql->execute(
            "INSERT INTO {$this->users} (user_id, enqueued) VALUES (?, 1) ON DUPLICATE KEY UPDATE enqueued = enqueued + 1",
            [$userId],
        );
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
