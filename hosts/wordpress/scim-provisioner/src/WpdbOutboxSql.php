<?php

declare(strict_types=1);

namespace ScimProvisioner\WordPress;

use ScimProvisioner\OutboxSql;

/**
 * The library's {@see OutboxSql} over WordPress's `$wpdb` (MySQL/MariaDB), so the plugin's
 * outbox claims with the same code as the library's PdoOutbox ({@see \ScimProvisioner\OutboxClaims}).
 * Every value goes through `$wpdb->prepare` (`?` becomes `%d` or `%s` by the value's type;
 * null is the literal NULL).
 */
final class WpdbOutboxSql implements OutboxSql
{
    /**
     * The connection (wpdb's mysqli) the open transaction began on, null outside one. When
     * the database goes away, wpdb reconnects on its own (a few tries, a second apart) and
     * runs the failed statement again on the new connection, outside the transaction, which
     * the server has rolled back. A claim would then go on unlocked and could lease a row
     * another worker leases too. So a statement that finds a new connection under an open
     * transaction fails instead, and the claim is rolled back as a whole. (The object itself,
     * not its id: ids of freed objects are reused.)
     */
    private ?object $connection = null;

    public function dialect(): string
    {
        return 'mysql';
    }

    /**
     * Whether the transaction begin() opened is the caller's: one was already open on
     * `$wpdb`'s connection (any code may have started it), so begin() took a savepoint in it
     * instead of a START TRANSACTION, which would have committed the caller's work so far.
     * Kept after commit() and rollback(), for isRetryable().
     */
    private bool $joined = false;

    /**
     * Opens a transaction, read committed (a claim reads what other workers committed); or,
     * when the caller has one open, joins it with a savepoint: commit() then releases the
     * savepoint and rollback() undoes only what was done since, and the caller's COMMIT or
     * ROLLBACK decides. The question costs nothing extra: `SET TRANSACTION …`, which sets the
     * next transaction's level, is refused inside one (error 1568).
     */
    public function begin(): void
    {
        $this->joined = $this->refusesTransactionSettings();
        if ($this->joined) {
            $this->run('SAVEPOINT scim_outbox', []);
            return;
        }
        $this->run('START TRANSACTION', []);
        $this->connection = self::connection();
    }

    public function commit(): void
    {
        $this->run($this->joined ? 'RELEASE SAVEPOINT scim_outbox' : 'COMMIT', []);
        $this->connection = null;
    }

    public function rollback(): void
    {
        global $wpdb;
        $this->connection = null;
        if (!$this->joined) {
            $wpdb->query('ROLLBACK');
            return;
        }
        // Gone with the caller's transaction when the server rolled that back (a deadlock): not an error.
        $suppressed = $wpdb->suppress_errors(true);
        try {
            $wpdb->query('ROLLBACK TO SAVEPOINT scim_outbox');
        } finally {
            $wpdb->suppress_errors($suppressed);
        }
    }

    public function select(string $sql, array $params = []): array
    {
        global $wpdb;
        $rows = $wpdb->get_results($this->prepare($sql, $params), ARRAY_A);
        if ($wpdb->last_error !== '' || !is_array($rows)) {
            throw self::error($wpdb->last_error);
        }
        $this->sameConnection();
        return array_values($rows);
    }

    public function execute(string $sql, array $params = []): int
    {
        return $this->run($sql, $params);
    }

    /**
     * Whether the server refuses `SET TRANSACTION ISOLATION LEVEL READ COMMITTED` because a
     * transaction is open on this connection (error 1568, MySQL and MariaDB alike); accepted,
     * it sets the level of the next transaction only (see Outbox::callerTransactionOpen()).
     */
    public function refusesTransactionSettings(): bool
    {
        global $wpdb;
        // A refusal is the answer, not an error: wpdb must not print or log it.
        $suppressed = $wpdb->suppress_errors(true);
        try {
            $result = $wpdb->query('SET TRANSACTION ISOLATION LEVEL READ COMMITTED');
            $errno = $result === false && $wpdb->dbh instanceof \mysqli ? mysqli_errno($wpdb->dbh) : 0;
        } finally {
            $wpdb->suppress_errors($suppressed);
        }
        if ($result !== false) {
            $this->sameConnection();
            return false;
        }
        if ($errno === 1568) {
            return true;
        }
        throw self::error($wpdb->last_error);
    }

    public function isRetryable(\Throwable $e): bool
    {
        // ER_LOCK_DEADLOCK (1213); $wpdb reports only the message. Inside the caller's
        // transaction, a deadlock rolled all of it back: run again, the work would land
        // outside it, so the caller is told instead. ER_LOCK_WAIT_TIMEOUT (1205) rolls back
        // the statement only (the claim's statements are each their own; a settle rolls
        // back to its savepoint or its start), so it is run again either way, as the
        // library's PDO outbox does.
        return ($e->getCode() === 1213 && !$this->joined) || $e->getCode() === 1205;
    }

    /** @param list<int|string|null> $params */
    private function run(string $sql, array $params): int
    {
        global $wpdb;
        $result = $wpdb->query($this->prepare($sql, $params));
        if ($result === false) {
            throw self::error($wpdb->last_error);
        }
        $this->sameConnection();
        return (int) $result;
    }

    /** Fails when wpdb reconnected since the open transaction began (see $connection). */
    private function sameConnection(): void
    {
        if ($this->connection !== null && self::connection() !== $this->connection) {
            $this->connection = null;
            throw self::error('the connection to the database was lost in the middle of a transaction');
        }
    }

    /** wpdb's connection object (readable through wpdb::__get), null before it connected. */
    private static function connection(): ?object
    {
        global $wpdb;
        $dbh = $wpdb->dbh;
        return is_object($dbh) ? $dbh : null;
    }

    /** @param list<int|string|null> $params */
    private function prepare(string $sql, array $params): string
    {
        global $wpdb;
        if ($params === []) {
            return $sql;
        }
        $values = [];
        $i = 0;
        $query = (string) preg_replace_callback('/\?/', static function () use ($params, &$i, &$values): string {
            $value = $params[$i++] ?? null;
            if ($value === null) {
                return 'NULL';
            }
            $values[] = $value;
            return is_int($value) ? '%d' : '%s';
        }, $sql);
        if ($i !== count($params)) {
            throw new \LogicException('the outbox SQL and its values do not match');
        }
        // The SQL is the library's own, with a placeholder for every value.
        return $values === [] ? $query : (string) $wpdb->prepare($query, ...$values);
    }

    private static function error(string $message): \RuntimeException
    {
        $code = match (true) {
            str_contains($message, 'Deadlock found') => 1213,
            str_contains($message, 'Lock wait timeout exceeded') => 1205,
            default => 0,
        };
        return new \RuntimeException('the outbox could not be read or written: ' . $message, $code);
    }
}
