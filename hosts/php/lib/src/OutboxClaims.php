<?php

declare(strict_types=1);

namespace ScimProvisioner;

use ScimProvisioner\Internal\PdoOutboxSql;

/**
 * How workers share one outbox table on MariaDB/MySQL or PostgreSQL: claiming a batch with a
 * lease, and completing, failing, parking or releasing a claimed row. One implementation for
 * the PHP library's {@see PdoOutbox} and the WordPress plugin's `$wpdb` outbox.
 *
 * The table's columns (any others are the caller's): `id` (ascending in enqueue order),
 * `user_id`, `parked` (0/1), `next_attempt_at`, `claimed_by`, `claimed_until` (Unix seconds,
 * the database's clock), `attempts`, `last_error`, `last_status`.
 *
 * **Exactly one holder, per-user order.** A row is claimable when it is its user's *head*:
 * no older unparked row of the same user exists, whoever holds it. So a user with an event
 * leased by one worker (or left by a worker that died, until its lease runs out) offers
 * nothing to the others, and a user's next event becomes claimable only once the one before
 * is completed (deleted) or parked. `FOR UPDATE SKIP LOCKED` then hands each head to one
 * claiming transaction, which writes the lease (`claimed_by`, `claimed_until`) before it
 * commits. The head test is never a locking read: under MariaDB a locking read with
 * SKIP LOCKED would also skip the *older* row another worker is locking and take the newer
 * one. On PostgreSQL heads are locked and leased in the same statement (`FOR UPDATE OF o`,
 * the subquery is read, not locked); on MariaDB a plain read picks candidate heads and one
 * UPDATE leases those still unleased (see {@see claimOnMysql()}). Being a head only ever
 * becomes true by an older row's delete or park, which a read sees only once committed, so
 * a stale read errs on the safe side.
 *
 * A worker's completion, failure and release are fenced by `claimed_by`: after its lease ran
 * out and another worker took the row, a late answer from the first changes nothing.
 */
final class OutboxClaims
{
    /** Heads MySQL's plain read offers per row wanted, so that workers claiming at once mostly want different ones. */
    private const WINDOW = 2;

    private const TRIES = 5;

    /** Whether the server is MariaDB, once asked (see isMariaDb()). */
    private ?bool $mariaDb = null;

    /**
     * PostgreSQL's plan for the head query, for this claim's transaction only
     * (`set_config(…, true)`): walk the primary key in id order, test each row's head rule
     * with one probe of the `(user_id, id)` index, and stop at the limit, so a claim reads
     * about as many rows as it takes, however long the queue. Left to its statistics, the
     * planner picks that plan only when they are fresh. A queue table is the worst case for
     * them: empty when autovacuum last analyzed it, then a resync enqueues 100,000 events.
     * With no statistics it estimated 2 matching rows, scanned and sorted the whole queue, and
     * combined both indexes for every row's probe: one claim of 100 from 20,000 queued took
     * 11.8 s (EXPLAIN ANALYZE), 0.4–0.8 ms with this plan. The settings below leave it no other
     * plan; they change nothing outside the claim's transaction. MariaDB's optimizer flips the
     * same way with its statistics: the `(parked, next_attempt_at)` index and a filesort (219 ms
     * for a window of 400 heads from 20,000 queued, 2.3 ms by the primary key), or each head
     * test as a range of the primary key (840,400 rows examined for 400 heads). So there the
     * query forces the primary key, and the user index when it is named.
     */
    private const PG_HEADS_PLAN = "SELECT set_config('enable_seqscan', 'off', true),
        set_config('enable_bitmapscan', 'off', true), set_config('enable_sort', 'off', true),
        set_config('enable_material', 'off', true), set_config('enable_hashjoin', 'off', true),
        set_config('enable_mergejoin', 'off', true), set_config('jit', 'off', true)";

    /** PostgreSQL's plan for a claim of some users' rows: by an index (the user index), without JIT. */
    private const PG_USERS_PLAN = "SELECT set_config('enable_seqscan', 'off', true),
        set_config('jit', 'off', true)";

