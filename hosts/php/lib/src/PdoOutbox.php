<?php

declare(strict_types=1);

namespace ScimProvisioner;

use ScimProvisioner\Internal\PdoOutboxSql;
use ScimProvisioner\Internal\PdoSchema;

/**
 * The client role's transactional outbox in the site's MySQL/MariaDB (≥ 10.6) or
 * PostgreSQL (≥ 15) database, drained by any number of worker processes on any number of
 * hosts, each user's events exactly once and in order.
 *
 * - **Enqueue in the caller's transaction:** {@see enqueue()} is one INSERT on the caller's
 *   PDO connection, so the CMS's own change and its event commit or roll back together.
 * - **Claim:** {@see claim()} takes a batch with `SELECT … FOR UPDATE SKIP LOCKED` and a lease
 *   (`claimed_by`, `claimed_until`), at most one event per user: the user's oldest one, and
 *   never a user whose older event another worker holds (see {@see OutboxClaims}).
 * - **Settle:** {@see settle()} records a whole batch's outcomes in one transaction with a
 *   fixed number of statements (the links saved, the delivered events removed, the failed
 *   ones given their retry or parked), only for the events the worker still holds.
 *   {@see complete()}, {@see fail()} and {@see park()} settle one event.
 * - **Fail:** {@see fail()} counts the attempt and sets the next one (the server's
 *   `Retry-After`, else exponential backoff: 16 s, 32 s, … up to an hour) or parks the
 *   event (permanent errors, or after `max_attempts`) with its reason. A parked event is out
 *   of the queue; the user's next one goes on. {@see park()} parks one by hand.
 * - A worker that dies keeps its events until its lease runs out (`lease_seconds`, default
 *   300: longer than one batch's delivery); then another worker takes them.
 *
 * Tables (`prefix` default `scim_`; created and migrated on open, version in `{prefix}schema`):
 * `{prefix}outbox` (id, user_id, event, user_json, created_at, attempts, next_attempt_at,
 * last_error, last_status, parked, claimed_by, claimed_until), `{prefix}outbox_users` (user_id,
 * enqueued: the row {@see enqueue()} locks, so a user's events are delivered in commit order;
 * removed with a deleted user's last event, see {@see settle()})
 * and `{prefix}links` (user_id, remote_id, version, snapshot, updated_at). Times are Unix
 * seconds on the database's clock.
 */
final class PdoOutbox
{
    public const SCHEMA_VERSION = 2;

    private readonly string $prefix;
    private readonly OutboxClaims $claims;
    private readonly int $leaseSeconds;
    private readonly int $maxAttempts;

    /**
     * @param array{prefix?: string, lease_seconds?: int, max_attempts?: int, claim_timeout_ms?: int} $options
     *     `claim_timeout_ms`: PostgreSQL, how long one claim statement may run before the
     *     server cancels it and it is made again (default 30,000; see OutboxClaims)
     */
    public function __construct(private readonly \PDO $pdo, array $options = [])
    {
        $driver = PdoSchema::driver($pdo);
        $this->prefix = PdoSchema::prefix($options['prefix'] ?? 'scim_');
        $this->leaseSeconds = (int) ($options['lease_seconds'] ?? 300);
        $this->maxAttempts = (int) ($options['max_attempts'] ?? 10);
        if ($this->leaseSeconds < 1 || $this->maxAttempts < 1) {
            throw new InvalidArgumentException('lease_seconds and max_attempts must be at least 1');
        }
        $pdo->setAttribute(\PDO::ATTR_ERRMODE, \PDO::ERRMODE_EXCEPTION);
        PdoSchema::migrate($pdo, $this->prefix, 'outbox', self::steps($driver, $this->prefix));
        $outbox = $this->prefix . 'outbox';
        $this->claims = new OutboxClaims(
            new PdoOutboxSql($pdo),
            $outbox,
            "{$outbox}_user",
            "{$outbox}_users",
            (int) ($options['claim_timeout_ms'] ?? OutboxClaims::PG_CLAIM_TIMEOUT_MS),
        );
    }

    /** The version of the outbox's tables recorded in the database. */
    public function schemaVersion(): int
    {
        return PdoSchema::version($this->pdo, $this->prefix, 'outbox');
    }

    /** A claim owner for this process: host, pid and a random part (one per worker). */
    public static function newOwner(): string
    {
        return substr((gethostname() ?: 'host') . ':' . getmypid() . ':' . bin2hex(random_bytes(6)), -64);
    }

