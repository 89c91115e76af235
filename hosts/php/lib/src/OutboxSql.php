<?php

declare(strict_types=1);

namespace ScimProvisioner;

/**
 * The database an outbox is claimed on, as {@see OutboxClaims} needs it: PDO
 * ({@see PdoOutbox}) or WordPress's `$wpdb` (the plugin's outbox). SQL uses `?` placeholders
 * only; values are int, string or null.
 */
interface OutboxSql
{
    /** `mysql` (MySQL, MariaDB) or `pgsql` (PostgreSQL). */
    public function dialect(): string;

    /** Starts a transaction; read committed (a claim reads what other workers committed). */
    public function begin(): void;

    public function commit(): void;

    public function rollback(): void;

    /**
     * Runs a query and returns its rows.
     *
     * @param list<int|string|null> $params
     * @return list<array<string, mixed>>
     */
    public function select(string $sql, array $params = []): array;

    /**
     * Runs a statement and returns the number of rows it changed.
     *
     * @param list<int|string|null> $params
     */
    public function execute(string $sql, array $params = []): int;

    /**
     * Whether the database rolled back what $e interrupted and it may simply be run again: a
     * deadlock, a serialization failure, or a lock wait or statement timeout (the claim's
     * on PostgreSQL). Claims and settles roll back their transaction and run again, a few times.
     */
    public function isRetryable(\Throwable $e): bool;
}