    /**
     * PostgreSQL, the claim only (appended to its plan's settings): how long one claim may
     * run, by default, before the server cancels it (the transaction rolls back, its row
     * locks go, and claim() makes it again, see TRIES). A claim takes about a millisecond;
     * one that runs for seconds is on a plan it should not have, or waits for a lock, and
     * meanwhile holds row locks that stop other workers' settles. A settle never has it: one
     * that waits for locks must finish, or events already delivered would be sent again
     * after their lease.
     */
    public const PG_CLAIM_TIMEOUT_MS = 30000;

    /**
     * @param string|null $userIndex the name of the table's `(user_id, id)` index, which MariaDB
     *     is then told to use for the head test (see PG_HEADS_PLAN); null leaves it to the optimizer
     * @param int $claimTimeoutMs PostgreSQL: how long one claim statement may run before the
     *     server cancels it and it is made again (see PG_CLAIM_TIMEOUT_MS)
     */
    public function __construct(
        private readonly OutboxSql $db,
        private readonly string $table,
        private readonly ?string $userIndex = null,
        private readonly ?string $usersTable = null,
        private readonly int $claimTimeoutMs = self::PG_CLAIM_TIMEOUT_MS,
    ) {
        if ($claimTimeoutMs < 1) {
            throw new InvalidArgumentException('the claim timeout must be at least 1 ms');
        }
        foreach ([$table, $userIndex ?? 'none', $usersTable ?? 'none'] as $name) {
            if (!preg_match('/^[A-Za-z_][A-Za-z0-9_]*$/', $name)) {
                throw new InvalidArgumentException("the outbox table and index must be SQL identifiers, not {$name}");
            }
        }
        if (!in_array($db->dialect(), ['mysql', 'pgsql'], true)) {
            throw new InvalidArgumentException("outbox claims need MySQL/MariaDB or PostgreSQL, not {$db->dialect()}");
        }
    }

    /** The database's clock, in Unix seconds: every worker's leases are measured on it. */
    public function now(): int
    {
        $sql = $this->db->dialect() === 'pgsql'
            ? 'SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS BIGINT) AS now'
            : 'SELECT UNIX_TIMESTAMP() AS now';
        return (int) ($this->db->select($sql)[0]['now'] ?? time());
    }

    /**
     * Claims up to $limit due rows, at most one per user (its head), oldest first, for
     * $leaseSeconds. Returns the rows as stored (every column), now held by $owner.
     *
     * @param list<int|string>|null $userIds only these users; null for all
     * @return list<array<string, mixed>>
     */
    public function claim(
        string $owner,
        int $limit,
        int $leaseSeconds,
        ?array $userIds = null,
        bool $ignoreRetryTimes = false,
    ): array {
        if ($limit < 1 || $userIds === []) {
            return [];
        }
        if ($leaseSeconds < 1) {
            throw new InvalidArgumentException('the lease must be at least one second');
        }
        if ($owner === '' || strlen($owner) > 64) {
            throw new InvalidArgumentException('the claim owner must be 1 to 64 bytes');
        }
        // A claim the database rolled back (a deadlock, a serialization failure, a lock wait
        // or statement timeout: see OutboxSql::isRetryable()) did nothing: no row is leased,
        // so it is simply made again, as the Rust host's claim is. After TRIES in a row, the
        // error goes to the caller, saying so.
        for ($try = 1;; $try++) {
            try {
                $rows = $this->db->dialect() === 'pgsql'
                    ? $this->claimOnPostgres($owner, $limit, $leaseSeconds, $userIds, $ignoreRetryTimes)
                    : $this->claimOnMysql($owner, $limit, $leaseSeconds, $userIds, $ignoreRetryTimes);
                usort($rows, static fn (array $a, array $b): int => (int) $a['id'] <=> (int) $b['id']);
                return $rows;
            } catch (\Throwable $e) {
                if (!$this->db->isRetryable($e)) {
                    throw $e;
                }
                if ($try >= self::TRIES) {
                    throw self::givenUp($e, $try);
                }
                usleep(random_int(1000, 20000) * $try);
            }
        }
    }