    /**
     * Queues an event for $user, on the caller's connection: inside the caller's transaction
     * when one is open, so the change and its event commit together. Returns the row id.
     *
     * A user's events are delivered in the order their transactions commit. Before it takes
     * the event's id, enqueue locks the user's row in `{prefix}outbox_users` until the
     * transaction ends, so a second transaction queueing for the same user waits for the
     * first to commit or roll back and then takes a higher id. (Without that lock, a
     * transaction that took id 5 and commits after the one that took id 6 would have its
     * event delivered second: a worker sees only 6, and 6 is then the user's oldest.) Keep
     * the transaction short after enqueue: other writers of this user's events wait for it.
     * Transactions that queue for several users lock them in the order they enqueue;
     * two that do so in opposite orders can deadlock, and the database rolls one back
     * (SQLSTATE 40001/40P01) for the caller to retry, as with any row lock.
     */
    public function enqueue(CmsUser $user, UserEvent|string $event): int
    {
        $event = $event instanceof UserEvent ? $event : UserEvent::from($event);
        if ($user->id === '' || strlen($user->id) > 191) {
            throw new InvalidArgumentException('a queued user needs an id of 1 to 191 bytes');
        }
        $json = json_encode(
            ['id' => $user->id, 'fields' => (object) $user->fields, 'active' => $user->active],
            JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR,
        );
        $t = $this->prefix . 'outbox';
        $u = $this->prefix . 'outbox_users';
        $pgsql = PdoSchema::driver($this->pdo) === 'pgsql';
        // The user's row, inserted or updated: either way locked until the transaction ends.
        $lockUser = $pgsql
            ? "INSERT INTO {$u} (user_id, enqueued) VALUES (?, 1)
               ON CONFLICT (user_id) DO UPDATE SET enqueued = {$u}.enqueued + 1"
            : "INSERT INTO {$u} (user_id, enqueued) VALUES (?, 1) ON DUPLICATE KEY UPDATE enqueued = enqueued + 1";
        $insert = "INSERT INTO {$t} (user_id, event, user_json, created_at, next_attempt_at, claimed_until)
            VALUES (?, ?, ?, ?, 0, 0)";
        return $this->transaction(function () use ($lockUser, $insert, $pgsql, $user, $event, $json): int {
            $this->prepare($lockUser)->execute([$user->id]);
            $now = $this->claims->now();
            if ($pgsql) {
                $stmt = $this->prepare("{$insert} RETURNING id");
                $stmt->execute([$user->id, $event->value, $json, $now]);
                return (int) $stmt->fetchColumn();
            }
            $this->prepare($insert)->execute([$user->id, $event->value, $json, $now]);
            return (int) $this->pdo->lastInsertId();
        });
    }

    /**
     * Claims up to $limit due events for $owner, at most one per user, oldest first.
     *
     * @param list<string>|null $userIds only these users; null for all
     * @return list<OutboxEvent>
     */
    public function claim(string $owner, int $limit, ?array $userIds = null, bool $ignoreRetryTimes = false): array
    {
        $rows = $this->claims->claim($owner, $limit, $this->leaseSeconds, $userIds, $ignoreRetryTimes);
        $events = [];
        foreach ($rows as $row) {
            $event = $this->decode($row);
            if ($event === null) {
                $why = 'the queued event cannot be read';
                $this->claims->fail((int) $row['id'], $owner, (int) $row['attempts'] + 1, 0, $why, null, true);
                continue;
            }
            $events[] = $event;
        }
        return $events;
    }

    /** The link kept for a user, or null. */
    public function link(string $userId): ?Link
    {
        $stmt = $this->prepare("SELECT remote_id, version, snapshot FROM {$this->prefix}links WHERE user_id = ?");
        $stmt->execute([$userId]);
        $row = $stmt->fetch(\PDO::FETCH_ASSOC);
        return $row === false ? null : new Link((string) $row['remote_id'], $row['version'], $row['snapshot']);
    }

    /**
     * A delivered event: stores $link for its user (or forgets the user's link when null:
     * a deleted remote user) and removes the event, in one transaction, only while $owner
     * still holds it. False (and nothing written) when the lease had run out and another
     * worker took the event. One event of {@see settle()}; a worker settles its whole batch.
     */
    public function complete(OutboxEvent $event, string $owner, ?Link $link): bool
    {
        if ($event->event !== UserEvent::Deleted && PdoSchema::driver($this->pdo) === 'pgsql') {
            return $this->completeInOneStatement($event, $owner, $link);
        }
        return $this->settle($owner, [Settlement::delivered($event, $link)])[$event->id] === 'delivered';
    }