    /**
     * The error of a claim the database rolled back $tries times in a row: of the same class
     * as the last one (a worker that treats a PDOException as the database's trouble still
     * does), which it keeps as its previous, and a message that says what happened.
     */
    private static function givenUp(\Throwable $last, int $tries): \Throwable
    {
        $message = "the outbox claim was rolled back by the database {$tries} times in a row "
            . '(a deadlock, or a lock wait or statement timeout: something holds the outbox '
            . 'for longer than a claim may wait); nothing was claimed. Last error: ' . $last->getMessage();
        if ($last instanceof \PDOException) {
            $error = new \PDOException($message, 0, $last);
            $error->errorInfo = $last->errorInfo;
            return $error;
        }
        return new \RuntimeException($message, (int) $last->getCode(), $last);
    }

    /**
     * The claimable rows' filter: due (unless $ignoreRetryTimes), unparked, unleased, and
     * among $userIds when given; the head rule is the caller's. `$now` is the SQL for the
     * database's clock in Unix seconds.
     *
     * @param list<int|string>|null $userIds
     * @return array{0: string, 1: list<int|string>} the condition on `o` and its values
     */
    private static function claimable(string $now, ?array $userIds, bool $ignoreRetryTimes): array
    {
        $where = "o.parked = 0 AND o.claimed_until < {$now}";
        if (!$ignoreRetryTimes) {
            $where .= " AND o.next_attempt_at <= {$now}";
        }
        $params = [];
        if ($userIds !== null) {
            $where .= ' AND o.user_id IN (' . self::marks(count($userIds)) . ')';
            foreach ($userIds as $u) {
                $params[] = is_int($u) ? $u : (string) $u;
            }
        }
        return [$where, $params];
    }

    /**
     * PostgreSQL: one statement picks the heads with `FOR UPDATE OF o SKIP LOCKED` (the
     * head test's subquery is read, not locked) and leases them, returning the rows. On PDO
     * it goes out with the plan settings (see PG_HEADS_PLAN) in one message, one round trip
     * and one implicit transaction (PdoOutboxSql::selectUnder()); it was four (the
     * transaction's two ends and the settings apart), and before that seven (the clock, the
     * heads, the lease and the rows read apart). Another OutboxSql, or a PDO connection
     * with a transaction open, takes the four.
     *
     * Written so that no statistics can make it read the whole outbox per row, as the Rust
     * store's claim (host-example/src/store/shared.rs, pg_claim_sql). After a burst is
     * delivered and deleted, autovacuum's analyze may find the outbox empty (`reltuples` 0,
     * its pages kept); the planner then takes every scan of it for one row. With a plain
     * `p.id < o.id` it walked the whole `(user_id, id)` index for each candidate's head test,
     * and with `UPDATE … FROM picked WHERE id = picked.id` the whole primary key for each
     * row leased. So the head test is a subquery of its own (`OFFSET 0`: not flattened into a
     * join) whose row comparison `(p.user_id, p.id) < (o.user_id, o.id)` only the user index
     * can serve, as one range from the user's first row to the candidate; and the UPDATE
     * finds the rows just locked by their `ctid` (a TID scan). JIT is off (PG_HEADS_PLAN):
     * with the other plans off, the estimated cost is far past `jit_above_cost` and compiling
     * would cost more than the claim.
     *
     * @param list<int|string>|null $userIds
     * @return list<array<string, mixed>>
     */
    private function claimOnPostgres(
        string $owner,
        int $limit,
        int $leaseSeconds,
        ?array $userIds,
        bool $ignoreRetryTimes,
    ): array {
        [$sql, $params] = self::postgresClaimStatement($this->table, $userIds, $ignoreRetryTimes);
        $params = [...$params, $limit, $owner, $leaseSeconds];
        // A claim for some users goes by their rows in the user index and sorts them (see
        // postgresClaimStatement()); the whole queue's claim walks the primary key.
        $settings = self::postgresQueuePlan($userIds !== null)
            . ", set_config('statement_timeout', '{$this->claimTimeoutMs}ms', true)";
        if ($this->db instanceof PdoOutboxSql) {
            // PDO: the settings and the claim in one message, one round trip (see selectUnder()).
            $rows = $this->db->selectUnder($settings, $sql, $params);
            if ($rows !== null) {
                return $rows;
            }
        }
        $this->db->begin();
        try {
            $this->db->select($settings);
            $rows = $this->db->select($sql, $params);
            $this->db->commit();
            return $rows;
        } catch (\Throwable $e) {
            $this->db->rollback();
            throw $e;
        }
    }

    /**
     * PostgreSQL's claim statement (see claimOnPostgres()) on $table and the values of its
     * filter; the caller appends the limit, the owner and the lease in seconds. Public for
     * the tests that read its plan.
     *
     * @internal
     * @param list<int|string>|null $userIds
     * @return array{0: string, 1: list<int|string>}
     */
    public static function postgresClaimStatement(string $table, ?array $userIds, bool $ignoreRetryTimes): array
    {
        $t = $table;
        // The statement's clock: the same instant in every comparison and in the lease.
        $now = 'CAST(EXTRACT(EPOCH FROM statement_timestamp()) AS BIGINT)';
        [$where, $params] = self::claimable($now, $userIds, $ignoreRetryTimes);
        // Some users' rows: found by the user index and sorted, never by a walk of the primary
        // key in order (which the planner, counting the outbox empty, took to be one row, and
        // which reads the whole queue for a few users' rows): `id + 0` is no key's order.
        $order = $userIds === null ? 'o.id' : 'o.id + 0';
        return ["WITH picked AS (
                SELECT o.ctid FROM {$t} o WHERE {$where}
                AND NOT EXISTS (SELECT 1 FROM {$t} p WHERE p.user_id = o.user_id
                    AND (p.user_id, p.id) < (o.user_id, o.id) AND p.parked = 0 OFFSET 0)
                ORDER BY {$order} LIMIT ? FOR UPDATE OF o SKIP LOCKED)
             UPDATE {$t} SET claimed_by = ?, claimed_until = {$now} + ?
             WHERE {$t}.ctid = ANY (ARRAY(SELECT ctid FROM picked)) RETURNING {$t}.*", $params];
    }

    /**
     * PostgreSQL: the claim's plan settings, as one statement (for a claim of some users'
     * rows when $someUsers). Public for the tests that read its plan.
     *
     * @internal
     */
    public static function postgresQueuePlan(bool $someUsers = false): string
    {
        return $someUsers ? self::PG_USERS_PLAN : self::PG_HEADS_PLAN;
    }

    /**
     * MySQL/MariaDB: three statements and no transaction of its own, as the Rust host's
     * store claims there (host-example/src/store/shared.rs, claim_on_mariadb):
     *
     * 1. a plain read of the queue's first `2 × $limit` heads (the head test is never a
     *    locking read: see the class doc);
     * 2. one UPDATE leases the oldest $limit of them still unleased (`ORDER BY id LIMIT`).
     *    InnoDB rechecks each row on its newest committed version, and waits for a row
     *    another claim is leasing this instant (a single short statement too), then finds
     *    it leased and goes on to the next: two workers that read the same candidates get
     *    the first and the second half, oldest first. (The Rust store picks a random half
     *    instead; here the oldest-first order the claim promises is kept.) It locks by key
     *    in ascending order, as every claim and settle does; a deadlock with another order
     *    (a caller's own statements) is rolled back by the server, and the claim is made again;
     * 3. a read of the candidates now leased to $owner returns them.
     *
     * It was seven round trips (the clock, a window of 4 × $limit heads, a locking read of
     * the first unlocked among them, the lease, the rows, and the transaction's two ends).
     * A head only stops being one when it is delivered or parked, which takes its lease
     * first, and the UPDATE's recheck sees that lease; being the head only ever becomes true
     * (an older row's delete or park), so a stale read errs on the safe side.
     *
     * @param list<int|string>|null $userIds
     * @return list<array<string, mixed>>
     */
    private function claimOnMysql(
        string $owner,
        int $limit,
        int $leaseSeconds,
        ?array $userIds,
        bool $ignoreRetryTimes,
    ): array {
        $t = $this->table;
        [$where, $params] = self::claimable('UNIX_TIMESTAMP()', $userIds, $ignoreRetryTimes);
        [$recheck] = self::claimable('UNIX_TIMESTAMP()', null, $ignoreRetryTimes);
        // By the primary key with a probe of the user index, whatever the statistics say; see PG_HEADS_PLAN.
        $walk = $userIds === null ? ' FORCE INDEX (PRIMARY)' : '';
        $probe = $this->userIndex !== null ? " FORCE INDEX ({$this->userIndex})" : '';
        // MariaDB: without the subquery cache. Each candidate's head test has a key of its own
        // (the candidate's user and id), so the cache only costs a temporary table: 100 reads
        // of 200 candidates took 0.11 s of the server's CPU with it, 0.07 s without.
        $noCache = $this->isMariaDb() ? "SET STATEMENT optimizer_switch = 'subquery_cache=off' FOR " : '';
        $heads = "{$noCache}SELECT o.id FROM {$t} o{$walk} WHERE {$where}
            AND NOT EXISTS (SELECT 1 FROM {$t} p{$probe} WHERE p.user_id = o.user_id AND p.parked = 0 AND p.id < o.id)
            ORDER BY o.id LIMIT ?";
        // Workers that read the same candidates at once may find all of them leased by the
        // time their UPDATE runs: read again (their leases are committed now) rather than
        // answer "nothing claimable" while the queue is full, a few times.
        for ($round = 1; $round <= self::TRIES; $round++) {
            $candidates = self::ids($this->db->select($heads, [...$params, $limit * self::WINDOW]));
            if ($candidates === []) {
                return [];
            }
            $in = implode(', ', $candidates);
            $leased = $this->db->execute(
                "UPDATE {$t} o SET o.claimed_by = ?, o.claimed_until = UNIX_TIMESTAMP() + ?
                 WHERE o.id IN ({$in}) AND {$recheck} ORDER BY o.id LIMIT ?",
                [$owner, $leaseSeconds, $limit],
            );
            if ($leased > 0) {
                return $this->db->select(
                    "SELECT * FROM {$t} WHERE id IN ({$in}) AND claimed_by = ? AND claimed_until >= UNIX_TIMESTAMP()",
                    [$owner],
                );
            }
        }
        return [];
    }