    /**
     * A failed delivery: the next attempt after the server's Retry-After or a backoff, or
     * parked when the error is permanent or attempts ran out. Returns 'retry' or 'parked'
     * ('lost' when the lease had run out and another worker took the event).
     */
    public function fail(OutboxEvent $event, string $owner, ProvisioningException|GuestTrapException $error): string
    {
        return $this->settle($owner, [Settlement::failed($event, $error)])[$event->id];
    }

    /** Parks a held event with a reason (out of the queue; the user's next event goes on). */
    public function park(OutboxEvent $event, string $owner, string $reason): bool
    {
        return $this->settle($owner, [Settlement::parked($event, $reason)])[$event->id] === 'parked';
    }

    /**
     * Records a batch's outcomes in one transaction, with a fixed number of statements
     * whatever the batch's size (see {@see OutboxClaims::settle()}): the delivered events
     * removed and their links saved (one multi-row upsert) or forgotten (one DELETE), the
     * failed ones given their next attempt or parked (one multi-row UPDATE). Only the events
     * $owner still holds are settled; one whose lease ran out and that another worker took
     * is 'lost' and changes nothing (its link included: the worker holding it now writes it).
     *
     * A delivered `deleted` event also removes the user's row in `{prefix}outbox_users` when
     * nothing of theirs is left queued or parked (a deleted user is not queued again, so the
     * table holds only users who exist or still have events). That row is locked first, as
     * enqueue locks it, so an enqueue for the same user either commits before the check
     * (its event is seen, the row stays) or waits and writes the row again after the settle;
     * the order of a user's events never depends on the row existing (an enqueue's insert of
     * a missing row waits for a concurrent one as its update of an existing row would).
     *
     * @param list<Settlement> $settlements at most one per event
     * @return array<int, string> by event id: 'delivered', 'retry', 'parked' or 'lost'
     */
    public function settle(string $owner, array $settlements): array
    {
        return $this->claims->settleBatch(
            $owner,
            $settlements,
            $this->maxAttempts,
            function (array $links, array $forgotten): void {
                $this->saveLinks($links);
                if ($forgotten !== []) {
                    $this->prepare("DELETE FROM {$this->prefix}links WHERE user_id IN ("
                        . self::marks(count($forgotten)) . ')')->execute($forgotten);
                }
            },
        );
    }