    /** Whether the server is MariaDB (not MySQL): asked once per instance. */
    private function isMariaDb(): bool
    {
        return $this->mariaDb ??= str_contains(
            strtolower((string) ($this->db->select('SELECT VERSION() AS v')[0]['v'] ?? '')),
            'mariadb',
        );
    }

    /**
     * Records a delivered batch's outcomes ({@see Settlement}s, at most one per event) in one
     * transaction with a fixed number of statements, whatever the batch's size: the one
     * settle of the PHP library's {@see PdoOutbox} and of the WordPress plugin's outbox, which
     * differ only in where a user's link is kept ($recordLinks).
     *
     * - A failure gets its next attempt (the server's Retry-After, else a backoff of 16 s,
     *   32 s, … up to an hour) or is parked (a permanent error, or $maxAttempts reached); a
     *   {@see Settlement::parked()} event is parked with its reason, its attempts unchanged.
     * - Only the events $owner still holds are settled (see {@see settle()}); the others are
     *   'lost', and nothing of theirs is written, their links included: the worker holding
     *   them now writes those.
     * - $recordLinks runs inside the transaction, after the events' rows: it is given the
     *   links to keep (by user id; the later event's when a batch holds two of one user) and
     *   the users whose link is forgotten, of the held delivered events only, and every held
     *   event's result (event id => 'delivered', 'retry' or 'parked'; a retry's delay in
     *   seconds beside it).
     * - A delivered `deleted` event removes the user's row in the users table (the one
     *   enqueue locks, given to the constructor) when nothing of theirs is left queued or
     *   parked. That row is locked first, in user order, as enqueue locks it, so an enqueue
     *   for the same user either committed before the check (its event is seen and the row
     *   stays) or waits and writes the row again after the settle; a user's order never
     *   depends on the row existing. No transaction of its own is opened for it.
     *
     * @param list<Settlement> $settlements
     * @param \Closure(array<string, Link>, list<string>, array<int, array{result: string, retry_in: ?int}>): void
     *     $recordLinks
     * @return array<int, string> by event id: 'delivered', 'retry', 'parked' or 'lost'
     */
    public function settleBatch(string $owner, array $settlements, int $maxAttempts, \Closure $recordLinks): array
    {
        if ($maxAttempts < 1) {
            throw new InvalidArgumentException('max_attempts must be at least 1');
        }
        $delivered = [];
        $failed = [];
        $links = [];
        $forgotten = [];
        $deletedUsers = [];
        $now = null;
        foreach ($settlements as $s) {
            $id = $s->event->id;
            if ($s->isDelivered()) {
                $delivered[] = $id;
                $userId = $s->event->user->id;
                // One link per user (the later event's), as one multi-row upsert may not touch a row twice.
                unset($links[$userId], $forgotten[$userId]);
                if ($s->link === null) {
                    $forgotten[$userId] = $id;
                } else {
                    $links[$userId] = [$id, $s->link];
                }
                if ($s->event->event === UserEvent::Deleted) {
                    $deletedUsers[$userId] = $id;
                }
                continue;
            }
            $failed[$id] = $s->parkReason !== null
                ? ['attempts' => $s->event->attempts, 'next_attempt_at' => 0,
                    'error' => mb_substr($s->parkReason, 0, 2000), 'status' => null, 'park' => true, 'retry_in' => null]
                : self::failure($s->event, $s->error, $now ??= $this->now(), $maxAttempts);
        }
        $deletedIds = array_map('strval', array_keys($deletedUsers));
        sort($deletedIds, SORT_STRING);
        $u = $this->usersTable;
        if ($deletedIds !== [] && $u === null) {
            throw new LogicException('settling a deleted user\'s event needs the outbox users table');
        }
        $lockUsers = $deletedIds === [] ? null : function () use ($deletedIds, $u): void {
            // The rows enqueue locks, in a fixed order, before the events' rows (enqueue's order too).
            $this->db->select("SELECT user_id FROM {$u} WHERE user_id IN (" . self::marks(count($deletedIds))
                . ') ORDER BY user_id FOR UPDATE', $deletedIds);
        };
        $record = function (array $held) use ($links, $forgotten, $deletedUsers, $failed, $u, $recordLinks): void {
            $isHeld = array_fill_keys($held, true);
            // The users (keys of $byUser: event id) whose event is still held.
            $users = static fn (array $byUser): array => array_map('strval', array_keys(
                array_filter($byUser, static fn (int $id): bool => isset($isHeld[$id])),
            ));
            $keep = [];
            foreach ($links as $userId => [$id, $link]) {
                if (isset($isHeld[$id])) {
                    $keep[(string) $userId] = $link;
                }
            }
            $results = [];
            foreach ($held as $id) {
                $f = $failed[$id] ?? null;
                $results[$id] = $f === null
                    ? ['result' => 'delivered', 'retry_in' => null]
                    : ['result' => $f['park'] ? 'parked' : 'retry', 'retry_in' => $f['park'] ? null : $f['retry_in']];
            }
            $recordLinks($keep, $users($forgotten), $results);
            $deleted = $users($deletedUsers);
            if ($deleted !== []) {
                $this->db->execute("DELETE FROM {$u} WHERE user_id IN (" . self::marks(count($deleted)) . ")
                    AND NOT EXISTS (SELECT 1 FROM {$this->table} o WHERE o.user_id = {$u}.user_id)", $deleted);
            }
        };
        $held = array_fill_keys($this->settle($owner, $delivered, $failed, $lockUsers, $record), true);
        $results = [];
        foreach ($settlements as $s) {
            $id = $s->event->id;
            $results[$id] = match (true) {
                !isset($held[$id]) => 'lost',
                $s->isDelivered() => 'delivered',
                default => $failed[$id]['park'] ? 'parked' : 'retry',
            };
        }
        return $results;
    }

    /**
     * A failed delivery's next attempt: after the server's Retry-After or a backoff (16 s,
     * 32 s, … up to an hour), or parked when the error is permanent or attempts ran out.
     *
     * @return array{attempts: int, next_attempt_at: int, error: string, status: ?int, park: bool, retry_in: int}
     */
    private static function failure(
        OutboxEvent $event,
        ProvisioningException|GuestTrapException|null $error,
        int $now,
        int $maxAttempts,
    ): array {
        $attempts = $event->attempts + 1;
        $retry = $error instanceof ProvisioningException ? $error->retry : RetryClass::Backoff->value;
        $delay = $retry === RetryClass::AfterSeconds->value && $error instanceof ProvisioningException
            ? max(1, (int) $error->retryAfterSeconds)
            : min(3600, 2 ** min($attempts + 3, 12));
        return [
            'attempts' => $attempts,
            'next_attempt_at' => $now + $delay,
            'error' => mb_substr($error?->getMessage() ?? 'failed', 0, 2000),
            'status' => $error instanceof ProvisioningException ? $error->status : null,
            'park' => $retry === RetryClass::Permanent->value || $attempts >= $maxAttempts,
            'retry_in' => $delay,
        ];
    }

    private static function marks(int $n): string
    {
        return implode(', ', array_fill(0, $n, '?'));
    }

    /**
     * Settles a delivered batch in one transaction with a fixed number of statements,
     * whatever its size: one locking read of the rows $owner still holds among the batch's,
     * one DELETE of the delivered ones, one multi-row UPDATE of the failed ones (retry time or
     * parked, the claim released), then $more (the caller's statements in the same transaction,
     * e.g. the links: it is given the ids still held). A row whose lease ran out and that
     * another worker claimed since is left alone, for that worker to settle. A deadlock
     * (seen between two settles of disjoint batches on InnoDB) rolls the transaction back and
     * it is run again. Returns the ids it settled.
     *
     * @param list<int> $delivered
     * @param array<int, array{attempts: int, next_attempt_at: int, error: string, status: ?int, park: bool}> $failed
     *     by row id
     * @param (\Closure(list<int>): void)|null $first run first in the transaction (locks the
     *     caller takes before the rows', in the order enqueue takes them)
     * @param (\Closure(list<int>): void)|null $more run last in the transaction, with the ids held
     * @return list<int>
     */
    public function settle(
        string $owner,
        array $delivered,
        array $failed,
        ?\Closure $first = null,
        ?\Closure $more = null,
    ): array {
        $ids = [...array_map('intval', $delivered), ...array_map('intval', array_keys($failed))];
        if ($ids === []) {
            return [];
        }
        sort($ids);
        for ($try = 1;; $try++) {
            $this->db->begin();
            try {
                if ($first !== null) {
                    $first($ids);
                }
                $held = $this->settleIn($owner, $ids, $delivered, $failed);
                if ($more !== null && $held !== []) {
                    $more($held);
                }
                $this->db->commit();
                return $held;
            } catch (\Throwable $e) {
                $this->db->rollback();
                if ($try >= self::TRIES || !$this->db->isRetryable($e)) {
                    throw $e;
                }
                usleep(random_int(1000, 20000) * $try);
            }
        }
    }

    /**
     * @param list<int> $ids every row of the batch, ascending
     * @param list<int> $delivered
     * @param array<int, array{attempts: int, next_attempt_at: int, error: string, status: ?int, park: bool}> $failed
     * @return list<int> the rows still held, now settled
     */
    private function settleIn(string $owner, array $ids, array $delivered, array $failed): array
    {
        $t = $this->table;
        $pgsql = $this->db->dialect() === 'pgsql';
        if ($pgsql) {
            $this->db->select(self::PG_HEADS_PLAN); // by the key, whatever the statistics say
        }
        $byKey = $pgsql ? '' : ' FORCE INDEX (PRIMARY)';
        // Locked in id order, as every settle locks them: two settles never wait on each other in a cycle.
        $held = self::ids($this->db->select(
            "SELECT id FROM {$t}{$byKey} WHERE id IN (" . implode(', ', $ids) . ')
             AND claimed_by = ? ORDER BY id FOR UPDATE',
            [$owner],
        ));
        if ($held === []) {
            return [];
        }
        $isHeld = array_fill_keys($held, true);
        $done = array_values(array_filter(
            array_map('intval', $delivered),
            static fn (int $id): bool => isset($isHeld[$id]),
        ));
        // PostgreSQL: the rows (locked above, so their ctids hold until the commit) found by
        // ctid, from one primary-key look-up each. A plain `id IN (…)` may be planned as a walk
        // of the whole user index (`id` is its second column) when the statistics were taken
        // while the outbox was empty (see claimOnPostgres()): each settle then read the queue.
        $rowsOf = static fn (array $keys): string => $pgsql
            ? "ctid = ANY (ARRAY(SELECT ctid FROM {$t} WHERE id IN (" . implode(', ', $keys) . ') ORDER BY id))'
            : 'id IN (' . implode(', ', $keys) . ')';
        if ($done !== []) {
            $this->db->execute("DELETE FROM {$t} WHERE " . $rowsOf($done));
        }
        $params = [];
        $rows = 0;
        $failedHeld = [];
        foreach ($failed as $id => $f) {
            if (!isset($isHeld[(int) $id])) {
                continue;
            }
            $park = $f['park'] ? 1 : 0;
            array_push($params, (int) $id, $f['attempts'], $f['next_attempt_at'], $f['error'], $f['status'], $park);
            $failedHeld[] = (int) $id;
            $rows++;
        }
        if ($rows > 0) {
            $sql = $pgsql
                ? "UPDATE {$t} SET attempts = v.attempts, next_attempt_at = v.next_at, last_error = v.err,
                    last_status = v.status, parked = v.parked, claimed_by = NULL, claimed_until = 0
                  FROM (VALUES " . implode(', ', array_fill(0, $rows, '(CAST(? AS BIGINT), CAST(? AS INTEGER),
                    CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS SMALLINT))')) . ")
                    AS v (id, attempts, next_at, err, status, parked)
                  WHERE {$t}." . $rowsOf($failedHeld) . " AND {$t}.id + 0 = v.id"
                : 'UPDATE (SELECT ? AS id, ? AS attempts, ? AS next_at, ? AS err, ? AS status, ? AS parked'
                    . str_repeat(' UNION ALL SELECT ?, ?, ?, ?, ?, ?', $rows - 1) . ") v
                  STRAIGHT_JOIN {$t} o FORCE INDEX (PRIMARY) ON o.id = v.id
                  SET o.attempts = v.attempts, o.next_attempt_at = v.next_at, o.last_error = v.err,
                    o.last_status = v.status, o.parked = v.parked, o.claimed_by = NULL, o.claimed_until = 0";
            $this->db->execute($sql, $params);
        }
        return $held;
    }

    /** Removes a delivered row, if $owner still holds it; false when it no longer did. */
    public function complete(int $id, string $owner): bool
    {
        return $this->db->execute("DELETE FROM {$this->table} WHERE id = ? AND claimed_by = ?", [$id, $owner]) === 1;
    }

    /**
     * Records a failed attempt and releases the claim: the row is due again at $nextAttemptAt,
     * or parked (out of the queue, its user's next row becomes the head) when $park.
     */
    public function fail(
        int $id,
        string $owner,
        int $attempts,
        int $nextAttemptAt,
        string $error,
        ?int $status,
        bool $park,
    ): bool {
        return $this->db->execute(
            "UPDATE {$this->table} SET attempts = ?, next_attempt_at = ?, last_error = ?, last_status = ?,
                parked = ?, claimed_by = NULL, claimed_until = 0
             WHERE id = ? AND claimed_by = ?",
            [$attempts, $nextAttemptAt, $error, $status, $park ? 1 : 0, $id, $owner],
        ) === 1;
    }

    /** Gives a row back without counting an attempt (the worker could not start on it). */
    public function release(int $id, string $owner): bool
    {
        return $this->db->execute(
            "UPDATE {$this->table} SET claimed_by = NULL, claimed_until = 0 WHERE id = ? AND claimed_by = ?",
            [$id, $owner],
        ) === 1;
    }

    /** Extends the lease of the rows $owner holds (a long batch), to now + $leaseSeconds; returns how many it holds. */
    public function extend(string $owner, int $leaseSeconds): int
    {
        $now = $this->now();
        $this->db->execute(
            "UPDATE {$this->table} SET claimed_until = ? WHERE claimed_by = ? AND claimed_until >= ?",
            [$now + $leaseSeconds, $owner, $now],
        );
        // Counted, not taken from the UPDATE: MySQL counts only rows whose value changed.
        $rows = $this->db->select(
            "SELECT COUNT(*) AS held FROM {$this->table} WHERE claimed_by = ? AND claimed_until >= ?",
            [$owner, $now],
        );
        return (int) ($rows[0]['held'] ?? 0);
    }

    /**
     * @param list<array<string, mixed>> $rows
     * @return list<int>
     */
    private static function ids(array $rows): array
    {
        return array_map(static fn (array $r): int => (int) $r['id'], $rows);
    }
}