    /**
     * The links kept for these users (those that have one), by user id: one query for a batch.
     *
     * @param list<string> $userIds
     * @return array<string, Link>
     */
    public function links(array $userIds): array
    {
        $userIds = array_values(array_unique(array_map('strval', $userIds)));
        if ($userIds === []) {
            return [];
        }
        $stmt = $this->prepare("SELECT user_id, remote_id, version, snapshot FROM {$this->prefix}links
            WHERE user_id IN (" . self::marks(count($userIds)) . ')');
        $stmt->execute($userIds);
        $links = [];
        foreach ($stmt->fetchAll(\PDO::FETCH_ASSOC) as $row) {
            $links[(string) $row['user_id']] = new Link((string) $row['remote_id'], $row['version'], $row['snapshot']);
        }
        return $links;
    }

    /** Gives a held event back without counting an attempt. */
    public function release(OutboxEvent $event, string $owner): bool
    {
        return $this->claims->release($event->id, $owner);
    }

    /** Extends the lease on every event $owner holds; returns how many. */
    public function extendLease(string $owner): int
    {
        return $this->claims->extend($owner, $this->leaseSeconds);
    }

    /**
     * Puts a parked event back in the queue, due now, its attempts reset.
     */
    public function unpark(int $id): bool
    {
        $stmt = $this->prepare("UPDATE {$this->prefix}outbox SET parked = 0, attempts = 0, next_attempt_at = 0,
            claimed_by = NULL, claimed_until = 0 WHERE id = ? AND parked = 1");
        $stmt->execute([$id]);
        return $stmt->rowCount() === 1;
    }

    /** @return array{pending: int, parked: int, claimed: int} */
    public function counts(): array
    {
        $stmt = $this->prepare("SELECT
                COALESCE(SUM(CASE WHEN parked = 0 THEN 1 ELSE 0 END), 0) AS pending,
                COALESCE(SUM(CASE WHEN parked = 1 THEN 1 ELSE 0 END), 0) AS parked,
                COALESCE(SUM(CASE WHEN parked = 0 AND claimed_until >= ? THEN 1 ELSE 0 END), 0) AS claimed
            FROM {$this->prefix}outbox");
        $stmt->execute([$this->claims->now()]);
        $row = $stmt->fetch(\PDO::FETCH_ASSOC) ?: [];
        return ['pending' => (int) ($row['pending'] ?? 0), 'parked' => (int) ($row['parked'] ?? 0),
            'claimed' => (int) ($row['claimed'] ?? 0)];
    }

    /**
     * Parked events, oldest first, with why.
     *
     * @return list<array{id: int, user_id: string, event: string, attempts: int, last_error: ?string,
     *     last_status: ?int}>
     */
    public function parked(int $limit = 100): array
    {
        $stmt = $this->prepare("SELECT id, user_id, event, attempts, last_error, last_status
            FROM {$this->prefix}outbox WHERE parked = 1 ORDER BY id LIMIT ?");
        $stmt->bindValue(1, $limit, \PDO::PARAM_INT);
        $stmt->execute();
        return array_map(static fn (array $r): array => [
            'id' => (int) $r['id'], 'user_id' => (string) $r['user_id'], 'event' => (string) $r['event'],
            'attempts' => (int) $r['attempts'], 'last_error' => $r['last_error'],
            'last_status' => $r['last_status'] === null ? null : (int) $r['last_status'],
        ], $stmt->fetchAll(\PDO::FETCH_ASSOC));
    }

    /**
     * PostgreSQL: complete() of an event that is not a deletion as one statement, so one
     * round trip instead of settle()'s six, atomic as any statement is. The link is written from the
     * fenced delete's RETURNING, so only when the delete took the row.
     */
    private function completeInOneStatement(OutboxEvent $event, string $owner, ?Link $link): bool
    {
        $t = $this->prefix . 'outbox';
        $l = $this->prefix . 'links';
        $done = "WITH done AS (DELETE FROM {$t} WHERE id = ? AND claimed_by = ? RETURNING user_id)";
        if ($link === null) {
            $stmt = $this->prepare("{$done}, forgotten AS (DELETE FROM {$l} WHERE user_id IN (SELECT user_id FROM done))
                SELECT COUNT(*) FROM done");
            $stmt->execute([$event->id, $owner]);
        } else {
            $stmt = $this->prepare("{$done}, saved AS (
                    INSERT INTO {$l} (user_id, remote_id, version, snapshot, updated_at)
                    SELECT user_id, CAST(? AS VARCHAR), CAST(? AS VARCHAR), CAST(? AS TEXT), CAST(? AS BIGINT) FROM done
                    ON CONFLICT (user_id) DO UPDATE SET remote_id = EXCLUDED.remote_id, version = EXCLUDED.version,
                        snapshot = EXCLUDED.snapshot, updated_at = EXCLUDED.updated_at
                ) SELECT COUNT(*) FROM done");
            $stmt->execute([$event->id, $owner, $link->remoteId, $link->version, $link->snapshot, time()]);
        }
        return (int) $stmt->fetchColumn() === 1;
    }

    /** @param array<string, Link> $links by user id */
    private function saveLinks(array $links): void
    {
        if ($links === []) {
            return;
        }
        $t = $this->prefix . 'links';
        $rows = implode(', ', array_fill(0, count($links), '(?, ?, ?, ?, ?)'));
        $upsert = PdoSchema::driver($this->pdo) === 'pgsql'
            ? "INSERT INTO {$t} (user_id, remote_id, version, snapshot, updated_at) VALUES {$rows}
               ON CONFLICT (user_id) DO UPDATE SET remote_id = EXCLUDED.remote_id, version = EXCLUDED.version,
               snapshot = EXCLUDED.snapshot, updated_at = EXCLUDED.updated_at"
            : "INSERT INTO {$t} (user_id, remote_id, version, snapshot, updated_at) VALUES {$rows}
               ON DUPLICATE KEY UPDATE remote_id = VALUES(remote_id), version = VALUES(version),
               snapshot = VALUES(snapshot), updated_at = VALUES(updated_at)";
        $params = [];
        $now = time();
        foreach ($links as $userId => $link) {
            array_push($params, (string) $userId, $link->remoteId, $link->version, $link->snapshot, $now);
        }
        $this->prepare($upsert)->execute($params);
    }

    private static function marks(int $n): string
    {
        return implode(', ', array_fill(0, $n, '?'));
    }

    /** A statement sent as one round trip (see {@see PdoOutboxSql::prepare()}). */
    private function prepare(string $sql): \PDOStatement
    {
        return PdoOutboxSql::prepareOn($this->pdo, $sql);
    }

    /** @param array<string, mixed> $row */
    private function decode(array $row): ?OutboxEvent
    {
        $event = UserEvent::tryFrom((string) $row['event']);
        $user = json_decode((string) $row['user_json'], true);
        if ($event === null || !is_array($user) || !is_array($user['fields'] ?? null)) {
            return null;
        }
        try {
            $cms = new CmsUser((string) $row['user_id'], $user['fields'], (bool) ($user['active'] ?? true));
        } catch (InvalidArgumentException) {
            return null;
        }
        return new OutboxEvent((int) $row['id'], $event, $cms, (int) $row['attempts'], (int) $row['created_at']);
    }

    /**
     * @template T
     * @param callable(): T $work
     * @return T
     */
    private function transaction(callable $work): mixed
    {
        if ($this->pdo->inTransaction()) {
            return $work();
        }
        $this->pdo->beginTransaction();
        try {
            $result = $work();
            $this->pdo->commit();
            return $result;
        } catch (\Throwable $e) {
            $this->pdo->rollBack();
            throw $e;
        }
    }

    /** @return array<int, list<string>> */
    private static function steps(string $driver, string $p): array
    {
        if ($driver === 'pgsql') {
            return [1 => [
                "CREATE TABLE IF NOT EXISTS {$p}outbox (
                    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    user_id VARCHAR(191) NOT NULL,
                    event VARCHAR(20) NOT NULL,
                    user_json TEXT NOT NULL,
                    created_at BIGINT NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    next_attempt_at BIGINT NOT NULL DEFAULT 0,
                    last_error TEXT NULL,
                    last_status INTEGER NULL,
                    parked SMALLINT NOT NULL DEFAULT 0,
                    claimed_by VARCHAR(64) NULL,
                    claimed_until BIGINT NOT NULL DEFAULT 0
                )",
                "CREATE INDEX IF NOT EXISTS {$p}outbox_user ON {$p}outbox (user_id, id)",
                "CREATE INDEX IF NOT EXISTS {$p}outbox_due ON {$p}outbox (parked, next_attempt_at)",
                "CREATE INDEX IF NOT EXISTS {$p}outbox_owner ON {$p}outbox (claimed_by)",
                "CREATE TABLE IF NOT EXISTS {$p}links (
                    user_id VARCHAR(191) PRIMARY KEY,
                    remote_id VARCHAR(255) NOT NULL,
                    version VARCHAR(255) NULL,
                    snapshot TEXT NULL,
                    updated_at BIGINT NOT NULL
                )",
            ], 2 => [
                // One row per user ever queued: what enqueue locks (see enqueue()).
                "CREATE TABLE IF NOT EXISTS {$p}outbox_users (
                    user_id VARCHAR(191) PRIMARY KEY,
                    enqueued BIGINT NOT NULL DEFAULT 0
                )",
                // The claim walks the primary key (OutboxClaims::PG_HEADS_PLAN); this index only
                // ever tempted the planner into worse plans. Parked events are listed by their own.
                "DROP INDEX IF EXISTS {$p}outbox_due",
                "CREATE INDEX IF NOT EXISTS {$p}outbox_parked ON {$p}outbox (id) WHERE parked = 1",
            ]];
        }
        // utf8mb4_bin: ids compare byte for byte, never as MariaDB's case- and accent-folding collations would.
        $bin = 'CHARACTER SET utf8mb4 COLLATE utf8mb4_bin';
        return [1 => [
            "CREATE TABLE IF NOT EXISTS {$p}outbox (
                id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                user_id VARCHAR(191) {$bin} NOT NULL,
                event VARCHAR(20) NOT NULL,
                user_json LONGTEXT NOT NULL,
                created_at BIGINT NOT NULL,
                attempts INT NOT NULL DEFAULT 0,
                next_attempt_at BIGINT NOT NULL DEFAULT 0,
                last_error TEXT NULL,
                last_status INT NULL,
                parked TINYINT NOT NULL DEFAULT 0,
                claimed_by VARCHAR(64) {$bin} NULL,
                claimed_until BIGINT NOT NULL DEFAULT 0,
                KEY {$p}outbox_user (user_id, id),
                KEY {$p}outbox_due (parked, next_attempt_at),
                KEY {$p}outbox_owner (claimed_by)
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            "CREATE TABLE IF NOT EXISTS {$p}links (
                user_id VARCHAR(191) {$bin} NOT NULL PRIMARY KEY,
                remote_id VARCHAR(255) {$bin} NOT NULL,
                version VARCHAR(255) {$bin} NULL,
                snapshot LONGTEXT NULL,
                updated_at BIGINT NOT NULL
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        ], 2 => [
            // One row per user ever queued: what enqueue locks (see enqueue()).
            "CREATE TABLE IF NOT EXISTS {$p}outbox_users (
                user_id VARCHAR(191) {$bin} NOT NULL PRIMARY KEY,
                enqueued BIGINT NOT NULL DEFAULT 0
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        ]];
    }
}
